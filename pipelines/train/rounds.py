"""Partitioned LightGCN: rounds of per-leaf training in Spark tasks with federated averaging.

Round ``r``: every leaf starts from the current global ego vectors (in round 1 the deterministic
seeded initialisation, which the leaves compute themselves), trains ``settings.epochs`` epochs on
its interactions inside one Spark task (:func:`pipelines.train.seam.train_leaves_from`), and the
copies of each node are averaged with weights = the node's interaction count in each leaf
(:func:`pipelines.aggregate.stage.average_replicas_per_leaf`; nodes held by several leaves can take
a
larger server step, ``LeafTrainSettings.shared_step``). The average is written back once per
(leaf, node) replica, so a round is one job with two shuffles (by leaf to train, by node to
average) and no join. Each round's rows are written as Parquet under ``work_dir/rounds`` (lineage
cut; a rerun resumes after the last finished round); :func:`round_table` reads the global table
out of them. The final LightGCN propagation runs globally
(:func:`pipelines.aggregate.stage.lightgcn_propagate`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.aggregate.stage import PRIMARY, average_replicas_per_leaf, round_zero_rows
from pipelines.core.progress import progress
from pipelines.core.schema import ITEM, KIND, LEAF_ID, NODE_ID, USER, VECTOR
from pipelines.train.leaf_slots import balanced_slots, slot_keys
from pipelines.train.seam import LEAF_LOG, REPLICAS, LeafTrainSettings, train_leaves_from

log = logging.getLogger("graphpipe.leaf_training")

SLOT_KEY = "slot_key"
"""Per-leaf key the rounds group by: its hash partition is the leaf's balanced task slot."""


@dataclass
class PartitionedTraining:
    ego: DataFrame
    leaf_logs: list[dict[str, Any]]
    rounds: int
    seconds: float


@dataclass(frozen=True)
class TrainingRound:
    """One finished round: where its rows are, its leaves' logs, its wall time.

    ``rows_path`` holds the round's averaged vectors once per (leaf, node) replica (the next
    round's start rows); :meth:`ego` reads the global table out of it. ``seconds`` is the
    round's own time (the first round also carries the setup: caching the leaf edges, the
    round-0 rows); a round found finished on disk reports 0 and ``resumed``.
    """

    index: int
    rows_path: Path
    leaf_logs: list[dict[str, Any]]
    seconds: float
    resumed: bool

    def ego(self, spark: SparkSession) -> DataFrame:
        """The round's global table (:func:`round_table`)."""
        return round_table(spark, self.rows_path)


def round_table(spark: SparkSession, rows_path: Path) -> DataFrame:
    """The global ``kind, node_id, vector`` table of a round: one row per node, no shuffle."""
    rows = spark.read.parquet(str(rows_path))
    return rows.where(F.col(PRIMARY)).select(KIND, NODE_ID, VECTOR)


def leaf_nodes(leaf_edges: DataFrame) -> DataFrame:
    """Every (leaf, node) the leaf's interactions touch.

    Schema: in ``leaf_id, user, item``; out ``leaf_id, kind, node_id``.
    """
    users = leaf_edges.select(LEAF_ID, F.lit(USER).alias(KIND), F.col(USER).alias(NODE_ID))
    items = leaf_edges.select(LEAF_ID, F.lit(ITEM).alias(KIND), F.col(ITEM).alias(NODE_ID))
    return users.unionByName(items).distinct()


def iter_rounds(
    spark: SparkSession,
    leaf_edges: DataFrame,
    *,
    settings: LeafTrainSettings,
    rounds: int | None,
    partitions: int,
    work_dir: Path,
) -> Generator[TrainingRound, None, None]:
    """Yield each round of leaf training + averaging as it finishes (``rounds=None``: no end).

    A round is one Spark job with two shuffles: the previous round's per-leaf rows are
    co-grouped by leaf with the leaf edges (cached once, hash-partitioned by leaf on
    ``partitions`` partitions, so they are not shuffled again) and trained; the trained
    replicas are shuffled by node, averaged, and written back once per (leaf, node)
    (:func:`pipelines.aggregate.stage.average_replicas_per_leaf`), so the next round needs no join.
    The caller may evaluate between rounds (its time is not in any round's ``seconds``) and
    stop early.

    Schema:
        leaf_edges: ``leaf_id`` long, ``user`` long, ``item`` long.
        each round's rows (Parquet at ``rows_path``): :data:`LEAF_ROWS_SCHEMA`.
    """
    started = time.perf_counter()
    # One key type on both sides of the rounds' co-group: hash partitions of an int and a long
    # key differ, so an int leaf id here would pair no leaf with its start rows.
    typed = leaf_edges.select(*[F.col(c).cast("long").alias(c) for c in (LEAF_ID, USER, ITEM)])
    sizes = {int(r[LEAF_ID]): int(r["count"]) for r in typed.groupBy(LEAF_ID).count().collect()}
    keys = slot_keys(spark, balanced_slots(sizes, partitions), partitions)
    # a map literal (one entry per leaf), not a join: no broadcast stage in every round
    key_of_leaf = F.create_map(*[F.lit(x).cast("long") for kv in sorted(keys.items()) for x in kv])
    leaf_edges = _cached_by_key(typed.withColumn(SLOT_KEY, key_of_leaf[F.col(LEAF_ID)]), partitions)
    try:
        rows_path = work_dir / "rounds" / "0"
        if not (rows_path / "_SUCCESS").exists():
            # no vectors: round 1's leaves start their nodes from the seeded vectors themselves
            round_zero_rows(leaf_nodes(leaf_edges)).write.mode("overwrite").parquet(str(rows_path))
        setup_seconds = time.perf_counter() - started  # charged to the first round that runs
        r = 0
        while rounds is None or r < rounds:
            r += 1
            out_path = work_dir / "rounds" / str(r)
            if (out_path / "_SUCCESS").exists():
                rows_path = out_path
                yield TrainingRound(r, out_path, _leaf_logs(spark, out_path), 0.0, True)
                continue
            t0 = time.perf_counter()
            spark.sparkContext.setJobDescription(f"graphpipe train: round {r}")
            _run_round(leaf_edges, key_of_leaf, rows_path, out_path, settings, r, partitions)
            round_logs = _leaf_logs(spark, out_path)
            rows_path = out_path
            seconds = time.perf_counter() - t0 + setup_seconds
            setup_seconds = 0.0
            spark.sparkContext.setJobDescription(None)  # type: ignore[arg-type]
            log.info(
                "round %d: %d leaves, %.1f s, mean final loss %.4f",
                r,
                len(round_logs),
                seconds,
                sum(x["losses"][-1] for x in round_logs if x["losses"]) / max(1, len(round_logs)),
            )
            yield TrainingRound(r, out_path, round_logs, seconds, False)
    finally:
        leaf_edges.unpersist()


def _cached_by_key(leaf_edges: DataFrame, partitions: int) -> DataFrame:
    """``leaf_edges`` hash-partitioned and sorted by slot key, cached; later plans see both.

    Planned with adaptive execution off: an adaptive plan reports an unknown partitioning, so
    every round's co-group would shuffle the cached edges again.
    """
    spark = leaf_edges.sparkSession
    key = "spark.sql.adaptive.enabled"
    before = spark.conf.get(key) or "true"
    spark.conf.set(key, "false")
    try:
        # sorted too: the co-group needs each partition sorted by key, every round
        cached = leaf_edges.repartition(partitions, SLOT_KEY).sortWithinPartitions(SLOT_KEY)
        cached = cached.cache()
        cached.count()
    finally:
        spark.conf.set(key, before)
    return cached


def _run_round(
    leaf_edges: DataFrame,
    key_of_leaf: Column,
    rows_path: Path,
    out_path: Path,
    settings: LeafTrainSettings,
    r: int,
    partitions: int,
) -> None:
    """Train every leaf from the rows at ``rows_path``; write the averaged rows to ``out_path``."""
    spark = leaf_edges.sparkSession
    # the replica counts only travel when the shared nodes take their own step
    extra = [REPLICAS] if settings.shared_step != 1.0 else []
    start = (
        spark.read.parquet(str(rows_path))
        .select(LEAF_ID, KIND, NODE_ID, VECTOR, *extra)
        .withColumn(SLOT_KEY, key_of_leaf[F.col(LEAF_ID)])
        .repartition(partitions, SLOT_KEY)
    )
    trained = train_leaves_from(leaf_edges, start, settings, round_index=r, group_key=SLOT_KEY)
    average_replicas_per_leaf(
        trained, dim=settings.dim, partitions=partitions, vector_dtype=settings.vector_dtype
    ).write.mode("overwrite").parquet(str(out_path))


def _leaf_logs(spark: SparkSession, rows_path: Path) -> list[dict[str, Any]]:
    """The leaves' logs a round's rows carry, by leaf."""
    rows = spark.read.parquet(str(rows_path)).where(F.col(LEAF_LOG).isNotNull())
    logs = [json.loads(x[LEAF_LOG]) for x in rows.select(LEAF_LOG).collect()]
    return sorted(logs, key=lambda x: x["leaf_id"])


def train_partitioned(
    spark: SparkSession,
    leaf_edges: DataFrame,
    *,
    settings: LeafTrainSettings,
    rounds: int,
    partitions: int,
    work_dir: Path,
) -> PartitionedTraining:
    """Run ``rounds`` rounds of leaf training + averaging; return the global ego table.

    Schema:
        leaf_edges: ``leaf_id`` long, ``user`` long, ``item`` long.
        returns.ego: ``kind``, ``node_id``, ``vector`` (float32 bytes).
    """
    started = time.perf_counter()
    logs: list[dict[str, Any]] = []
    rows_path = work_dir / "rounds" / "0"
    steps = iter_rounds(
        spark,
        leaf_edges,
        settings=settings,
        rounds=rounds,
        partitions=partitions,
        work_dir=work_dir,
    )
    for done in progress(steps, desc="train rounds", total=rounds):
        logs.extend(done.leaf_logs)
        rows_path = done.rows_path
    return PartitionedTraining(
        ego=round_table(spark, rows_path),
        leaf_logs=logs,
        rounds=rounds,
        seconds=time.perf_counter() - started,
    )
