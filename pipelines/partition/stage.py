"""Recursive balanced partitioning of large graphs on Spark: multilevel recursive bisection.

Each leaf of the partition tree is trained by one Spark task on one GPU, so leaves must respect
a size bound, be balanced and cut few edges. Method (measurements: ``bench/results/partition.md``):

1. Coarsen (:mod:`pipelines.partition.coarsen`): size-constrained label propagation clusters
   the graph level by level (ParHIP, KaMinPar) until about ``coarsest_nodes_per_leaf * k`` nodes
   remain; one pass over the level's edges per round.
2. Initial partition (:mod:`pipelines.partition.initial`): the coarsest graph, whose size does
   not grow with the input, is split by recursive bisection (best of ``initial_tries`` seeded
   starts per block) and k-way refinement in one Spark task with numpy. Without this step the
   cut was 1.2-1.6x METIS's; with it, 1.01-1.05x (soc-Epinions1, Gowalla, k = 16).
3. Uncoarsen (:mod:`pipelines.partition.refine`): project the leaves to each finer level and
   refine with Social-Hash-style matched label-propagation moves under a hard capacity
   ``(1 + balance_tolerance) * total_load / k``; one pass over the level's edges per round.

A graph with at most ``max_direct_edges`` adjacency rows (2M undirected edges by default) skips
steps 1 and 3: step 2's one-task partitioner takes the fine graph itself, which on graphs of
that size is both faster than the Spark rounds and as good (Gowalla, k = 16: cut 0.326 in 54 s
against 0.328 in 239 s; soc-Epinions1: 0.583 against 0.565, METIS 0.553).

Balance is by load (weighted degree, so leaves are bounded by edges). With ``num_leaves = 0``,
``k = ceil((1 + tolerance) * total_load / max_edges_per_leaf)``, which guarantees that every leaf
holds at most ``max_edges_per_leaf`` edges (internal + cut <= load <= capacity). Everything is
keyed by node ids and seeded hashes of them, so the result depends on the seed and the input
only, never on the number of shuffle partitions. Nothing is collected to the driver but
per-leaf and per-leaf-pair totals.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.core.schema import DST, ITEM, KIND, LEAF_ID, NODE_ID, REL, SRC, USER
from pipelines.partition.coarsen import undirected_graph
from pipelines.partition.common import (
    NODE,
    PART,
    VW,
    Checkpointer,
    log,
    new_work_dir,
    remove_dir,
    salt,
    seeded_hash,
)
from pipelines.partition.levels import assign_leaves
from pipelines.partition.moves import leaf_capacity
from pipelines.partition.output import (
    HOPS,
    halo,
    leaf_stats,
    paths_df,
    quality,
    stats_df,
)
from pipelines.partition.refine import leaf_loads
from pipelines.partition.settings import PartitionError, PartitionResult, PartitionSettings

__all__ = [
    "TABLES",
    "PartitionError",
    "PartitionResult",
    "PartitionSettings",
    "interactions_as_edges",
    "partition_graph",
    "partition_interactions",
    "partition_stage",
]

TABLES = ("assignment", "leaf_stats", "halo_nodes", "halo_edges")
_ISOLATED_STAGE = 4


def partition_graph(
    spark: SparkSession,
    edges: DataFrame,
    settings: PartitionSettings,
    *,
    node_kinds: DataFrame | None = None,
    out_dir: str | Path | None = None,
) -> PartitionResult:
    """Partition a graph given as directed edge rows (relations kept in the halo edges).

    Args:
        spark: Active session (needs a checkpoint dir or ``settings.work_dir``).
        edges: ``src, dst`` (long) and optionally ``rel``; other columns are ignored.
        settings: Partition settings.
        node_kinds: Optional ``(node_id, kind)``: adds isolated nodes and names each node's
            kind (default ``"node"``).
        out_dir: Write the tables here (Parquet, one folder per table); by default they stay in
            a fresh folder under the work dir, named by ``PartitionResult.location``.

    Raises:
        PartitionError: The graph is empty or has fewer nodes than the leaves asked for.
    """
    keep = [SRC, DST] + ([REL] if REL in edges.columns else [])
    extra = None
    if node_kinds is not None:
        extra = node_kinds.select(F.col(NODE_ID).alias(NODE), KIND)

    def kinds(df: DataFrame, col: str) -> DataFrame:
        if extra is None:
            return df.withColumn(KIND, F.lit("node"))
        named = extra.select(F.col(NODE).alias(col), F.col(KIND).alias("_k"))
        return (
            df.join(named, col, "left")
            .withColumn(KIND, F.coalesce(F.col("_k"), F.lit("node")))
            .drop("_k")
        )

    return _partition(spark, edges.select(*keep), settings, extra, kinds, None, out_dir)


def interactions_as_edges(interactions: DataFrame) -> DataFrame:
    """User-item rows as edges over one id space: user ``u`` -> ``2u``, item ``i`` -> ``2i+1``.

    Schema:
        ``(user, item)`` -> ``(src, dst)``.
    """
    return interactions.select((F.col(USER) * 2).alias(SRC), (F.col(ITEM) * 2 + 1).alias(DST))


def partition_interactions(
    spark: SparkSession,
    interactions: DataFrame,
    settings: PartitionSettings,
    *,
    out_dir: str | Path | None = None,
) -> PartitionResult:
    """Partition a bipartite user-item graph (two id spaces); ids and kinds are mapped back.

    Schema:
        interactions ``(user, item)``; halo edges come back as ``(leaf_id, user, item)``.
    """

    def kinds(df: DataFrame, col: str) -> DataFrame:
        return df.withColumn(
            KIND, F.when(F.col(col) % 2 == 0, F.lit(USER)).otherwise(F.lit(ITEM))
        ).withColumn(col, F.floor(F.col(col) / 2).cast("long"))

    def edge_cols(df: DataFrame) -> DataFrame:
        return df.select(
            LEAF_ID,
            F.floor(F.col(SRC) / 2).cast("long").alias(USER),
            F.floor(F.col(DST) / 2).cast("long").alias(ITEM),
        )

    edges = interactions_as_edges(interactions)
    return _partition(spark, edges, settings, None, kinds, edge_cols, out_dir)


@dataclass(frozen=True)
class _Graph:
    """The fine graph of one partition run, written once, and its sizes."""

    edges: DataFrame
    adjacency: DataFrame
    nodes: DataFrame
    all_nodes: DataFrame
    num_nodes: int
    num_edges: int
    active: int
    total_load: int
    k: int
    capacity: list[int]


def _partition(
    spark: SparkSession,
    edges: DataFrame,
    settings: PartitionSettings,
    extra_nodes: DataFrame | None,
    kinds: Any,
    edge_cols: Any,
    out_dir: str | Path | None,
) -> PartitionResult:
    settings.validate()
    started = time.perf_counter()
    work = new_work_dir(spark, settings.work_dir)
    ck = Checkpointer(
        spark,
        work,
        interval=settings.checkpoint_interval,
        storage_level=getattr(StorageLevel, settings.storage_level),
    )
    target = str(out_dir) if out_dir is not None else f"{work}/result"
    try:
        graph = _fine_graph(spark, edges, extra_nodes, settings, ck)
        state, info = assign_leaves(
            spark,
            graph.adjacency,
            graph.nodes,
            graph.active,
            graph.total_load,
            graph.k,
            graph.capacity,
            settings,
            ck,
        )
        loads = leaf_loads(state, graph.k) if graph.active else [0] * graph.k
        leaves = _all_nodes_leaves(graph, state, settings.seed, ck)
        tables, q = _write_tables(
            spark, graph, leaves, loads, settings, kinds, edge_cols, target, ck
        )
        q.update(
            info, halo_hops=settings.halo_hops, seconds=round(time.perf_counter() - started, 3)
        )
        log.info("partition: quality %s", q)
        return PartitionResult(**tables, quality=q, location=target)
    finally:
        ck.release_all()
        if out_dir is not None:
            remove_dir(spark, work)


def _fine_graph(
    spark: SparkSession,
    edges: DataFrame,
    extra_nodes: DataFrame | None,
    settings: PartitionSettings,
    ck: Checkpointer,
) -> _Graph:
    """Write the edges, their undirected adjacency and every node; count them; pick ``k``."""
    edges = ck.write(edges, "edges")
    adjacency, nodes = undirected_graph(edges)
    adjacency = ck.write(adjacency, "adj0")
    nodes = ck.write(nodes, "nodes0")
    ids = edges.select(F.col(SRC).alias(NODE)).unionByName(edges.select(F.col(DST).alias(NODE)))
    if extra_nodes is not None:
        ids = ids.unionByName(extra_nodes.select(NODE))
    all_nodes = ck.write(ids.distinct(), "all_nodes")
    num_nodes = all_nodes.count()
    if num_nodes == 0:
        raise PartitionError("edges: the graph is empty (no edge and no node)")
    num_edges = edges.count()
    active = nodes.count()
    load_row = nodes.agg(F.sum(VW)).first()
    total_load = int((load_row[0] if load_row is not None else 0) or 0)
    k = settings.leaves_for(total_load, num_nodes)
    capacity = [leaf_capacity(total_load, k, settings.balance_tolerance)] * k
    log.info(
        "partition: %d nodes (%d with edges), %d edges, load %d -> %d leaves, capacity %d",
        num_nodes,
        active,
        num_edges,
        total_load,
        k,
        capacity[0],
    )
    return _Graph(
        edges, adjacency, nodes, all_nodes, num_nodes, num_edges, active, total_load, k, capacity
    )


def _all_nodes_leaves(graph: _Graph, state: DataFrame, seed: int, ck: Checkpointer) -> DataFrame:
    """``(node, leaf_id)`` of every node: its leaf, or a seeded hash leaf for isolated nodes."""
    leaves = graph.all_nodes.join(state.select(NODE, PART), NODE, "left").select(
        NODE,
        F.coalesce(
            F.col(PART),
            F.pmod(seeded_hash(seed, salt(_ISOLATED_STAGE), NODE), F.lit(graph.k)),
        )
        .cast("int")
        .alias(LEAF_ID),
    )
    return ck.write(leaves, "leaves")


def _write_tables(
    spark: SparkSession,
    graph: _Graph,
    leaves: DataFrame,
    loads: list[int],
    settings: PartitionSettings,
    kinds: Any,
    edge_cols: Any,
    target: str,
    ck: Checkpointer,
) -> tuple[dict[str, DataFrame], dict[str, Any]]:
    """Write the four tables under ``target``; return them (read back) and the quality."""
    halo_nodes, halo_edges = halo(graph.adjacency, leaves, graph.edges, settings.halo_hops, ck)
    paths = F.broadcast(paths_df(spark, graph.k))
    assignment = kinds(leaves.join(paths, LEAF_ID), NODE).select(
        F.col(NODE).alias(NODE_ID), KIND, LEAF_ID, "depth", "path"
    )
    halo_out = kinds(halo_nodes, NODE).select(LEAF_ID, F.col(NODE).alias(NODE_ID), KIND, HOPS)
    halo_edges_out = edge_cols(halo_edges) if edge_cols is not None else halo_edges
    for name, df in (
        ("assignment", assignment),
        ("halo_nodes", halo_out),
        ("halo_edges", halo_edges_out),
    ):
        df.write.mode("overwrite").parquet(f"{target}/{name}")
    tables = {
        n: spark.read.parquet(f"{target}/{n}") for n in ("assignment", "halo_nodes", "halo_edges")
    }
    stats = leaf_stats(
        spark,
        num_leaves=graph.k,
        leaves=leaves,
        loads=loads,
        edges=graph.edges,
        halo_nodes=tables["halo_nodes"],
        halo_edges=tables["halo_edges"],
    )
    stats_df(spark, stats).coalesce(1).write.mode("overwrite").parquet(f"{target}/leaf_stats")
    tables["leaf_stats"] = spark.read.parquet(f"{target}/leaf_stats")
    return tables, quality(stats, num_nodes=graph.num_nodes, num_edges=graph.num_edges)


def partition_stage(
    spark: SparkSession, ingest_dir: str | Path, settings: PartitionSettings, out_dir: Path
) -> dict[str, Any]:
    """Body of ``run_stage(run_dir, "partition", ...)``: partition the ingested train split.

    Reads ``ingest_dir/interactions`` (bipartite) or ``ingest_dir/edges`` (relations kept; the
    ``dictionary`` names node kinds and adds nodes without train edges), writes the four
    tables under ``out_dir`` and returns row counts plus the quality figures.
    """
    ingest_dir = Path(ingest_dir)

    def table(name: str) -> DataFrame | None:
        path = ingest_dir / name
        if not path.is_dir():
            return None
        df = spark.read.parquet(str(path))
        return df.where(F.col("split") == "train") if "split" in df.columns else df

    interactions, edges, dictionary = table("interactions"), table("edges"), table("dictionary")
    if interactions is not None:
        result = partition_interactions(spark, interactions, settings, out_dir=out_dir)
    elif edges is not None:
        kinds = None
        if dictionary is not None:
            kinds = dictionary.where(F.col(KIND) != "relation").select(NODE_ID, KIND)
        result = partition_graph(spark, edges, settings, node_kinds=kinds, out_dir=out_dir)
    else:
        raise PartitionError(
            f"{ingest_dir}: no edges/ or interactions/ (run the ingest stage first)"
        )
    q = result.quality
    return {
        "nodes": int(q["nodes"]),
        "edges": int(q["edges"]),
        "leaves": int(q["num_leaves"]),
        "halo_nodes": int(round((q["halo_replication"] - 1) * q["nodes"])),
        "quality": q,
    }
