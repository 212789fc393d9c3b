"""The end-to-end recommendation run: ingest -> partition -> train -> aggregate -> recommend ->
export -> evaluate.

Every stage goes through :func:`pipelines.core.stages.run_stage`, keyed by the hash of the config
sections it depends on, so a rerun skips finished stages and a failed run resumes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from pipelines.core.config import PipelineConfig
from pipelines.core.schema import ITEM, RANK, SCORE, USER
from pipelines.core.stages import StageResult, require_stages, run_stage
from pipelines.core.versions import current_version, run_root
from pipelines.evaluate.metrics import ranking_metrics
from pipelines.forget.tombstones import tombstones_folder
from pipelines.ingest import stage as ingest_io
from pipelines.serve.recommend_stage import recommend_body
from pipelines.train.stage import TRAINED_SECTIONS, aggregate_body, interactions, train_body

log = logging.getLogger("graphpipe.run")


@dataclass(frozen=True)
class RunSummary:
    run_dir: Path
    stages: list[StageResult]
    metrics: dict[str, Any]


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


@dataclass(frozen=True)
class Stage:
    """One stage of a run: its name, the config sections its output depends on, its body."""

    name: str
    sections: tuple[str, ...]
    body: Callable[[SparkSession, PipelineConfig, Path, Path], Mapping[str, Any]]
    needs: tuple[str, ...] = ()


def ingest_body(spark: SparkSession, cfg: PipelineConfig, run_dir: Path, out: Path) -> dict:
    tombstones = tombstones_folder(run_root(run_dir), cfg.ingest.tombstones_dir)
    return ingest_io.ingest(spark, cfg.ingest, out, tombstones=tombstones)


def _export_body(spark: SparkSession, cfg: PipelineConfig, run_dir: Path, out: Path) -> dict:
    from pipelines.serve.ann import AnnSettings
    from pipelines.serve.ann_export import export_body

    settings = AnnSettings.from_export(cfg.export, threads=cfg.train.threads)
    return export_body(spark, settings, run_dir, out, dim=cfg.model.dim)


def partition_body(spark: SparkSession, cfg: PipelineConfig, run_dir: Path, out: Path) -> dict:
    from pipelines.partition.stage import PartitionSettings, partition_stage

    settings = PartitionSettings.from_config(cfg.partition, seed=cfg.run.seed)
    return partition_stage(spark, run_dir / "ingest", settings, out)


_TRAINED = TRAINED_SECTIONS
STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage("ingest", ("ingest",), ingest_body),
        Stage("partition", ("ingest", "partition", "run"), partition_body, ("ingest",)),
        Stage("train", _TRAINED, train_body, ("ingest",)),
        Stage("aggregate", _TRAINED, aggregate_body, ("train",)),
        Stage("recommend", (*_TRAINED, "export"), recommend_body, ("aggregate",)),
        Stage("export", (*_TRAINED, "export"), _export_body, ("aggregate",)),
        Stage("evaluate", (*_TRAINED, "export"), evaluate_body, ("recommend",)),
    )
}


def run_one_stage(
    spark: SparkSession, cfg: PipelineConfig, run_dir: Path, name: str
) -> StageResult:
    """Run (or skip, when already done with the same config) one stage of a run.

    ``run_dir`` is a run's top folder or one of its versions; a top folder whose ``CURRENT``
    points to ``versions/vN`` (a forget job ran) resolves to that version.
    """
    run_dir = current_version(run_dir)
    stage = STAGES[name]
    require_stages(run_dir, name, stage.needs)
    return run_stage(
        run_dir,
        name,
        cfg.section_hash(*stage.sections),
        lambda out: stage.body(spark, cfg, run_dir, out),
        spark=spark,
    )


def needs_partition(spark: SparkSession, cfg: PipelineConfig, run_dir: Path) -> bool:
    """Partition when leaves are asked for, or when the train split exceeds one leaf's bound."""
    if cfg.partition.num_leaves > 0:
        return cfg.partition.num_leaves > 1
    if (run_dir / "partition" / "_STAGE.json").exists():
        return True
    edges = interactions(spark, run_dir, "train").count()
    return edges > cfg.partition.max_edges_per_leaf


def run_pipeline(spark: SparkSession, cfg: PipelineConfig, run_dir: Path) -> RunSummary:
    """Run (or resume) every stage of the recommendation pipeline.

    ingest → partition (only when the graph needs more than one leaf) → train → aggregate →
    recommend → export (faiss index, embeddings with original ids) → evaluate. Each stage is
    keyed by the hash of the config sections it depends on, so a rerun skips finished stages
    and a run killed between stages resumes. After a forget job, ``run_dir``'s current
    version (``CURRENT`` → ``versions/vN``) is the one resumed.
    """
    run_dir = current_version(run_dir)
    stages = [run_one_stage(spark, cfg, run_dir, "ingest")]
    if needs_partition(spark, cfg, run_dir):
        stages.append(run_one_stage(spark, cfg, run_dir, "partition"))
    for name in ("train", "aggregate", "recommend", "export", "evaluate"):
        stages.append(run_one_stage(spark, cfg, run_dir, name))
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    return RunSummary(run_dir=run_dir, stages=stages, metrics=metrics)
