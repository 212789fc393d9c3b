"""Initial partition of the coarsest graph, computed with numpy inside one Spark task.

Multilevel partitioners partition the coarsest graph with a sequential algorithm (METIS:
Karypis and Kumar, SIAM J. Sci. Comput. 20(1), 1998, section 3; ParMETIS and ParHIP do the same
on one processor). The coarsest graph here has about ``coarsest_nodes_per_leaf * leaves`` nodes,
a bound that does not grow with the input, so one task holds it. Measured on soc-Epinions1 and
Gowalla, the synchronous label-propagation bisection that refines the fine levels is erratic
from a single random start (cut 0.12-0.23 against METIS's 0.12 on Gowalla's coarse graphs) but
the best of 8-20 starts matches METIS; this module therefore runs ``tries`` seeded starts per
bisection and keeps, for every block, the start with the lowest cut.

Algorithm: recursive bisection to ``num_leaves`` leaves (a block of ``t`` leaves splits into
``ceil(t/2)`` and ``floor(t/2)`` with weight targets in that ratio); each bisection is a
weight-ordered hash split followed by rounds of Social-Hash-style gain moves (gain = weight to
the other side - weight to the own side; moves matched across the two directions within the
balance window) and Fiduccia-Mattheyses passes (:mod:`pipelines.partition.bisect`); then
k-way refinement with :mod:`pipelines.partition.moves`, a greedy rebalance of any leaf left
above capacity and sequential greedy refinement. Ties break on a hash of (seed, node id), and
node ids are sorted first, so the result depends on the input set only, never on row order.
"""

from __future__ import annotations

import math

import numpy as np

from pipelines.partition.arrays import Graph, InitialParams, below, group_running, node_hash
from pipelines.partition.bisect import bisect_level
from pipelines.partition.moves import (
    leaf_capacity,
    pair_allowances,
    repair_flows,
    tighten_allowances,
)

__all__ = ["InitialParams", "greedy_refine", "initial_partition", "kway_refine"]


def initial_partition(
    node_ids: np.ndarray,
    node_weights: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    weights: np.ndarray,
    params: InitialParams,
) -> tuple[np.ndarray, np.ndarray]:
    """Partition a small weighted graph into ``params.num_leaves`` leaves.

    Args:
        node_ids: Node ids (any order, unique).
        node_weights: Positive integer weight per node (the degree for fine graphs).
        src: Edge sources (node ids); every edge appears in both directions.
        dst: Edge destinations.
        weights: Positive integer edge weights.
        params: Leaves, tolerance, seed, tries and iteration counts.

    Returns:
        ``(ids, leaf)``: the node ids sorted ascending and the leaf (0..num_leaves-1) of each.
    """
    order = np.argsort(node_ids, kind="stable")
    ids = np.asarray(node_ids, dtype=np.int64)[order]
    vw = np.asarray(node_weights, dtype=np.int64)[order]
    s = np.searchsorted(ids, np.asarray(src, dtype=np.int64))
    d = np.searchsorted(ids, np.asarray(dst, dtype=np.int64))
    g = Graph(ids, vw, s, d, np.asarray(weights, dtype=np.int64))
    k = params.num_leaves
    lo = np.zeros(g.n, dtype=np.int64)
    if k > 1 and g.n > 0:
        depth = math.ceil(math.log2(k))
        per_level = (1.0 + params.tolerance / 2.0) ** (1.0 / depth) - 1.0
        sizes = {0: k}
        level = 0
        while max(sizes.values()) > 1:
            lo, sizes = bisect_level(g, lo, sizes, per_level, params, level)
            level += 1
        cap = np.full(k, leaf_capacity(int(vw.sum()), k, params.tolerance), dtype=np.int64)
        lo = kway_refine(g, lo, cap, params, salt=1 << 20)
        lo = _rebalance(g, lo, cap, params.seed)
        if g.n * k <= _DENSE_LIMIT:
            lo = greedy_refine(g, lo, cap, params.seed, passes=params.refine_iterations)
    return ids, lo


_DENSE_LIMIT = 20_000_000


def greedy_refine(
    g: Graph, part: np.ndarray, cap: np.ndarray, seed: int, *, passes: int
) -> np.ndarray:
    """Sequential greedy k-way refinement with immediate gain updates (Karypis and Kumar 1998,
    section 4.2, without hill climbing): nodes are visited in a seeded hash order and moved to
    the most connected leaf with room if that cuts less, or cuts the same and evens the loads.
    Each move lowers the cut or, at equal cut, the sum of squared loads, so it terminates.
    Memory: a dense ``nodes x leaves`` table (used when that has at most 2e7 cells).
    """
    k = len(cap)
    part = part.copy()
    order = np.argsort(g.s, kind="stable")
    nbr, wt = g.d[order], g.w[order]
    indptr = np.r_[0, np.cumsum(np.bincount(g.s, minlength=g.n))]
    conn = np.zeros((g.n, k), dtype=np.int64)
    np.add.at(conn, (g.s, part[g.d]), g.w)
    loads = np.bincount(part, weights=g.vw, minlength=k).astype(np.int64)
    visit = np.argsort(node_hash(g.ids, seed, 9), kind="stable")
    for _ in range(passes):
        moved = 0
        for u in visit.tolist():
            a = int(part[u])
            wu = int(g.vw[u])
            row = conn[u]
            room = loads + wu <= cap
            room[a] = False
            if not room.any():
                continue
            masked = np.where(room, row, -1)
            b = int(np.argmax(masked))
            gain = int(masked[b]) - int(row[a])
            if gain < 0 or (gain == 0 and loads[a] - loads[b] <= wu):
                continue
            part[u] = b
            loads[a] -= wu
            loads[b] += wu
            lo_, hi_ = indptr[u], indptr[u + 1]
            conn[nbr[lo_:hi_], a] -= wt[lo_:hi_]
            conn[nbr[lo_:hi_], b] += wt[lo_:hi_]
            moved += 1
        if moved == 0:
            break
    return part


def _connections(g: Graph, part: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows (node, leaf, weight) of edge weight from each node to each neighbouring leaf."""
    key = g.s * k + part[g.d]
    uniq, inv = np.unique(key, return_inverse=True)
    conn = np.bincount(inv, weights=g.w).astype(np.int64)
    return uniq // k, uniq % k, conn


def kway_refine(
    g: Graph, part: np.ndarray, cap: np.ndarray, params: InitialParams, *, salt: int
) -> np.ndarray:
    """Label-propagation refinement among all leaves with matched, capacity-bounded moves."""
    k = len(cap)
    part = part.copy()
    for it in range(params.refine_iterations):
        loads = np.bincount(part, weights=g.vw, minlength=k).astype(np.int64)
        node, leaf, conn = _connections(g, part, k)
        own = np.zeros(g.n, dtype=np.int64)
        mine = leaf == part[node]
        own[node[mine]] = conn[mine]
        node, leaf, conn = node[~mine], leaf[~mine], conn[~mine]
        if len(node) == 0:  # no node touches another leaf: nothing to refine
            break
        tie = node_hash(g.ids[node], params.seed, 4, salt + it) ^ node_hash(leaf, params.seed, 8)
        order = np.lexsort((tie, -conn, node))
        node, leaf, conn = node[order], leaf[order], conn[order]
        first = np.r_[True, node[1:] != node[:-1]]
        node, leaf, conn = node[first], leaf[first], conn[first]
        gain = conn - own[node]
        active = below(
            node_hash(g.ids[node], params.seed, 5, salt + it), params.refine_active_fraction
        )
        keep = active & (gain > 0)
        node, leaf, gain = node[keep], leaf[keep], gain[keep]
        if len(node) == 0:
            break
        pair = part[node] * k + leaf
        h = node_hash(g.ids[node], params.seed, 6, salt + it)
        order = np.lexsort((h, -gain, pair))
        node, leaf, pair = node[order], leaf[order], pair[order]
        running = group_running(pair, g.vw[node])
        totals = np.bincount(pair, weights=g.vw[node], minlength=k * k).astype(np.int64)
        tot = {(int(p) // k, int(p) % k): int(totals[p]) for p in np.nonzero(totals)[0]}
        allow = pair_allowances(loads, cap, tot)
        for attempt in range(4):
            limit = np.array([allow[(int(p) // k, int(p) % k)] for p in pair], dtype=np.int64)
            admitted = running <= limit
            flows_arr = np.bincount(pair[admitted], weights=g.vw[node[admitted]], minlength=k * k)
            flows = {(int(p) // k, int(p) % k): int(flows_arr[p]) for p in np.nonzero(flows_arr)[0]}
            tighter = tighten_allowances(loads, cap, allow, flows)
            if tighter is None or attempt == 3:
                break
            allow = tighter
        kept = repair_flows(loads, cap, flows)
        kept_codes = np.array(sorted(a * k + b for a, b in kept), dtype=np.int64)
        apply = admitted & np.isin(pair, kept_codes)
        part[node[apply]] = leaf[apply]
    return part


def _rebalance(g: Graph, part: np.ndarray, cap: np.ndarray, seed: int) -> np.ndarray:
    """Move the cheapest nodes out of leaves above capacity into leaves with room."""
    k = len(cap)
    part = part.copy()
    loads = np.bincount(part, weights=g.vw, minlength=k).astype(np.int64)
    if not (loads > cap).any():
        return part
    node, leaf, conn = _connections(g, part, k)
    conn_of: dict[int, dict[int, int]] = {}
    for u, b, c in zip(node.tolist(), leaf.tolist(), conn.tolist(), strict=True):
        conn_of.setdefault(u, {})[b] = c
    ties = node_hash(g.ids, seed, 7)
    for a in np.argsort(cap - loads, kind="stable"):
        if loads[a] <= cap[a]:
            continue
        members = np.nonzero(part == a)[0]
        scored = []
        for u in members.tolist():
            links = conn_of.get(u, {})
            best = max(links.get(b, 0) for b in range(k) if b != a) if k > 1 else 0
            scored.append((links.get(a, 0) - best, int(ties[u]), u))
        for _, _, u in sorted(scored):
            if loads[a] <= cap[a]:
                break
            links = conn_of.get(u, {})
            room = [b for b in range(k) if b != a and loads[b] + g.vw[u] <= cap[b]]
            if not room:
                continue
            b = max(room, key=lambda x: (links.get(x, 0), cap[x] - loads[x], -x))
            part[u] = b
            loads[a] -= g.vw[u]
            loads[b] += g.vw[u]
    return part
