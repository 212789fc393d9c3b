"""Coarsening for multilevel partitioning on Spark: size-constrained label propagation.

Each level clusters the graph with size-constrained label propagation, as in ParHIP (Meyerhenke,
Sanders, Schulz, "Parallel Graph Partitioning for Complex Networks", IPDPS 2015, section 3.1)
and KaMinPar (Gottesbüren et al., ESA 2021, section 4): every active node adopts the
neighbouring cluster it has the most edge weight to, if that cluster stays within
``max_weight``; then clusters are contracted into the nodes of the next level (edge weights
summed, node weights summed). Nodes that stay alone (leaves of hubs) are grouped by their
favourite neighbouring cluster ("two-hop clustering", KaMinPar section 4.1), which keeps stars
and power-law fringes shrinking.

Synchronous updates oscillate on bipartite graphs, so each iteration moves only a hashed
``active_fraction`` of the nodes. Admission into a cluster is exact: candidates are ranked by
(gain desc, hash, id) per target and admitted while the running weight fits. Every step is a
join or an aggregation over edges (linear per pass); nothing depends on row order.

Schema:
    adjacency ``(u, v, w)``: long, long, long; both directions of every undirected pair,
    no self-loops. nodes ``(node, vw)``: long, long (vw > 0). mapping ``(node, label)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from pipelines.core.schema import DST, SRC
from pipelines.partition.common import (
    LABEL,
    NODE,
    VW,
    Checkpointer,
    U,
    V,
    W,
    cache_by_source,
    hash_fraction_below,
    log,
    salt,
    seeded_hash,
    small,
)

_CLUSTER_STAGE = 1
_TWO_HOP_STAGE = 2


@dataclass(frozen=True)
class Level:
    """One level of the hierarchy: its graph and the map of its nodes to the next level."""

    adjacency: DataFrame
    nodes: DataFrame
    num_nodes: int
    mapping: DataFrame | None = None  # (node, label): label = node id in the next level


def undirected_graph(edges: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Weighted undirected simple graph of directed edge rows.

    The weight of a pair is the number of rows joining it in either direction (relations and
    duplicates included); self-loops are left out.

    Schema:
        edges: ``src, dst`` (long). Returns adjacency ``(u, v, w)`` and nodes ``(node, vw)``
        with ``vw`` the weighted degree (nodes with only self-loops are absent).
    """
    pairs = (
        edges.where(F.col(SRC) != F.col(DST))
        .select(F.least(SRC, DST).alias(U), F.greatest(SRC, DST).alias(V))
        .groupBy(U, V)
        .agg(F.count(F.lit(1)).alias(W))
    )
    adjacency = pairs.unionByName(pairs.select(F.col(V).alias(U), F.col(U).alias(V), W))
    nodes = adjacency.groupBy(U).agg(F.sum(W).alias(VW)).withColumnRenamed(U, NODE)
    return adjacency, nodes


def cluster_level(
    adjacency: DataFrame,
    nodes: DataFrame,
    *,
    max_weight: int,
    iterations: int,
    active_fraction: float,
    two_hop_threshold: float,
    seed: int,
    level: int,
    ck: Checkpointer,
    broadcast: bool = False,
) -> DataFrame:
    """Size-constrained label propagation; returns ``(node, label)`` for every node.

    Args:
        adjacency: ``(u, v, w)`` of this level.
        nodes: ``(node, vw)`` of this level.
        max_weight: No cluster grows above this weight (single heavier nodes stay alone).
        iterations: Label-propagation rounds.
        active_fraction: Share of nodes allowed to move per round (hash-chosen).
        two_hop_threshold: Group lonely nodes when clusters exceed this share of nodes.
        seed: Partition seed.
        level: Level number (salts the hashes).
        ck: Checkpointer for the per-round state.
        broadcast: Broadcast node tables in the joins with the adjacency.
    """
    lab = ck.keep(nodes.select(NODE, F.col(NODE).alias(LABEL), VW), "lpa")
    fav = None
    for it in range(iterations):
        s = salt(_CLUSTER_STAGE, level, it)
        weights = lab.groupBy(LABEL).agg(F.sum(VW).alias("cw"))
        by_v = lab.join(weights, LABEL).select(F.col(NODE).alias(V), F.col(LABEL).alias("lv"), "cw")
        grouped = adjacency.join(small(by_v, broadcast), V).groupBy(U, "lv", "cw")
        conn = grouped.agg(F.sum(W).alias("c"))
        mine = lab.select(F.col(NODE).alias(U), F.col(LABEL).alias("lu"), VW)
        rows = conn.join(small(mine, broadcast), U)
        option = F.struct(F.col("c"), seeded_hash(seed, s, U, "lv").alias("h"), F.col("lv"))
        other = F.col("lv") != F.col("lu")
        fits = other & (F.col("cw") + F.col(VW) <= F.lit(max_weight))
        per = rows.groupBy(U, VW).agg(
            F.sum(F.when(~other, F.col("c")).otherwise(F.lit(0))).alias("own"),
            F.max(F.when(fits, option)).alias("best"),
            F.max(F.when(other, option)).alias("fav"),
        )
        per = ck.keep(per, "lpa-per", eager=False)
        fav = per.select(F.col(U).alias(NODE), F.col("fav.lv").alias("fav"))
        cand = per.where(
            hash_fraction_below(seed, s + 1, U, active_fraction) & (F.col("best.c") > F.col("own"))
        ).select(
            F.col(U).alias(NODE),
            F.col("best.lv").alias("target"),
            (F.col("best.c") - F.col("own")).alias("gain"),
            VW,
            seeded_hash(seed, s + 2, U).alias("h"),
        )
        rank = Window.partitionBy("target").orderBy(F.desc("gain"), "h", NODE)
        admitted = (
            cand.withColumn("run", F.sum(VW).over(rank.rowsBetween(Window.unboundedPreceding, 0)))
            .join(weights.withColumnRenamed(LABEL, "target"), "target")
            .where(F.col("run") + F.col("cw") <= F.lit(max_weight))
            .select(NODE, "target")
        )
        lab = lab.join(admitted, NODE, "left").select(
            NODE, F.coalesce(F.col("target"), F.col(LABEL)).alias(LABEL), VW
        )
        lab = ck.step(lab, "lpa")
    if fav is not None:
        lab = _two_hop(
            lab,
            fav,
            max_weight=max_weight,
            threshold=two_hop_threshold,
            seed=seed,
            level=level,
            ck=ck,
        )
    ck.release("lpa-per")
    return lab.select(NODE, LABEL)


def _two_hop(
    lab: DataFrame,
    fav: DataFrame,
    *,
    max_weight: int,
    threshold: float,
    seed: int,
    level: int,
    ck: Checkpointer,
) -> DataFrame:
    """Merge nodes left alone that share a favourite cluster, in chunks of ``max_weight``."""
    sizes = lab.groupBy(LABEL).agg(F.count(F.lit(1)).alias("size"))
    counts = sizes.agg(F.count(F.lit(1)).alias("clusters"), F.sum("size").alias("nodes")).first()
    if counts is None or counts["clusters"] <= threshold * counts["nodes"]:
        return lab
    lonely = (
        lab.join(sizes.where(F.col("size") == 1), LABEL)
        .join(fav, NODE)
        .where(F.col("fav").isNotNull())
        .select(NODE, VW, "fav")
    )
    chunks = lonely.groupBy("fav").agg(
        F.ceil(F.sum(VW) / F.lit(float(max_weight))).cast("long").alias("chunks")
    )
    bucketed = lonely.join(chunks, "fav").withColumn(
        "bucket", F.pmod(seeded_hash(seed, salt(_TWO_HOP_STAGE, level), NODE), F.col("chunks"))
    )
    heads = bucketed.groupBy("fav", "bucket").agg(F.min(NODE).alias("head"))
    moved = bucketed.join(heads, ["fav", "bucket"]).select(NODE, "head")
    out = lab.join(moved, NODE, "left").select(
        NODE, F.coalesce(F.col("head"), F.col(LABEL)).alias(LABEL), VW
    )
    return ck.step(out, "lpa")


def contract(
    adjacency: DataFrame, nodes: DataFrame, mapping: DataFrame, *, broadcast: bool = False
) -> tuple[DataFrame, DataFrame]:
    """The next level: one node per label, edge and node weights summed, inner edges dropped.

    Schema:
        adjacency ``(u, v, w)``, nodes ``(node, vw)``, mapping ``(node, label)`` ->
        adjacency ``(u, v, w)`` and nodes ``(node, vw)`` over labels.
    """
    mu = mapping.select(F.col(NODE).alias(U), F.col(LABEL).alias("cu"))
    mv = mapping.select(F.col(NODE).alias(V), F.col(LABEL).alias("cv"))
    coarse = (
        adjacency.join(small(mu, broadcast), U)
        .join(small(mv, broadcast), V)
        .where(F.col("cu") != F.col("cv"))
        .groupBy("cu", "cv")
        .agg(F.sum(W).alias(W))
        .select(F.col("cu").alias(U), F.col("cv").alias(V), W)
    )
    coarse_nodes = (
        nodes.join(mapping, NODE)
        .groupBy(LABEL)
        .agg(F.sum(VW).alias(VW))
        .withColumnRenamed(LABEL, NODE)
    )
    return coarse, coarse_nodes


def coarsen(
    adjacency: DataFrame,
    nodes: DataFrame,
    num_nodes: int,
    *,
    target_nodes: int,
    max_weight: int,
    iterations: int,
    active_fraction: float,
    min_shrink: float,
    max_levels: int,
    broadcast_max_nodes: int,
    seed: int,
    ck: Checkpointer,
) -> list[Level]:
    """Build the hierarchy until it has at most ``target_nodes`` nodes or stops shrinking.

    Returns:
        Levels finest first; every level but the last has its ``mapping`` to the next.
    """
    levels = [Level(adjacency, nodes, num_nodes)]
    while levels[-1].num_nodes > target_nodes and len(levels) <= max_levels:
        cur = levels[-1]
        broadcast = cur.num_nodes <= broadcast_max_nodes
        adj = cache_by_source(cur.adjacency, ck, "coarsen-adj")
        mapping = cluster_level(
            adj,
            cur.nodes,
            max_weight=max_weight,
            iterations=iterations,
            active_fraction=active_fraction,
            two_hop_threshold=0.5,
            seed=seed,
            level=len(levels) - 1,
            ck=ck,
            broadcast=broadcast,
        )
        mapping = ck.write(mapping, f"map{len(levels) - 1}")
        next_adj, next_nodes = contract(adj, cur.nodes, mapping, broadcast=broadcast)
        next_nodes = ck.write(next_nodes, f"nodes{len(levels)}")
        count = next_nodes.count()
        log.info(
            "partition: coarsening level %d: %d -> %d nodes", len(levels) - 1, cur.num_nodes, count
        )
        if count > min_shrink * cur.num_nodes:
            break
        next_adj = ck.write(next_adj, f"adj{len(levels)}")
        levels[-1] = Level(cur.adjacency, cur.nodes, cur.num_nodes, mapping)
        levels.append(Level(next_adj, next_nodes, count))
    ck.release("coarsen-adj")
    return levels
