"""The train and aggregate stages of a run: per-leaf LightGCN in Spark tasks, one global table.

Train (``<run_dir>/train``): every training interaction goes to the leaf of its user (the
``partition`` stage's assignment; leaf 0 when the run was not partitioned, so the full graph is
the one-leaf case of the same code). ``train.rounds`` rounds of per-leaf training inside Spark
tasks (:func:`pipelines.train.rounds.train_partitioned`), all leaves starting from one seeded
initialisation and the copies of shared nodes (items held by several leaves) averaged between
rounds, weighted by their interaction counts. Writes ``ego`` (the global ego table) and
``leaf_logs`` (one JSON loss curve per leaf and round). Finished rounds are kept under
``<run_dir>/_work/train-<config hash>`` so a killed stage resumes after its last round; the
folder is deleted once the stage's marker is written (:func:`pipelines.core.stages.remove_scratch`).

Aggregate (``<run_dir>/aggregate``): LightGCN's propagation of the global ego table over the
whole training graph, in Spark (:func:`pipelines.aggregate.stage.lightgcn_propagate`):
``e = (1/(L+1)) Σ_l (D^{-1/2} A D^{-1/2})^l e^{(0)}``, so a user's vector and an item's vector
trained in different leaves live in one space and their dot product is the model's score.
Writes ``embeddings`` (``kind``, ``node_id``, ``vector`` as float32 bytes).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.aggregate.stage import lightgcn_propagate
from pipelines.core.config import ConfigError, PipelineConfig
from pipelines.core.schema import ITEM, KIND, LEAF_ID, NODE_ID, USER, VECTOR
from pipelines.core.stages import scratch_dir
from pipelines.ingest import stage as ingest_io
from pipelines.train.rounds import train_partitioned
from pipelines.train.seam import LeafTrainSettings

SPLIT = "split"
EGO = "ego"
EMBEDDINGS = "embeddings"
LEAF_LOGS = "leaf_logs"
TRAINED_CONFIG = "config"
# The config sections a trained model depends on: the train stage's marker hash and its
# recorded config cover exactly these (pipelines.registry, pipelines.forget.job use the same tuple).
TRAINED_SECTIONS = ("ingest", "partition", "run", "model", "train")


def leaf_settings(cfg: PipelineConfig) -> LeafTrainSettings:
    """The per-leaf training knobs from the ``model``, ``train`` and ``run`` config sections."""
    return LeafTrainSettings(
        dim=cfg.model.dim,
        layers=cfg.model.layers,
        epochs=cfg.train.epochs,
        batch_size=cfg.train.batch_size,
        lr=cfg.train.lr,
        reg=cfg.train.reg,
        seed=cfg.run.seed,
        time_budget_seconds=cfg.train.time_budget_minutes * 60.0,
        device=cfg.train.device,
        threads=cfg.train.threads,
        vector_dtype=cfg.train.vector_dtype,
        shared_step=cfg.train.shared_step,
    )


def interactions(spark: SparkSession, run_dir: Path, split: str) -> DataFrame:
    """The ingested interactions of one split.

    Schema: out ``user`` long, ``item`` long (dense ids).
    """
    df = ingest_io.read_ingested(spark, run_dir / "ingest")["interactions"]
    return df.where(F.col(SPLIT) == split).select(USER, ITEM)


def leaf_interactions(spark: SparkSession, run_dir: Path) -> DataFrame:
    """Training interactions, each in the leaf of its user (leaf 0 without a partition stage).

    Schema: out ``leaf_id`` long, ``user`` long, ``item`` long.
    """
    train = interactions(spark, run_dir, "train")
    assignment = run_dir / "partition" / "assignment"
    if not assignment.is_dir():
        return train.select(F.lit(0).cast("long").alias(LEAF_ID), USER, ITEM)
    owner = (
        spark.read.parquet(str(assignment))
        .where(F.col(KIND) == USER)
        .select(F.col(NODE_ID).alias(USER), F.col(LEAF_ID).cast("long").alias(LEAF_ID))
    )
    return train.join(owner, USER, "left").select(
        F.coalesce(F.col(LEAF_ID), F.lit(0).cast("long")).alias(LEAF_ID), USER, ITEM
    )


class LeafTooLargeError(ConfigError):
    """A leaf holds more training edges than ``partition.max_edges_per_leaf`` allows."""


def check_leaf_sizes(leaf_edges: DataFrame, max_edges: int) -> dict[int, int]:
    """Edges per leaf (one small row per leaf reaches the driver); raise if one is over the bound.

    Schema: leaf_edges ``leaf_id``, ``user``, ``item``.
    """
    sizes = {
        int(r[LEAF_ID]): int(r["count"]) for r in leaf_edges.groupBy(LEAF_ID).count().collect()
    }
    over = {leaf: n for leaf, n in sorted(sizes.items()) if n > max_edges}
    if over:
        leaf, n = next(iter(over.items()))
        raise LeafTooLargeError(
            f"partition.max_edges_per_leaf: leaf {leaf} holds {n:,} training edges, over the bound "
            f"of {max_edges:,} ({len(over)} of {len(sizes)} leaves are over it); raise "
            "partition.num_leaves, or set it to 0 so the partition stage derives it from the bound"
        )
    return sizes


def train_body(spark: SparkSession, cfg: PipelineConfig, run_dir: Path, out: Path) -> dict:
    """Body of the ``train`` stage (see the module docstring)."""
    leaf_edges = leaf_interactions(spark, run_dir)
    check_leaf_sizes(leaf_edges, cfg.partition.max_edges_per_leaf)
    work_dir = scratch_dir(run_dir, "train", cfg.section_hash(*TRAINED_SECTIONS))
    work_dir.mkdir(parents=True, exist_ok=True)
    result = train_partitioned(
        spark,
        leaf_edges,
        settings=leaf_settings(cfg),
        rounds=cfg.train.rounds,
        partitions=cfg.spark.shuffle_partitions,
        work_dir=work_dir,
    )
    result.ego.select(KIND, NODE_ID, VECTOR).write.parquet(str(out / EGO))
    logs = spark.createDataFrame(
        [(int(x["leaf_id"]), int(x.get("round", 0)), json.dumps(x)) for x in result.leaf_logs],
        f"{LEAF_ID} long, round int, leaf_log string",
    )
    logs.coalesce(1).write.parquet(str(out / LEAF_LOGS))
    last = [x for x in result.leaf_logs if x.get("round", 0) == result.rounds]
    counts = {r[KIND]: int(r["count"]) for r in result.ego.groupBy(KIND).count().collect()}
    summary: dict[str, Any] = {
        "user_vectors": counts.get(USER, 0),
        "item_vectors": counts.get(ITEM, 0),
        "leaves": len(last),
        "rounds": result.rounds,
        "epochs": sum(
            max((x["epochs"] for x in result.leaf_logs if x.get("round") == r), default=0)
            for r in range(1, result.rounds + 1)
        ),
        "device": ",".join(sorted({x["device"] for x in last})),
        "final_loss": (
            round(sum(x["losses"][-1] for x in last if x["losses"]) / max(1, len(last)), 6)
            if last
            else None
        ),
        # the trained-with config, key by key (pipelines.forget.job compares it to its own config)
        TRAINED_CONFIG: cfg.flat_sections(*TRAINED_SECTIONS),
    }
    return summary


def aggregate_body(spark: SparkSession, cfg: PipelineConfig, run_dir: Path, out: Path) -> dict:
    """Body of the ``aggregate`` stage (see the module docstring)."""
    ego = spark.read.parquet(str(run_dir / "train" / EGO))
    final = lightgcn_propagate(
        interactions(spark, run_dir, "train"),
        ego,
        dim=cfg.model.dim,
        layers=cfg.model.layers,
        partitions=cfg.spark.shuffle_partitions,
    )
    final.select(KIND, NODE_ID, VECTOR).write.parquet(str(out / EMBEDDINGS))
    written = spark.read.parquet(str(out / EMBEDDINGS))
    counts = {r[KIND]: int(r["count"]) for r in written.groupBy(KIND).count().collect()}
    return {"user_vectors": counts.get(USER, 0), "item_vectors": counts.get(ITEM, 0)}
