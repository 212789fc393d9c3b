"""Partitioned LightGCN: rounds of per-leaf training in Spark tasks with federated averaging.

Round ``r``: every leaf starts from the current global ego table (the same deterministic
initialisation in round 0), trains ``settings.epochs`` epochs on its interactions inside one Spark
task (:func:`pipelines.bridge.train_leaves_from`), and the copies of each node are averaged with
weights = the node's interaction count in each leaf
(:func:`pipelines.aggregate.weighted_mean_by_node`).
Each round's table is written as Parquet under ``work_dir`` (lineage cut; a rerun resumes after
the last finished round). The final LightGCN propagation runs globally
(:func:`pipelines.aggregate.lightgcn_propagate`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.aggregate import initial_vectors, weighted_mean_by_node
from pipelines.bridge import LEAF_LOG, LeafTrainSettings, train_leaves_from
from pipelines.progress import progress
from pipelines.schema import ITEM, KIND, LEAF_ID, NODE_ID, USER, VECTOR

log = logging.getLogger("graphpipe.leaf_training")


@dataclass
class PartitionedTraining:
    ego: DataFrame
    leaf_logs: list[dict[str, Any]]
    rounds: int
    seconds: float


@dataclass(frozen=True)
class TrainingRound:
    """One finished round: where its global ego table is, its leaves' logs, its wall time.

    ``seconds`` is the round's own time (the first round also carries the setup: caching the
    leaf edges, the round-0 table); a round found finished on disk reports 0 and ``resumed``.
    """

    index: int
    ego_path: Path
    leaf_logs: list[dict[str, Any]]
    seconds: float
    resumed: bool


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
) -> Iterator[TrainingRound]:
    """Yield each round of leaf training + averaging as it finishes (``rounds=None``: no end).

    The leaf edges and the (leaf, node) memberships are cached once for all rounds; the caller
    may evaluate between rounds (its time is not in any round's ``seconds``) and stop early.

    Schema:
        leaf_edges: ``leaf_id`` long, ``user`` long, ``item`` long.
        each round's table (Parquet at ``ego_path``): ``kind``, ``node_id``, ``vector``.
    """
    started = time.perf_counter()
    leaf_edges = leaf_edges.select(LEAF_ID, USER, ITEM).repartition(partitions, LEAF_ID).cache()
    members = leaf_nodes(leaf_edges).cache()
    try:
        ego_path = work_dir / "ego-round-0"
        if not (ego_path / "_SUCCESS").exists():
            nodes = members.select(KIND, NODE_ID).distinct()
            initial_vectors(nodes, dim=settings.dim, seed=settings.seed).write.mode(
                "overwrite"
            ).parquet(str(ego_path))
        setup_seconds = time.perf_counter() - started  # charged to the first round that runs
        r = 0
        while rounds is None or r < rounds:
            r += 1
            out_path = work_dir / f"ego-round-{r}"
            log_path = work_dir / f"leaf-logs-round-{r}.json"
            if (out_path / "_SUCCESS").exists() and log_path.exists():
                ego_path = out_path
                yield TrainingRound(r, out_path, json.loads(log_path.read_text()), 0.0, True)
                continue
            t0 = time.perf_counter()
            spark.sparkContext.setJobDescription(f"graphpipe train: round {r}")
            round_logs = _run_round(leaf_edges, members, ego_path, out_path, settings, r,
                                    partitions)  # fmt: skip
            log_path.write_text(json.dumps(round_logs))
            ego_path = out_path
            seconds = time.perf_counter() - t0 + setup_seconds
            setup_seconds = 0.0
            spark.sparkContext.setJobDescription(None)  # type: ignore[arg-type]
            log.info(
                "round %d: %d leaves, %.1f s, mean final loss %.4f",
                r,
                len(round_logs),
                seconds,
                sum(x["losses"][-1] for x in round_logs if x["losses"])
                / max(1, len(round_logs)),
            )
            yield TrainingRound(r, out_path, round_logs, seconds, False)
    finally:
        members.unpersist()
        leaf_edges.unpersist()


def _run_round(
    leaf_edges: DataFrame,
    members: DataFrame,
    ego_path: Path,
    out_path: Path,
    settings: LeafTrainSettings,
    r: int,
    partitions: int,
) -> list[dict[str, Any]]:
    """Train every leaf from the table at ``ego_path``, average into ``out_path``; leaf logs."""
    spark = leaf_edges.sparkSession
    ego = spark.read.parquet(str(ego_path))
    init = members.join(ego, [KIND, NODE_ID])
    rows = train_leaves_from(leaf_edges, init, settings, round_index=r).persist()
    weighted_mean_by_node(
        rows.select(KIND, NODE_ID, "w", VECTOR), dim=settings.dim, partitions=partitions
    ).write.mode("overwrite").parquet(str(out_path))
    round_logs = [
        json.loads(x[LEAF_LOG])
        for x in rows.where(F.col(LEAF_LOG).isNotNull()).select(LEAF_LOG).collect()
    ]
    rows.unpersist()
    return sorted(round_logs, key=lambda x: x["leaf_id"])


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
    ego_path = work_dir / "ego-round-0"
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
        ego_path = done.ego_path
    return PartitionedTraining(
        ego=spark.read.parquet(str(ego_path)),
        leaf_logs=logs,
        rounds=rounds,
        seconds=time.perf_counter() - started,
    )
