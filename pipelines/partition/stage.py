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

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.core.config import ConfigError, PartitionConfig
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

TABLES = ("assignment", "leaf_stats", "halo_nodes", "halo_edges")
_ISOLATED_STAGE = 4


class PartitionError(ConfigError):
    """The graph cannot be partitioned as configured; the message names the key or input."""


def _h(default: Any, help: str) -> Any:  # noqa: A002 - same convention as pipelines.core.config
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class PartitionSettings:
    """All knobs of the partitioner: :class:`PartitionConfig` plus the seed and extras."""

    max_edges_per_leaf: int = _h(2_000_000, "Leaf bound on internal + cut edges (load).")
    num_leaves: int = _h(0, "Fixed number of leaves (0: derived from max_edges_per_leaf).")
    balance_tolerance: float = _h(0.05, "Leaf load may exceed the mean by this fraction.")
    halo_hops: int = _h(1, "Hops of outside nodes kept around each leaf.")
    seed: int = _h(0, "Seed of every hash and tie-break.")
    iterations_per_level: int = _h(8, "Refinement rounds per level of the hierarchy.")
    checkpoint_interval: int = _h(4, "Write per-round state to Parquet every N rounds.")
    coarsening_iterations: int = _h(3, "Label-propagation rounds per coarsening level.")
    coarsest_nodes_per_leaf: int = _h(160, "Stop coarsening at this many nodes per leaf.")
    max_levels: int = _h(30, "At most this many coarsening levels.")
    min_shrink: float = _h(0.95, "Stop coarsening when a level keeps more than this share.")
    cluster_active_fraction: float = _h(0.5, "Share of nodes that may move per LPA round.")
    refine_active_fraction: float = _h(0.7, "Share of nodes that may move per refinement round.")
    initial_tries: int = _h(8, "Seeded starts per bisection of the coarsest graph.")
    initial_iterations: int = _h(20, "Move rounds per start of a coarsest-graph bisection.")
    initial_refine_iterations: int = _h(20, "k-way rounds on the coarsest graph.")
    max_direct_edges: int = _h(
        4_000_000,
        "Graphs with at most this many adjacency rows (2 per undirected edge) skip the Spark "
        "coarsening and refinement: the one-task partitioner of the coarsest graph takes the "
        "fine graph itself (0: never).",
    )
    max_initial_edges: int = _h(
        10_000_000,
        "Largest coarsest graph (adjacency rows) partitioned in one task; above it "
        "the leaves start from a hash split refined on Spark.",
    )
    broadcast_max_nodes: int = _h(
        20_000_000,
        "Node tables up to this many rows are broadcast in the per-round joins (through the "
        "driver: O(nodes), never edges); above it the joins shuffle.",
    )
    work_dir: str | None = _h(None, "Folder for intermediate Parquet (default: checkpoint dir).")
    storage_level: str = _h("MEMORY_AND_DISK", "Storage level of persisted per-round tables.")

    @classmethod
    def from_config(
        cls, cfg: PartitionConfig, *, seed: int = 0, **extras: Any
    ) -> PartitionSettings:
        """Settings from the ``partition`` config section, the run seed and extra knobs."""
        base = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
        return cls(**base, seed=seed, **extras).validate()

    def validate(self) -> PartitionSettings:
        checks = [
            (self.max_edges_per_leaf >= 1, "max_edges_per_leaf", "must be >= 1"),
            (self.num_leaves >= 0, "num_leaves", "must be >= 0"),
            (0 <= self.balance_tolerance < 1, "balance_tolerance", "must be in [0, 1)"),
            (self.halo_hops >= 0, "halo_hops", "must be >= 0"),
            (self.seed >= 0, "seed", "must be >= 0"),
            (self.iterations_per_level >= 0, "iterations_per_level", "must be >= 0"),
            (self.checkpoint_interval >= 1, "checkpoint_interval", "must be >= 1"),
            (self.coarsening_iterations >= 1, "coarsening_iterations", "must be >= 1"),
            (self.coarsest_nodes_per_leaf >= 1, "coarsest_nodes_per_leaf", "must be >= 1"),
            (self.max_levels >= 0, "max_levels", "must be >= 0"),
            (0 < self.min_shrink <= 1, "min_shrink", "must be in (0, 1]"),
            (0 < self.cluster_active_fraction <= 1, "cluster_active_fraction", "must be in (0, 1]"),
            (0 < self.refine_active_fraction <= 1, "refine_active_fraction", "must be in (0, 1]"),
            (self.initial_tries >= 1, "initial_tries", "must be >= 1"),
            (self.initial_iterations >= 0, "initial_iterations", "must be >= 0"),
            (self.initial_refine_iterations >= 0, "initial_refine_iterations", "must be >= 0"),
            (self.max_initial_edges >= 0, "max_initial_edges", "must be >= 0"),
            (self.max_direct_edges >= 0, "max_direct_edges", "must be >= 0"),
            (self.broadcast_max_nodes >= 0, "broadcast_max_nodes", "must be >= 0"),
            (hasattr(StorageLevel, self.storage_level), "storage_level", "unknown StorageLevel"),
        ]
        for ok, key, msg in checks:
            if not ok:
                raise ConfigError(f"partition.{key}: {msg}")
        return self

    def leaves_for(self, total_load: int, num_nodes: int) -> int:
        """Number of leaves for a graph of this load; raises when it exceeds the nodes."""
        if self.num_leaves > 0:
            k, key = self.num_leaves, "partition.num_leaves"
        else:
            k = max(
                1, math.ceil((1 + self.balance_tolerance) * total_load / self.max_edges_per_leaf)
            )
            key = "partition.max_edges_per_leaf"
        if k > num_nodes:
            raise PartitionError(
                f"{key}: asks for {k} leaves but the graph has only {num_nodes} nodes"
            )
        return k


@dataclass(frozen=True)
class PartitionResult:
    """The partition: four tables and the quality figures.

    Schema:
        assignment ``(node_id, kind, leaf_id, depth, path: array<struct<level, part>>)``;
        leaf_stats ``(leaf_id, depth, nodes, internal_edges, cut_edges, load, halo_nodes,
        halo_edges)``; halo_nodes ``(leaf_id, node_id, kind, hops)``; halo_edges ``(leaf_id,
        src, dst[, rel])`` or ``(leaf_id, user, item)`` for interactions.
    """

    assignment: DataFrame
    leaf_stats: DataFrame
    halo_nodes: DataFrame
    halo_edges: DataFrame
    quality: dict[str, Any]
    location: str


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
        state, info = assign_leaves(
            spark, adjacency, nodes, active, total_load, k, capacity, settings, ck
        )
        loads = leaf_loads(state, k) if active else [0] * k
        leaves = all_nodes.join(state.select(NODE, PART), NODE, "left").select(
            NODE,
            F.coalesce(
                F.col(PART),
                F.pmod(seeded_hash(settings.seed, salt(_ISOLATED_STAGE), NODE), F.lit(k)),
            )
            .cast("int")
            .alias(LEAF_ID),
        )
        leaves = ck.write(leaves, "leaves")
        halo_nodes, halo_edges = halo(adjacency, leaves, edges, settings.halo_hops, ck)
        paths = F.broadcast(paths_df(spark, k))
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
            n: spark.read.parquet(f"{target}/{n}")
            for n in ("assignment", "halo_nodes", "halo_edges")
        }
        stats = leaf_stats(
            spark,
            num_leaves=k,
            leaves=leaves,
            loads=loads,
            edges=edges,
            halo_nodes=tables["halo_nodes"],
            halo_edges=tables["halo_edges"],
        )
        stats_df(spark, stats).coalesce(1).write.mode("overwrite").parquet(f"{target}/leaf_stats")
        q = quality(stats, num_nodes=num_nodes, num_edges=num_edges)
        q.update(
            info, halo_hops=settings.halo_hops, seconds=round(time.perf_counter() - started, 3)
        )
        log.info("partition: quality %s", q)
        return PartitionResult(
            assignment=tables["assignment"],
            leaf_stats=spark.read.parquet(f"{target}/leaf_stats"),
            halo_nodes=tables["halo_nodes"],
            halo_edges=tables["halo_edges"],
            quality=q,
            location=target,
        )
    finally:
        ck.release_all()
        if out_dir is not None:
            remove_dir(spark, work)


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
