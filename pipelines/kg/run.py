"""The knowledge-graph run: ingest triples -> partition -> NBFNet trained in Spark tasks -> rank.

Stages (each through :func:`pipelines.registry.run_one_stage`, keyed by the config sections it
reads and its upstream stages' keys, so a rerun skips finished stages, a killed run resumes and
a stage made with another config is never reused):

1. ``ingest``: ``head<TAB>relation<TAB>tail`` train and test files -> dense entity and relation
   ids (:func:`pipelines.ingest.stage.ingest`, ``ingest.format: triples``);
2. ``partition``: the training graph into leaves with 1-hop halos, relations kept on the halo
   edges (:func:`pipelines.partition.stage.partition_stage`);
3. ``nbfnet-train``: one NBFNet (Zhu et al., NeurIPS 2021) shared by all leaves, trained by
   rounds of per-leaf Adam steps averaged by query count, ``w <- Σ_k n_k w_k / Σ_k n_k``
   (McMahan et al. 2017; :func:`pipelines.kg.seam_train.train_rounds`); writes ``model.pt``;
4. ``nbfnet-evaluate``: every test triple as a tail and a head query, each ranked on its source's
   leaf + halo against all entities, filtered by the known (train + test) triples
   (:func:`pipelines.kg.seam.rank_queries`); writes ``ranks/`` and ``metrics.json`` (MRR,
   MR, Hits@1/3/10, coverage = share of answers inside their query's subgraph).

Only the leaves' parameter sets (k models) and per-stage counts reach the driver.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.core.config import ConfigError, PipelineConfig
from pipelines.core.schema import DST, KIND, LEAF_ID, NODE_ID, REL, SRC
from pipelines.core.stages import StageResult
from pipelines.registry import Stage, ingest_body, partition_body, run_one_stage

MODEL_FILE = "model.pt"
_SPLIT = "split"


def _edges(spark: SparkSession, run_dir: Path, split: str | None) -> DataFrame:
    df = spark.read.parquet(str(run_dir / "ingest" / "edges"))
    if REL not in df.columns:
        raise ConfigError(
            f"{run_dir / 'ingest'}: no relation column; the KG run needs ingest.format: triples"
        )
    if split is not None:
        df = df.where(F.col(_SPLIT) == split)
    return df.select(F.col(SRC).cast("long"), F.col(REL).cast("long"), F.col(DST).cast("long"))


def kg_sizes(spark: SparkSession, run_dir: Path) -> tuple[int, int]:
    """``(entities N, relations R)`` from the ingest dictionary (two rows collected)."""
    counts = {
        str(r[KIND]): int(r["count"])
        for r in spark.read.parquet(str(run_dir / "ingest" / "dictionary"))
        .groupBy(KIND)
        .count()
        .collect()
    }
    return counts.get("entity", 0), counts.get("relation", 0)


def _leaf_frames(spark: SparkSession, run_dir: Path) -> tuple[DataFrame, DataFrame]:
    from pipelines.kg.seam import leaf_triples

    part = run_dir / "partition"
    assignment = spark.read.parquet(str(part / "assignment")).select(NODE_ID, LEAF_ID)
    halo = spark.read.parquet(str(part / "halo_edges"))
    edges = leaf_triples(_edges(spark, run_dir, "train"), assignment, halo)
    return edges, assignment


def nbfnet_train_body(
    spark: SparkSession, cfg: PipelineConfig, run_dir: Path, out: Path
) -> dict[str, Any]:
    from pipelines.kg.seam import train_config
    from pipelines.kg.seam_train import NBFNetRounds, train_rounds

    num_entities, num_relations = kg_sizes(spark, run_dir)
    edges, assignment = _leaf_frames(spark, run_dir)
    rounds = NBFNetRounds(
        train_config(cfg),
        num_entities,
        num_relations,
        rounds=cfg.nbfnet.rounds,
        steps=cfg.nbfnet.steps_per_round,
        device=cfg.nbfnet.device,
        threads=cfg.nbfnet.threads,
    )
    state, history = train_rounds(edges, assignment, rounds)
    (out / MODEL_FILE).write_bytes(state)
    (out / "history.json").write_text(json.dumps(history, indent=2))
    return {
        "entities": num_entities,
        "relations": num_relations,
        "training_queries": int(history[-1]["queries"]),
        "final_loss": float(history[-1]["loss"]),
    }


def query_rows(test: DataFrame, num_relations: int, limit: int, seed: int) -> DataFrame:
    """Tail and head queries ``(query_id, src, rel, answer)`` of (at most ``limit``) test triples.

    A triple's id is a seeded hash of it, so nothing depends on row order and no step gathers
    the test set in one partition; ``limit`` keeps the triples with the smallest hashes (a
    top-k). Tail query ``(h, r, ?)`` gets ``2 * id``, head query ``(t, r + R, ?)`` ``2 * id + 1``
    (``id < 2^51``).
    """
    # 51 bits (a collision among 20k test triples has odds ~1e-7): the ranking tasks once
    # carried ids in a pandas float64 column, exact only below 2^53; they are exact at 64 bits
    # now, and 51 bits keep the same test queries as the runs measured before
    key = F.pmod(F.xxhash64(SRC, REL, DST, F.lit(seed)), F.lit(1 << 51))
    keyed = test.select(key.alias("_key"), SRC, REL, DST)
    if limit:
        keyed = keyed.orderBy("_key", SRC, REL, DST).limit(limit)
    base = F.shiftleft(F.col("_key"), 1)
    tails = keyed.select(base.alias("query_id"), SRC, REL, F.col(DST).alias("answer"))
    heads = keyed.select(
        (base + F.lit(1)).alias("query_id"),
        F.col(DST).alias(SRC),
        (F.col(REL) + F.lit(num_relations)).alias(REL),
        F.col(SRC).alias("answer"),
    )
    return tails.unionByName(heads)


def nbfnet_evaluate_body(
    spark: SparkSession, cfg: PipelineConfig, run_dir: Path, out: Path
) -> dict[str, Any]:
    from pipelines.kg.seam import NBFNetScoring, mrr_and_hits, rank_queries, train_config

    num_entities, num_relations = kg_sizes(spark, run_dir)
    edges, assignment = _leaf_frames(spark, run_dir)
    state = (run_dir / "nbfnet-train" / MODEL_FILE).read_bytes()
    scoring = NBFNetScoring(
        state,
        train_config(cfg),
        num_entities,
        num_relations,
        batch_size=cfg.nbfnet.eval_batch_size,
        device=cfg.nbfnet.device,
        threads=cfg.nbfnet.threads,
    )
    queries = query_rows(
        _edges(spark, run_dir, "test"), num_relations, cfg.nbfnet.test_queries, cfg.run.seed
    )
    known = _edges(spark, run_dir, None)
    rank_queries(edges, assignment, queries, known, scoring).write.mode("overwrite").parquet(
        str(out / "ranks")
    )
    metrics = mrr_and_hits(spark.read.parquet(str(out / "ranks")))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return {
        "queries": int(metrics["queries"]),
        **{k: v for k, v in metrics.items() if k != "queries"},
    }


_TRAIN_SECTIONS = ("ingest", "partition", "run", "nbfnet")
KG_STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage("ingest", ("ingest",), ingest_body),
        Stage("partition", ("ingest", "partition", "run"), partition_body, ("ingest",)),
        Stage("nbfnet-train", _TRAIN_SECTIONS, nbfnet_train_body, ("partition",)),
        Stage("nbfnet-evaluate", _TRAIN_SECTIONS, nbfnet_evaluate_body, ("nbfnet-train",)),
    )
}


@dataclass(frozen=True)
class KGRunSummary:
    run_dir: Path
    stages: list[StageResult]
    metrics: dict[str, float]


def run_kg_stage(
    spark: SparkSession, cfg: PipelineConfig, run_dir: Path, name: str, *, rerun_stale: bool = False
) -> StageResult:
    """Run (or skip, when already done with the same config) one stage of the KG run, as
    :func:`pipelines.registry.run_one_stage` runs the recommendation run's stages (upstream
    stages made with another config refused, or rerun with ``rerun_stale``)."""
    return run_one_stage(spark, cfg, run_dir, name, rerun_stale=rerun_stale, stages=KG_STAGES)


def run_kg(
    spark: SparkSession,
    cfg: PipelineConfig,
    run_dir: Path,
    only: str | None = None,
    *,
    rerun_stale: bool = False,
) -> KGRunSummary:
    """Run (or resume) every stage of the knowledge-graph run; see the module docstring.

    ``only``: run that one stage (one Airflow task per stage); the stages it reads must be done
    with the same config, else :class:`pipelines.core.stages.MissingStageError` names them. The
    summary's ``metrics`` are those of ``nbfnet-evaluate`` when it ran (or was skipped as done),
    else empty.
    """
    if only is not None and only not in KG_STAGES:
        raise ConfigError(f"stage: expected one of {', '.join(KG_STAGES)}, got {only!r}")
    if cfg.ingest.format != "triples":
        raise ConfigError(
            "ingest.format: the KG run reads head/relation/tail triples "
            f"(got {cfg.ingest.format!r})"
        )
    if not cfg.ingest.test_path:
        raise ConfigError("ingest.test_path: the KG run ranks the test triples; set a test file")
    names = list(KG_STAGES) if only is None else [only]
    stages = [run_kg_stage(spark, cfg, run_dir, n, rerun_stale=rerun_stale) for n in names]
    metrics_file = run_dir / "nbfnet-evaluate" / "metrics.json"
    evaluated = "nbfnet-evaluate" in names and metrics_file.is_file()
    metrics = json.loads(metrics_file.read_text()) if evaluated else {}
    return KGRunSummary(run_dir=run_dir, stages=stages, metrics=metrics)
