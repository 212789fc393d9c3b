"""k-way label-propagation refinement on Spark, and projection between levels.

Each iteration is one pass over the level's edges: every node sums its edge weight per
neighbouring leaf; a hashed ``active_fraction`` of nodes whose best other leaf beats their own
become candidates (gain = weight to best leaf - weight to own leaf, ties by a seeded hash).
Candidates are ranked per (from, to) pair by (gain desc, hash, id) with a window, the driver
turns the per-pair totals (at most ``leaves^2`` numbers) into allowances with
:func:`pipelines.partition.moves.pair_allowances` (swaps matched as in the Social Hash
Partitioner, net inflow bounded by free capacity) and drops pairs that would overfill a leaf
with :func:`pipelines.partition.moves.repair_flows`. Leaf weights are integer sums, so every
decision is exact and independent of partitioning.

Schema:
    state ``(node, part, vw)``: long, int, long. adjacency ``(u, v, w)`` as in
    :mod:`pipelines.partition.coarsen`.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pipelines.core.local_tables import local_frame
from pipelines.partition.common import (
    LABEL,
    NODE,
    PART,
    VW,
    Checkpointer,
    U,
    V,
    W,
    hash_fraction_below,
    log,
    salt,
    seeded_hash,
    small,
)
from pipelines.partition.moves import pair_allowances, repair_flows, tighten_allowances

_REFINE_STAGE = 3
_TIGHTEN_ROUNDS = 4

_PAIR_SCHEMA = T.StructType(
    [
        T.StructField("src_part", T.IntegerType(), False),
        T.StructField("dst_part", T.IntegerType(), False),
        T.StructField("allow", T.LongType(), False),
    ]
)


def leaf_loads(state: DataFrame, num_leaves: int) -> list[int]:
    """Weight of every leaf (a ``num_leaves``-row aggregate collected to the driver)."""
    loads = [0] * num_leaves
    for row in state.groupBy(PART).agg(F.sum(VW).alias("load")).collect():
        loads[int(row[PART])] = int(row["load"])
    return loads


def project(mapping: DataFrame, coarse_state: DataFrame, fine_nodes: DataFrame) -> DataFrame:
    """Fine nodes inherit the leaf of their cluster.

    Schema:
        mapping ``(node, label)``, coarse_state ``(node, part, ...)``, fine_nodes
        ``(node, vw)`` -> ``(node, part, vw)``.
    """
    parts = coarse_state.select(F.col(NODE).alias(LABEL), PART)
    return fine_nodes.join(mapping, NODE).join(parts, LABEL).select(NODE, PART, VW)


def refine(
    spark: SparkSession,
    adjacency: DataFrame,
    state: DataFrame,
    *,
    capacity: list[int],
    loads: list[int],
    iterations: int,
    active_fraction: float,
    seed: int,
    level: int,
    ck: Checkpointer,
    broadcast: bool = False,
) -> tuple[DataFrame, list[int]]:
    """Run up to ``iterations`` refinement rounds; returns the new state and leaf loads.

    ``loads`` are the current leaf weights (projection keeps them, so they carry over between
    levels). Stops early when a round has no candidate move.
    """
    loads = list(loads)
    for it in range(iterations):
        s = salt(_REFINE_STAGE, level, it)
        cand = _candidates(adjacency, state, loads, capacity, seed, s, active_fraction, broadcast)
        cand = ck.keep(cand, "refine-cand", eager=False)
        totals = {
            (int(r["src_part"]), int(r["dst_part"])): int(r["x"])
            for r in cand.groupBy("src_part", "dst_part").agg(F.sum(VW).alias("x")).collect()
        }
        if not totals:
            log.info("partition: level %d refinement converged after %d rounds", level, it)
            break
        admitted, allow, flows = _admit(spark, cand, loads, capacity, totals)
        kept = repair_flows(loads, capacity, flows)
        kept_allow = {p: allow[p] for p in kept}
        moves = admitted.join(
            F.broadcast(_pairs_df(spark, kept_allow).drop("allow")), ["src_part", "dst_part"]
        ).select(NODE, F.col("dst_part").alias("to"))
        state = state.join(moves, NODE, "left").select(
            NODE, F.coalesce(F.col("to"), F.col(PART)).alias(PART), VW
        )
        state = ck.step(state, "refine")
        moved = sum(flows[p] for p in kept)
        for a, b in kept:
            loads[a] -= flows[(a, b)]
            loads[b] += flows[(a, b)]
        log.info(
            "partition: level %d round %d: %d candidate pairs, moved weight %d, max load %d",
            level,
            it,
            len(totals),
            moved,
            max(loads),
        )
    ck.release("refine-cand")
    return state, loads


def _candidates(
    adjacency: DataFrame,
    state: DataFrame,
    loads: list[int],
    capacity: list[int],
    seed: int,
    s: int,
    active_fraction: float,
    broadcast: bool,
) -> DataFrame:
    """Each sampled node's best move ``(node, src_part, dst_part, gain, vw, h, run)``.

    ``run`` is the running weight of the moves between the same two leaves, best gain first.
    """
    by_v = state.select(F.col(NODE).alias(V), F.col(PART).alias("pv"))
    conn = adjacency.join(small(by_v, broadcast), V).groupBy(U, "pv").agg(F.sum(W).alias("c"))
    mine = state.select(F.col(NODE).alias(U), F.col(PART).alias("pu"), VW)
    rows = conn.join(small(mine, broadcast), U)
    option = F.struct(F.col("c"), seeded_hash(seed, s, U, "pv").alias("h"), F.col("pv"))
    other = F.col("pv") != F.col("pu")
    per = rows.groupBy(U, "pu", VW).agg(
        F.sum(F.when(~other, F.col("c")).otherwise(F.lit(0))).alias("own"),
        F.max(F.when(other, option)).alias("best"),
    )
    rank = Window.partitionBy("src_part", "dst_part").orderBy(F.desc("gain"), "h", NODE)
    # Nodes of leaves above capacity may also move at a loss (best first), to shed weight.
    over = [a for a, load in enumerate(loads) if load > capacity[a]]
    wanted = F.col("best.c") > F.col("own")
    if over:
        wanted = wanted | (F.col("pu").isin(over) & F.col("best").isNotNull())
    return (
        per.where(hash_fraction_below(seed, s + 1, U, active_fraction) & wanted)
        .select(
            F.col(U).alias(NODE),
            F.col("pu").alias("src_part"),
            F.col("best.pv").alias("dst_part"),
            (F.col("best.c") - F.col("own")).alias("gain"),
            VW,
            seeded_hash(seed, s + 2, U).alias("h"),
        )
        .withColumn("run", F.sum(VW).over(rank.rowsBetween(Window.unboundedPreceding, 0)))
    )


def _admit(
    spark: SparkSession,
    cand: DataFrame,
    loads: list[int],
    capacity: list[int],
    totals: dict[tuple[int, int], int],
) -> tuple[DataFrame, dict[tuple[int, int], int], dict[tuple[int, int], int]]:
    """The candidates admitted by per-pair allowances, tightened until no leaf overflows.

    Returns the admitted moves, the allowance of each leaf pair and the weight each pair moves.
    """
    allow = pair_allowances(loads, capacity, totals)
    for attempt in range(_TIGHTEN_ROUNDS):
        admitted = cand.join(F.broadcast(_pairs_df(spark, allow)), ["src_part", "dst_part"]).where(
            F.col("run") <= F.col("allow")
        )
        flows = {
            (int(r["src_part"]), int(r["dst_part"])): int(r["f"])
            for r in admitted.groupBy("src_part", "dst_part").agg(F.sum(VW).alias("f")).collect()
        }
        tighter = tighten_allowances(loads, capacity, allow, flows)
        if tighter is None or attempt == _TIGHTEN_ROUNDS - 1:
            break
        allow = tighter
    return admitted, allow, flows


def _pairs_df(spark: SparkSession, allow: dict[tuple[int, int], int]) -> DataFrame:
    rows = [(a, b, int(x)) for (a, b), x in sorted(allow.items())]
    return local_frame(spark, rows, _PAIR_SCHEMA)
