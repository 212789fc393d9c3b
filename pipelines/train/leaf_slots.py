"""Place leaves on Spark partitions so every task of a round does about the same work.

Hash partitioning by ``leaf_id`` puts whatever leaves hash together into one task: the bench's 16
Gowalla leaves land 9 and 7 on 2 partitions (other splits are worse), and a round waits for its
slowest task. :func:`balanced_slots` deals the leaves out by longest-processing-time first
(Graham 1969: each leaf, largest first, goes to the least-loaded slot; makespan <= 4/3 of the
optimum), and :func:`slot_keys` gives every leaf an integer key whose Spark hash partition
(``pmod(murmur3(key), partitions)``, what ``repartition(partitions, key)`` computes) is that
slot, so co-grouping by the key keeps the placement.
"""

from __future__ import annotations

from collections.abc import Mapping

from pyspark.sql import SparkSession
from pyspark.sql import functions as F


def balanced_slots(sizes: Mapping[int, float], slots: int) -> dict[int, int]:
    """Leaf -> slot in ``0..slots-1``, largest leaves first onto the least-loaded slot.

    Deterministic: ties in size break by leaf id, ties in load by slot number.
    """
    if slots < 1:
        raise ValueError(f"slots: must be >= 1 (got {slots})")
    load = [0.0] * slots
    slot_of: dict[int, int] = {}
    for leaf in sorted(sizes, key=lambda leaf: (-sizes[leaf], leaf)):
        slot = min(range(slots), key=lambda s: (load[s], s))
        slot_of[leaf] = slot
        load[slot] += sizes[leaf]
    return slot_of


def slot_keys(spark: SparkSession, slot_of: dict[int, int], partitions: int) -> dict[int, int]:
    """Leaf -> a distinct non-negative key whose hash partition out of ``partitions`` is its slot.

    The keys are the smallest integers that land on each partition, asked of Spark's own hash
    (a few times ``len(slot_of)`` candidates, collected to the driver).
    """
    if any(not 0 <= s < partitions for s in slot_of.values()):
        raise ValueError(f"slot_of: every slot must be in 0..{partitions - 1}")
    wanted = {s: sum(1 for x in slot_of.values() if x == s) for s in range(partitions)}
    free: dict[int, list[int]] = {s: [] for s in range(partitions)}
    start, step = 0, max(64, 4 * len(slot_of))
    while any(len(free[s]) < n for s, n in wanted.items()):
        rows = (
            spark.range(start, start + step)
            .select("id", F.expr(f"pmod(hash(id), {partitions})").alias("p"))
            .collect()
        )
        for r in sorted(rows, key=lambda r: int(r["id"])):
            free[int(r["p"])].append(int(r["id"]))
        start += step
    keys: dict[int, int] = {}
    for leaf in sorted(slot_of):
        keys[leaf] = free[slot_of[leaf]].pop(0)
    return keys
