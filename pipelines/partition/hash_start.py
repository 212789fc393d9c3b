"""Load-balanced seeded hash split: where refinement starts when the coarsest graph is too big.

Nodes are put in a seeded pseudo-random order (hash of the id, then the id) and cut into ``k``
contiguous runs of equal load: a node of weight ``w_i`` with ``L_i`` of load before it goes to
leaf ``floor(k (2 L_i + w_i) / (2 L))`` (``L`` the total), i.e. the leaf holding its midpoint, so
every leaf's load is within one node weight of ``L / k``. A plain ``hash mod k`` balances node
counts, not loads: on the 10M-edge R-MAT graph its heaviest leaf still held 1.16x the mean load
after two refinement rounds (``bench/results/scale.md``), because refinement only moves nodes
that gain and never drains an overfull leaf.

The prefix sums are distributed: nodes are range-partitioned on the order, each partition's
total (one number per partition) reaches the driver, and a running sum inside each partition adds
its offset. The result depends on the order only, not on how rows are partitioned; no node list
reaches the driver.

Schema:
    nodes ``(node, vw)`` -> ``(node, part, vw)``.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from pipelines.partition.common import NODE, PART, VW, Checkpointer, seeded_hash

_KEY = "_order"
_PID = "_range"


def balanced_hash_split(
    nodes: DataFrame, k: int, seed: int, stage_salt: int, ck: Checkpointer, partitions: int
) -> DataFrame:
    """Split weighted nodes into ``k`` leaves of near-equal load in a seeded random order.

    Args:
        nodes: ``(node, vw)`` with ``vw >= 0``.
        k: Leaves (>= 1).
        seed: Run seed; with ``stage_salt`` it fixes the order.
        stage_salt: Salt that makes this order independent of other seeded hashes of the run.
        ck: Checkpointer of the run (the ordered table is written once).
        partitions: Range partitions for the prefix sums (any value gives the same result).

    Raises:
        ValueError: ``k`` or ``partitions`` below 1.
    """
    if k < 1 or partitions < 1:
        raise ValueError(
            f"balanced_hash_split: k and partitions must be >= 1, got {k}, {partitions}"
        )
    key = seeded_hash(seed, stage_salt, NODE)
    ordered = ck.write(
        nodes.select(NODE, VW, key.alias(_KEY))
        .repartitionByRange(partitions, _KEY, NODE)
        .withColumn(_PID, F.spark_partition_id()),
        "hash-start",
    )
    totals = sorted(
        (int(r[_PID]), int(r["load"] or 0))
        for r in ordered.groupBy(_PID).agg(F.sum(VW).alias("load")).collect()
    )
    offsets: dict[int, int] = {}
    running = 0
    for pid, load in totals:
        offsets[pid] = running
        running += load
    total = max(1, running)
    before = (
        F.sum(VW).over(
            Window.partitionBy(_PID)
            .orderBy(_KEY, NODE)
            .rowsBetween(Window.unboundedPreceding, Window.currentRow)
        )
        - F.col(VW)
        + _lookup(offsets, F.col(_PID))
    )
    midpoint_times_k = (before * 2 + F.col(VW)) * F.lit(k)
    leaf = F.least(F.lit(k - 1), F.expr(f"div(_mid, {2 * total})"))
    return ordered.withColumn("_mid", midpoint_times_k.cast("long")).select(
        NODE, leaf.cast("int").alias(PART), VW
    )


def _lookup(values: dict[int, int], key: Column) -> Column:
    """``values[key]`` as a column (a literal map of at most one entry per range partition)."""
    if not values:
        return F.lit(0).cast("long")
    pairs = [F.lit(x) for item in sorted(values.items()) for x in (item[0], item[1])]
    return F.element_at(F.create_map(*pairs), key).cast("long")
