"""The end-to-end recommendation run: ingest -> train -> recommend -> evaluate.

Every stage goes through :func:`pipelines.stages.run_stage`, keyed by the hash of the config
sections it depends on, so a rerun skips finished stages and a failed run resumes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines import io as ingest_io
from pipelines.bridge import LEAF_LOG, LeafTrainSettings, train_leaves
from pipelines.config import PipelineConfig
from pipelines.dense_ids import map_back
from pipelines.evaluate import ranking_metrics
from pipelines.recommend import recommend_topk
from pipelines.schema import ITEM, KIND, LEAF_ID, NODE_ID, RANK, SCORE, USER, VECTOR
from pipelines.stages import StageResult, run_stage

log = logging.getLogger("graphpipe.run")

SPLIT = "split"


@dataclass(frozen=True)
class RunSummary:
    run_dir: Path
    stages: list[StageResult]
    metrics: dict[str, Any]


def leaf_settings(cfg: PipelineConfig) -> LeafTrainSettings:
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
    )


def interactions(spark: SparkSession, run_dir: Path, split: str) -> DataFrame:
    tables = ingest_io.read_ingested(spark, run_dir / "ingest")
    df = tables["interactions"]
    return df.where(F.col(SPLIT) == split).select(USER, ITEM)


def train_body(spark: SparkSession, cfg: PipelineConfig, run_dir: Path, out: Path) -> dict:
    """Full-graph LightGCN as one leaf (leaf 0) through the Spark-to-torch seam."""
    train = interactions(spark, run_dir, "train").withColumn(LEAF_ID, F.lit(0).cast("long"))
    rows = train_leaves(train, leaf_settings(cfg)).persist()
    rows.select(KIND, NODE_ID, LEAF_ID, VECTOR).write.parquet(str(out / "embeddings"))
    logs = rows.where(F.col(LEAF_LOG).isNotNull()).select(LEAF_ID, LEAF_LOG)
    logs.write.parquet(str(out / "leaf_logs"))
    counts = rows.groupBy(KIND).count().collect()
    leaf_log = [json.loads(r[LEAF_LOG]) for r in logs.collect()]
    rows.unpersist()
    result: dict[str, Any] = {f"{r[KIND]}_vectors": int(r["count"]) for r in counts}
    result["leaves"] = len(leaf_log)
    result["epochs"] = max((x["epochs"] for x in leaf_log), default=0)
    result["device"] = ",".join(sorted({x["device"] for x in leaf_log}))
    result["final_loss"] = leaf_log[0]["losses"][-1] if leaf_log and leaf_log[0]["losses"] else None
    return result


def embeddings(spark: SparkSession, run_dir: Path, kind: str, column: str) -> DataFrame:
    df = spark.read.parquet(str(run_dir / "train" / "embeddings"))
    return df.where(F.col(KIND) == kind).select(F.col(NODE_ID).alias(column), VECTOR)


def recommend_body(spark: SparkSession, cfg: PipelineConfig, run_dir: Path, out: Path) -> dict:
    recs = recommend_topk(
        spark,
        embeddings(spark, run_dir, USER, USER),
        embeddings(spark, run_dir, ITEM, ITEM),
        interactions(spark, run_dir, "train"),
        k=cfg.export.top_k,
        dim=cfg.model.dim,
        block_size=cfg.export.user_block_size,
    )
    dictionary = ingest_io.read_ingested(spark, run_dir / "ingest")["dictionary"]
    with_ids = recs.withColumn("user_id", F.col(USER)).withColumn("item_id", F.col(ITEM))
    with_ids = map_back(with_ids, dictionary, "user_id", "user")
    with_ids = map_back(with_ids, dictionary, "item_id", "item")
    with_ids.write.parquet(str(out / "recommendations"))
    written = spark.read.parquet(str(out / "recommendations"))
    return {"recommendations": written.count(), "users": written.select(USER).distinct().count()}


def evaluate_body(spark: SparkSession, cfg: PipelineConfig, run_dir: Path, out: Path) -> dict:
    recs = spark.read.parquet(str(run_dir / "recommend" / "recommendations")).select(
        USER, ITEM, SCORE, RANK
    )
    metrics = ranking_metrics(recs, interactions(spark, run_dir, "test"), k=cfg.export.top_k)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return {
        "evaluated_users": metrics["users"],
        **{k: v for k, v in metrics.items() if k != "users"},
    }


def run_pipeline(spark: SparkSession, cfg: PipelineConfig, run_dir: Path) -> RunSummary:
    """Run (or resume) every stage of the recommendation pipeline."""
    h_ingest = cfg.section_hash("ingest")
    h_train = cfg.section_hash("ingest", "run", "model", "train")
    h_export = cfg.section_hash("ingest", "run", "model", "train", "export")
    stages = [
        run_stage(
            run_dir,
            "ingest",
            h_ingest,
            lambda out: ingest_io.ingest(spark, cfg.ingest, out),
            spark=spark,
        ),
        run_stage(
            run_dir,
            "train",
            h_train,
            lambda out: train_body(spark, cfg, run_dir, out),
            spark=spark,
        ),
        run_stage(
            run_dir,
            "recommend",
            h_export,
            lambda out: recommend_body(spark, cfg, run_dir, out),
            spark=spark,
        ),
        run_stage(
            run_dir,
            "evaluate",
            h_export,
            lambda out: evaluate_body(spark, cfg, run_dir, out),
            spark=spark,
        ),
    ]
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    return RunSummary(run_dir=run_dir, stages=stages, metrics=metrics)
