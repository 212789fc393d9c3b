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
balance window); then k-way refinement with :mod:`pipelines.partition_moves` and a greedy
rebalance of any leaf left above capacity. Ties break on a hash of (seed, node id), and node ids
are sorted first, so the result depends on the input set only, never on row order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipelines.partition_moves import (
    leaf_capacity,
    pair_allowances,
    repair_flows,
    tighten_allowances,
)

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (Steele, Lea, Flood, OOPSLA 2014) on a ``uint64`` array."""
    z = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def node_hash(ids: np.ndarray, *keys: int) -> np.ndarray:
    """Deterministic 64-bit hash of node ids salted by integer keys (seed, level, ...)."""
    h = mix64(np.asarray(ids, dtype=np.int64).view(np.uint64))
    for key in keys:
        h = mix64(h ^ np.uint64((int(key) * _GOLDEN) & _MASK))
    return h


def _below(h: np.ndarray, fraction: float) -> np.ndarray:
    """``h / 2^64 < fraction`` for uint64 hashes."""
    if fraction >= 1.0:
        return np.ones(h.shape, dtype=bool)
    return h < np.uint64(int(fraction * 2.0**64))


def group_running(groups: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Running sum of ``values`` restarted at each new value of the (sorted) ``groups``."""
    if len(values) == 0:
        return values.copy()
    cs = np.cumsum(values)
    starts = np.r_[True, groups[1:] != groups[:-1]]
    base = (cs - values)[starts]
    return cs - base[np.cumsum(starts) - 1]


@dataclass(frozen=True)
class InitialParams:
    """Knobs of the initial partitioner (see :class:`pipelines.partition.PartitionSettings`)."""

    num_leaves: int
    tolerance: float
    seed: int
    tries: int = 8
    iterations: int = 20
    refine_iterations: int = 20
    active_fraction: float = 0.5
    refine_active_fraction: float = 0.7
    fm_passes: int = 4
    fm_max_nodes: int = 20_000


@dataclass(frozen=True)
class _Graph:
    ids: np.ndarray  # sorted node ids
    vw: np.ndarray  # node weights (int64, >= 1)
    s: np.ndarray  # directed rows, both directions present
    d: np.ndarray
    w: np.ndarray

    @property
    def n(self) -> int:
        return len(self.ids)


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
    g = _Graph(ids, vw, s, d, np.asarray(weights, dtype=np.int64))
    k = params.num_leaves
    lo = np.zeros(g.n, dtype=np.int64)
    if k > 1 and g.n > 0:
        depth = math.ceil(math.log2(k))
        per_level = (1.0 + params.tolerance / 2.0) ** (1.0 / depth) - 1.0
        sizes = {0: k}
        level = 0
        while max(sizes.values()) > 1:
            lo, sizes = _bisect_level(g, lo, sizes, per_level, params, level)
            level += 1
        cap = np.full(k, leaf_capacity(int(vw.sum()), k, params.tolerance), dtype=np.int64)
        lo = kway_refine(g, lo, cap, params, salt=1 << 20)
        lo = _rebalance(g, lo, cap, params.seed)
        if g.n * k <= _DENSE_LIMIT:
            lo = greedy_refine(g, lo, cap, params.seed, passes=params.refine_iterations)
    return ids, lo


_DENSE_LIMIT = 20_000_000


def greedy_refine(
    g: _Graph, part: np.ndarray, cap: np.ndarray, seed: int, *, passes: int
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


def _bisect_level(
    g: _Graph,
    lo: np.ndarray,
    sizes: dict[int, int],
    tol: float,
    params: InitialParams,
    level: int,
) -> tuple[np.ndarray, dict[int, int]]:
    """Split every block of more than one leaf in two; best of ``tries`` starts per block."""
    starts = np.array(sorted(sizes), dtype=np.int64)
    t = np.array([sizes[x] for x in starts], dtype=np.int64)
    blk = np.searchsorted(starts, lo)
    nb = len(starts)
    left = (t + 1) // 2
    split = t > 1
    total = np.bincount(blk, weights=g.vw, minlength=nb)
    t0 = total * left / t
    t1 = total - t0
    inside = blk[g.s] == blk[g.d]
    si, di, wi = g.s[inside], g.d[inside], g.w[inside]
    best_side = np.zeros(g.n, dtype=np.int64)
    best_over = np.full(nb, np.inf)
    best_cut = np.full(nb, np.inf)
    for r in range(params.tries):
        side = _init_sides(g, blk, split, t0, params.seed, level, r)
        for it in range(params.iterations):
            side = _bisect_step(
                g, blk, split, t0, t1, tol, side, (si, di, wi), params, (level, r, it)
            )
        side = _fm_blocks(g, blk, split, t0, t1, tol, side, (si, di, wi), params, (level, r))
        cut = np.bincount(blk[si], weights=wi * (side[si] != side[di]), minlength=nb)
        s0 = np.bincount(blk, weights=g.vw * (side == 0), minlength=nb)
        over = np.maximum(np.maximum(s0 - t0 * (1 + tol), (total - s0) - t1 * (1 + tol)), 0)
        better = (over < best_over) | ((over == best_over) & (cut < best_cut))
        take = better[blk]
        best_side[take] = side[take]
        best_over = np.where(better, over, best_over)
        best_cut = np.where(better, cut, best_cut)
    new_lo = lo + best_side * left[blk] * split[blk]
    new_sizes: dict[int, int] = {}
    for start, size in sizes.items():
        if size == 1:
            new_sizes[start] = 1
        else:
            new_sizes[start] = (size + 1) // 2
            new_sizes[start + (size + 1) // 2] = size // 2
    return new_lo, new_sizes


def _fm_blocks(
    g: _Graph,
    blk: np.ndarray,
    split: np.ndarray,
    t0: np.ndarray,
    t1: np.ndarray,
    tol: float,
    side: np.ndarray,
    inner: tuple[np.ndarray, np.ndarray, np.ndarray],
    params: InitialParams,
    salt: tuple[int, int],
) -> np.ndarray:
    """Fiduccia-Mattheyses passes on every split block small enough for O(n^2) selection."""
    si, di, wi = inner
    order = np.lexsort((si, blk[si]))
    si, di, wi = si[order], di[order], wi[order]
    bounds = np.searchsorted(blk[si], np.arange(len(t0) + 1))
    members = np.argsort(blk, kind="stable")
    mbounds = np.searchsorted(blk[members], np.arange(len(t0) + 1))
    side = side.copy()
    ties = (node_hash(g.ids, params.seed, 10, *salt) >> np.uint64(11)).astype(np.float64) / 2.0**54
    for b in np.nonzero(split)[0].tolist():
        nodes = members[mbounds[b] : mbounds[b + 1]]
        if len(nodes) < 2 or len(nodes) > params.fm_max_nodes:
            continue
        es, ed, ew = (
            si[bounds[b] : bounds[b + 1]],
            di[bounds[b] : bounds[b + 1]],
            wi[bounds[b] : bounds[b + 1]],
        )
        ls, ld = np.searchsorted(nodes, es), np.searchsorted(nodes, ed)
        indptr = np.r_[0, np.cumsum(np.bincount(ls, minlength=len(nodes)))]
        side[nodes] = fm_bisection(
            indptr,
            ld,
            ew,
            g.vw[nodes],
            side[nodes],
            (t0[b] * (1 + tol), t1[b] * (1 + tol)),
            ties[nodes],
            passes=params.fm_passes,
        )
    return side


def fm_bisection(
    indptr: np.ndarray,
    nbr: np.ndarray,
    wt: np.ndarray,
    vw: np.ndarray,
    side: np.ndarray,
    limits: tuple[float, float],
    ties: np.ndarray,
    *,
    passes: int,
) -> np.ndarray:
    """Fiduccia and Mattheyses (DAC 1982) bisection refinement with rollback to the best prefix.

    Each pass moves unlocked nodes one at a time, the highest gain first among the moves that
    keep the receiving side within its limit (ties: ``ties`` in [0, 0.5)), and keeps the prefix
    of moves with the lowest cut. Selection is a linear scan, so a pass costs O(n^2 + m).

    Args:
        indptr, nbr, wt: Local CSR adjacency (both directions) of the block.
        vw: Node weights.
        side: Initial sides (0/1).
        limits: Maximum weight of side 0 and side 1.
        ties: Tie-break added to integer gains.
        passes: Maximum passes (stops early when a pass does not improve).
    """
    n = len(vw)
    side = side.astype(np.int64, copy=True)
    src = np.repeat(np.arange(n), np.diff(indptr))
    stall = max(50, n // 20)
    slack = float(vw.max()) if n else 0.0

    def violation(loads: list[float]) -> float:
        return max(loads[0] - limits[0], 0.0) + max(loads[1] - limits[1], 0.0)

    for _ in range(passes):
        differ = side[src] != side[nbr]
        gain = np.bincount(src, weights=wt * np.where(differ, 1, -1), minlength=n)
        loads = [float(vw[side == 0].sum()), float(vw[side == 1].sum())]
        locked = np.zeros(n, dtype=bool)
        moves: list[int] = []
        cut_delta, best_len = 0.0, 0
        best = (violation(loads), 0.0)
        while len(moves) < n:
            fits0 = (side == 0) & (loads[1] + vw <= limits[1] + slack)
            fits1 = (side == 1) & (loads[0] + vw <= limits[0] + slack)
            ok = ~locked & (fits0 | fits1)
            if not ok.any():
                break
            u = int(np.argmax(np.where(ok, gain + ties, -np.inf)))
            a = int(side[u])
            cut_delta -= gain[u]
            loads[a] -= vw[u]
            loads[1 - a] += vw[u]
            side[u] = 1 - a
            locked[u] = True
            lo, hi = indptr[u], indptr[u + 1]
            vs, ws = nbr[lo:hi], wt[lo:hi]
            gain[vs] += np.where(side[vs] == a, 2 * ws, -2 * ws)
            gain[u] = -gain[u]
            moves.append(u)
            score = (violation(loads), cut_delta)
            if score < best:
                best, best_len = score, len(moves)
            elif len(moves) - best_len > stall:
                break
        for u in moves[best_len:]:
            side[u] = 1 - side[u]
        if best_len == 0:
            break
    return side


def _init_sides(
    g: _Graph, blk: np.ndarray, split: np.ndarray, t0: np.ndarray, seed: int, level: int, r: int
) -> np.ndarray:
    """Side 0 = the hash-ordered prefix of each block whose weight stays within its target."""
    h = node_hash(g.ids, seed, 1, level, r)
    order = np.lexsort((h, blk))
    running = group_running(blk[order], g.vw[order])
    side = np.zeros(g.n, dtype=np.int64)
    side[order] = (running > t0[blk[order]]).astype(np.int64)
    side[~split[blk]] = 0
    return side


def _bisect_step(
    g: _Graph,
    blk: np.ndarray,
    split: np.ndarray,
    t0: np.ndarray,
    t1: np.ndarray,
    tol: float,
    side: np.ndarray,
    inner: tuple[np.ndarray, np.ndarray, np.ndarray],
    params: InitialParams,
    salt: tuple[int, int, int],
) -> np.ndarray:
    """One round of matched gain moves inside every split block."""
    si, di, wi = inner
    nb = len(t0)
    differ = side[si] != side[di]
    other = np.bincount(si, weights=wi * differ, minlength=g.n)
    same = np.bincount(si, weights=wi * ~differ, minlength=g.n)
    gain = other - same
    h = node_hash(g.ids, params.seed, 2, *salt)
    cand = _below(node_hash(g.ids, params.seed, 3, *salt), params.active_fraction) & split[blk]
    pos = cand & (gain > 0)
    s0 = np.bincount(blk, weights=g.vw * (side == 0), minlength=nb)
    s1 = np.bincount(blk, weights=g.vw * (side == 1), minlength=nb)
    dlo = s0 - t0 * (1 + tol)  # net weight 0 -> 1 must be >= dlo ...
    dhi = t1 * (1 + tol) - s1  # ... and <= dhi
    xp = np.bincount(blk, weights=g.vw * (pos & (side == 0)), minlength=nb)
    yp = np.bincount(blk, weights=g.vw * (pos & (side == 1)), minlength=nb)
    xa = np.bincount(blk, weights=g.vw * (cand & (side == 0)), minlength=nb)
    ya = np.bincount(blk, weights=g.vw * (cand & (side == 1)), minlength=nb)
    x, y = xp.copy(), yp.copy()
    hi = xp - yp > dhi
    x[hi] = yp[hi] + dhi[hi]
    forced = hi & (x < 0)
    x[forced] = 0
    y[forced] = np.minimum(-dhi[forced], ya[forced])
    low = xp - yp < dlo
    y[low] = xp[low] - dlo[low]
    forced = low & (y < 0)
    y[forced] = 0
    x[forced] = np.minimum(dlo[forced], xa[forced])
    idx = np.nonzero(cand)[0]
    key = blk[idx] * 2 + side[idx]
    order = np.lexsort((h[idx], -gain[idx], key))
    idx, key = idx[order], key[order]
    running = group_running(key, g.vw[idx])
    limit = np.where(side[idx] == 0, x[blk[idx]], y[blk[idx]])
    move = idx[running <= limit]
    out = side.copy()
    out[move] ^= 1
    return out


def _connections(g: _Graph, part: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows (node, leaf, weight) of edge weight from each node to each neighbouring leaf."""
    key = g.s * k + part[g.d]
    uniq, inv = np.unique(key, return_inverse=True)
    conn = np.bincount(inv, weights=g.w).astype(np.int64)
    return uniq // k, uniq % k, conn


def kway_refine(
    g: _Graph, part: np.ndarray, cap: np.ndarray, params: InitialParams, *, salt: int
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
        tie = node_hash(g.ids[node], params.seed, 4, salt + it) ^ node_hash(leaf, params.seed, 8)
        order = np.lexsort((tie, -conn, node))
        node, leaf, conn = node[order], leaf[order], conn[order]
        first = np.r_[True, node[1:] != node[:-1]]
        node, leaf, conn = node[first], leaf[first], conn[first]
        gain = conn - own[node]
        active = _below(
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


def _rebalance(g: _Graph, part: np.ndarray, cap: np.ndarray, seed: int) -> np.ndarray:
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
