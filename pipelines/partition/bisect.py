"""Recursive-bisection steps of the single-task partitioner (numpy).

One level of :func:`bisect_level` splits every block of more than one leaf in two: ``tries``
seeded starts, each a weight-ordered hash split, rounds of Social-Hash-style matched gain moves
(Kabiljo et al., VLDB 2017) and Fiduccia-Mattheyses passes (DAC 1982); per block the start with
the lowest cut (after balance) wins.
"""

from __future__ import annotations

import numpy as np

from pipelines.partition.arrays import Graph, InitialParams, below, group_running, node_hash


def bisect_level(
    g: Graph,
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
    g: Graph,
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
    g: Graph, blk: np.ndarray, split: np.ndarray, t0: np.ndarray, seed: int, level: int, r: int
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
    g: Graph,
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
    cand = below(node_hash(g.ids, params.seed, 3, *salt), params.active_fraction) & split[blk]
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
