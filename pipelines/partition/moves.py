"""Balance-keeping move plans for label-propagation refinement (pure Python, no Spark).

One refinement iteration proposes, for every boundary node, a move to the neighbouring leaf it
is most connected to. Moves are grouped by (from leaf, to leaf) pair and ranked inside the pair
by (gain desc, hash). Following the Social Hash Partitioner (Kabiljo et al., "Social Hash
Partitioner: A Scalable Distributed Hypergraph Partitioner", VLDB 2017, section 4.2), opposite
flows of a pair are matched so swaps keep the balance; on top of the swaps a leaf may take net
inflow up to its free capacity, shared among the pairs pushing into it. Node weights are
integers (degrees), so every decision is exact and independent of row order.

These two functions are shared by the Spark refinement (on collected per-pair totals, at most
``leaves^2`` numbers) and the numpy initial partitioner (on the same totals computed locally).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

Pair = tuple[int, int]
# Per-leaf loads and capacities: a list or a 1-D integer numpy array (indexed, never mutated).
IntSeq = Sequence[int] | np.ndarray


def pair_allowances(loads: IntSeq, capacity: IntSeq, totals: Mapping[Pair, int]) -> dict[Pair, int]:
    """Weight each (from, to) pair may move this iteration.

    The smaller flow of a pair moves whole; the larger moves as much as the smaller plus the
    receiving leaf's free capacity divided among the pairs with a net push into it.

    Args:
        loads: Current weight of each leaf.
        capacity: Maximum weight of each leaf.
        totals: Weight of all candidate movers per (from, to) pair.

    Returns:
        Allowed weight per pair (the pair's candidates are admitted by rank while their running
        weight stays within it).
    """
    pushes = Counter(b for (a, b), x in totals.items() if x > 0 and x > totals.get((b, a), 0))
    allow: dict[Pair, int] = {}
    for (a, b), x in totals.items():
        y = totals.get((b, a), 0)
        if x <= y:
            allow[(a, b)] = int(x)
        else:
            free = max(int(capacity[b]) - int(loads[b]), 0) // max(pushes[b], 1)
            allow[(a, b)] = int(min(x, y + free))
    return allow


def tighten_allowances(
    loads: IntSeq,
    capacity: IntSeq,
    allow: Mapping[Pair, int],
    flows: Mapping[Pair, int],
) -> dict[Pair, int] | None:
    """Shrink allowances whose admitted flows overfill the receiving leaf; None if none does.

    A heavy node can stop the larger side's prefix far below its allowance (a hub heavier than
    the whole opposite flow admits nothing), leaving the smaller side's full flow unmatched.
    Given the flows actually admitted, a pair whose net push into ``b`` exceeds ``b``'s share of
    free capacity is cut to the reverse flow plus that share. Allowances only shrink, so
    alternating admission and tightening converges.
    """
    pushes = Counter(b for (a, b), f in flows.items() if f > flows.get((b, a), 0))
    out = dict(allow)
    changed = False
    for (a, b), f in flows.items():
        back = int(flows.get((b, a), 0))
        free = max(int(capacity[b]) - int(loads[b]), 0) // max(pushes[b], 1)
        if f - back > free and out[(a, b)] > back + free:
            out[(a, b)] = back + free
            changed = True
    return out if changed else None


def repair_flows(loads: IntSeq, capacity: IntSeq, flows: Mapping[Pair, int]) -> set[Pair]:
    """Pairs whose admitted moves are kept so that no leaf ends above capacity and grew.

    Rank-prefix admission is exact per pair, but the smaller side of a pair can end a little
    heavier than planned when the larger side's prefix stops early. This drops, in rounds, every
    pair flowing into a leaf that would end above its capacity and above its current load,
    until none does. Dropping everything is always feasible, so this terminates.

    Args:
        loads: Current weight of each leaf.
        capacity: Maximum weight of each leaf.
        flows: Weight actually admitted per (from, to) pair.

    Returns:
        The pairs to apply.
    """
    kept = {p for p, f in flows.items() if f > 0 and p[0] != p[1]}
    while True:
        new = [int(x) for x in loads]
        for a, b in kept:
            new[a] -= int(flows[(a, b)])
            new[b] += int(flows[(a, b)])
        bad = {b for b, x in enumerate(new) if x > int(capacity[b]) and x > int(loads[b])}
        if not bad:
            return kept
        kept = {(a, b) for a, b in kept if b not in bad}


def leaf_capacity(total_weight: int, num_leaves: int, tolerance: float) -> int:
    """Maximum leaf weight: ``floor((1 + tolerance) * total / leaves)``, at least ``ceil(mean)``."""
    mean_up = -(-int(total_weight) // num_leaves)
    return max(int((1.0 + tolerance) * total_weight / num_leaves), mean_up)
