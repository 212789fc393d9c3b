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


def leaf_nodes(leaf_edges: DataFrame) -> DataFrame:
    """Every (leaf, node) the leaf's interactions touch.

    Schema: in ``leaf_id, user, item``; out ``leaf_id, kind, node_id``.
    """
    users = leaf_edges.select(LEAF_ID, F.lit(USER).alias(KIND), F.col(USER).alias(NODE_ID))
    items = leaf_edges.select(LEAF_ID, F.lit(ITEM).alias(KIND), F.col(ITEM).alias(NODE_ID))
    return users.unionByName(items).distinct()


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
    leaf_edges = leaf_edges.select(LEAF_ID, USER, ITEM).repartition(partitions, LEAF_ID).cache()
    members = leaf_nodes(leaf_edges).cache()
    ego_path = work_dir / "ego-round-0"
    if not (ego_path / "_SUCCESS").exists():
        nodes = members.select(KIND, NODE_ID).distinct()
        initial_vectors(nodes, dim=settings.dim, seed=settings.seed).write.mode(
            "overwrite"
        ).parquet(str(ego_path))
    logs: list[dict[str, Any]] = []
    for r in progress(range(1, rounds + 1), desc="train rounds"):
        out_path = work_dir / f"ego-round-{r}"
        log_path = work_dir / f"leaf-logs-round-{r}.json"
        if (out_path / "_SUCCESS").exists() and log_path.exists():
            logs.extend(json.loads(log_path.read_text()))
            ego_path = out_path
            continue
        t0 = time.perf_counter()
        spark.sparkContext.setJobDescription(f"graphpipe train: round {r}/{rounds}")
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
        round_logs.sort(key=lambda x: x["leaf_id"])
        log_path.write_text(json.dumps(round_logs))
        logs.extend(round_logs)
        ego_path = out_path
        log.info(
            "round %d/%d: %d leaves, %.1f s, mean final loss %.4f",
            r,
            rounds,
            len(round_logs),
            time.perf_counter() - t0,
            sum(x["losses"][-1] for x in round_logs if x["losses"]) / max(1, len(round_logs)),
        )
    spark.sparkContext.setJobDescription(None)  # type: ignore[arg-type]
    members.unpersist()
    return PartitionedTraining(
        ego=spark.read.parquet(str(ego_path)),
        leaf_logs=logs,
        rounds=rounds,
        seconds=time.perf_counter() - started,
    )
