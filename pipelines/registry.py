"""The end-to-end recommendation run: ingest -> partition -> train -> aggregate -> recommend ->
export -> evaluate.

Every stage goes through :func:`run_one_stage`: on the run's current version
(:func:`pipelines.core.versions.current_version`), after checking that every stage it reads
(its declared dependencies, and theirs) finished with the config it was given, keyed by the
hash of the config sections it depends on and of its upstream stages' keys
(:class:`pipelines.core.stages.StageKey`). A rerun skips finished stages, a failed run resumes,
and a stage made with another config is never reused: an upstream one is refused
(:class:`pipelines.core.stages.StaleStageError`) or, with ``rerun_stale``, rerun first.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from pipelines.core.config import PipelineConfig
from pipelines.core.schema import ITEM, RANK, SCORE, USER
from pipelines.core.stages import (
    StageKey,
    StageResult,
    StaleStageError,
    read_marker,
    remove_scratch,
    require_stages,
    run_stage,
)
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
    """One stage of a run: its name, the config sections its output depends on, its body.

    ``needs``: the stages it reads; ``reads_partition``: it also reads the ``partition`` stage
    when the run is partitioned (``partition.num_leaves`` > 1, or the run version has one).
    """

    name: str
    sections: tuple[str, ...]
    body: Callable[[SparkSession, PipelineConfig, Path, Path], Mapping[str, Any]]
    needs: tuple[str, ...] = ()
    reads_partition: bool = False


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
        Stage("train", _TRAINED, train_body, ("ingest",), reads_partition=True),
        Stage("aggregate", _TRAINED, aggregate_body, ("train",)),
        Stage("recommend", (*_TRAINED, "export"), recommend_body, ("aggregate",)),
        Stage("export", (*_TRAINED, "export"), _export_body, ("aggregate",)),
        Stage("evaluate", (*_TRAINED, "export"), evaluate_body, ("recommend",)),
    )
}


@dataclass
class _Plan:
    """One job's view of a run version: the stages' keys and the stages checked so far."""

    spark: Any  # SparkSession; None where only keys are computed (stage_key)
    cfg: PipelineConfig
    run_dir: Path
    stages: Mapping[str, Stage]
    rerun_stale: bool
    keys: dict[str, StageKey] = field(default_factory=dict)
    checked: set[str] = field(default_factory=set)


def _needs(plan: _Plan, name: str) -> tuple[str, ...]:
    """The stages ``name`` reads: its ``needs``, and the partition when the run is partitioned
    (more than one leaf asked for, or a partition stage in the run version)."""
    stage = plan.stages[name]
    if stage.reads_partition and (
        plan.cfg.partition.num_leaves > 1 or read_marker(plan.run_dir, "partition") is not None
    ):
        return (*stage.needs, "partition")
    return stage.needs


def _key(plan: _Plan, name: str) -> StageKey:
    """The key of stage ``name`` made with the plan's config (from the config alone)."""
    if name not in plan.keys:
        sections = plan.stages[name].sections
        plan.keys[name] = StageKey(
            plan.cfg.section_hash(*sections),
            {s: plan.cfg.section_hash(s) for s in sections},
            {u: _key(plan, u).hash for u in _needs(plan, name)},
        )
    return plan.keys[name]


def _check(plan: _Plan, consumer: str, name: str, *, required: bool) -> None:
    """Check stage ``name`` (read by ``consumer``) and, first, the stages it reads.

    A missing stage is refused when ``required`` (a stage the job's own stage reads); further
    up it may be absent (its output is all that is read). A present stage made with another
    config is refused (:class:`StaleStageError`), or rerun when the plan allows it.
    """
    if name in plan.checked:
        return
    marker = read_marker(plan.run_dir, name)
    if marker is None and required:
        require_stages(plan.run_dir, consumer, (name,))  # raises, naming it
    if marker is None:
        return
    for upstream in _needs(plan, name):
        _check(plan, name, upstream, required=False)
    key = _key(plan, name)
    try:
        require_stages(plan.run_dir, consumer, (name,), {name: key})
    except StaleStageError as exc:
        if not plan.rerun_stale:
            raise
        log.warning("%s: rerunning it", exc)
        require_stages(plan.run_dir, name, _needs(plan, name))  # its inputs must be there
        _execute(plan, name, key)
    plan.checked.add(name)


def _execute(plan: _Plan, name: str, key: StageKey) -> StageResult:
    """Run (or skip) the stage, then delete its scratch: its marker is written."""
    stage = plan.stages[name]
    done = read_marker(plan.run_dir, name)
    result = run_stage(
        plan.run_dir,
        name,
        done["config_hash"] if done is not None and key.matches(done) else key.hash,
        lambda out: stage.body(plan.spark, plan.cfg, plan.run_dir, out),
        spark=plan.spark,
        record=key.record(),
    )
    remove_scratch(plan.run_dir, name)
    return result


def stage_key(cfg: PipelineConfig, run_dir: Path, name: str) -> StageKey:
    """The key stage ``name`` has when made with ``cfg`` in ``run_dir``'s current version (a
    stand-in for a stage's output written with :func:`pipelines.core.stages.run_stage` and
    this key is taken as made with ``cfg``)."""
    return _key(_Plan(None, cfg, current_version(run_dir), STAGES, False), name)


def fresh_stages(
    spark: SparkSession,
    cfg: PipelineConfig,
    run_dir: Path,
    consumer: str,
    names: tuple[str, ...],
    *,
    rerun_stale: bool = False,
) -> dict[str, str]:
    """Key hashes of the stages ``names`` of ``run_dir``'s current version, each checked (with
    what it reads) to have finished with ``cfg``; for a job outside the registry that reads
    them (``consumer``, named in the errors) and keys its own output on these hashes.

    Raises:
        MissingStageError: One has not finished, or finished with another config
            (:class:`pipelines.core.stages.StaleStageError`) and ``rerun_stale`` is False.
    """
    plan = _Plan(spark, cfg, current_version(run_dir), STAGES, rerun_stale)
    for name in names:
        _check(plan, consumer, name, required=True)
    return {name: _key(plan, name).hash for name in names}


def run_one_stage(
    spark: SparkSession,
    cfg: PipelineConfig,
    run_dir: Path,
    name: str,
    *,
    rerun_stale: bool = False,
    stages: Mapping[str, Stage] | None = None,
) -> StageResult:
    """Run (or skip, when already done with the same config) one stage of a run.

    ``run_dir`` is a run's top folder or one of its versions; a top folder whose ``CURRENT``
    points to ``versions/vN`` (a forget job ran) resolves to that version. The stages it reads
    must have finished, and every stage up the chain that is present with ``cfg``;
    ``rerun_stale``: rerun those made with another config instead of refusing. ``stages``: the
    table of stages (default :data:`STAGES`).

    Raises:
        MissingStageError: A stage it reads has not finished, or one up the chain finished
            with another config (:class:`pipelines.core.stages.StaleStageError`) and
            ``rerun_stale`` is False.
    """
    plan = _Plan(spark, cfg, current_version(run_dir), stages or STAGES, rerun_stale)
    for upstream in _needs(plan, name):
        _check(plan, name, upstream, required=True)
    return _execute(plan, name, _key(plan, name))


def needs_partition(spark: SparkSession, cfg: PipelineConfig, run_dir: Path) -> bool:
    """Whether :func:`run_pipeline` runs the partition stage: when more than one leaf is asked
    for, when the run already has a partition (the train stage reads it, so it must be made
    with this config), or when the train split exceeds one leaf's bound."""
    if cfg.partition.num_leaves > 1 or read_marker(run_dir, "partition") is not None:
        return True
    if cfg.partition.num_leaves == 1:
        return False
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
