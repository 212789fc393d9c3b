"""The ``recommend`` stage of a run: top-K per user and similar items, original ids restored.

Reads a finished run's ``aggregate/embeddings`` and ``ingest`` outputs and writes::

    <run_dir>/recommend/recommendations/   user, item (dense), score, rank, user_id, item_id
    <run_dir>/recommend/similar_items/     item, similar (dense), score, rank, item_id, similar_id

``user_id``, ``item_id`` and ``similar_id`` are the original ids (strings) from the dictionary;
the dense columns stay so that evaluation joins on them without the dictionary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.core.config import PipelineConfig
from pipelines.core.schema import ITEM, KIND, NODE_ID, USER, VECTOR
from pipelines.core.stages import MARKER
from pipelines.ingest import stage as ingest_io
from pipelines.ingest.dense_ids import map_back
from pipelines.serve.recommend import SIMILAR, recommend_topk, similar_items
from pipelines.train.stage import interactions as run_interactions

USER_ID, ITEM_ID, SIMILAR_ID = "user_id", "item_id", "similar_id"
RECOMMEND_SECTIONS = ("ingest", "run", "model", "train", "export")


def embeddings_path(run_dir: Path) -> Path:
    """``<run_dir>/aggregate/embeddings`` when that stage finished, else ``train/embeddings``."""
    aggregated = Path(run_dir) / "aggregate"
    if (aggregated / MARKER).is_file() and (aggregated / "embeddings").is_dir():
        return aggregated / "embeddings"
    return Path(run_dir) / "train" / "embeddings"


def run_embeddings(spark: SparkSession, run_dir: Path, kind: str, column: str) -> DataFrame:
    """The ``kind`` rows of the run's global embedding table (see :func:`embeddings_path`).

    Schema:
        returns: ``<column> long, vector binary``.
    """
    df = spark.read.parquet(str(embeddings_path(run_dir)))
    return df.where(F.col(KIND) == kind).select(F.col(NODE_ID).alias(column), VECTOR)


def run_dictionary(spark: SparkSession, run_dir: Path) -> DataFrame:
    """The run's id dictionary (``kind, original_id, node_id``)."""
    return ingest_io.read_ingested(spark, Path(run_dir) / "ingest")["dictionary"]


def with_original_ids(
    df: DataFrame, dictionary: DataFrame, columns: dict[str, tuple[str, str]]
) -> DataFrame:
    """Add original-id columns: ``columns[new] = (dense column, kind)``.

    Schema:
        df: the dense ``long`` columns named in ``columns``, among others.
        returns: the columns of ``df`` plus one ``string`` column per key of ``columns``.
    """
    for new, (dense, kind) in columns.items():
        df = map_back(df.withColumn(new, F.col(dense)), dictionary, new, kind)
    return df


def recommend_body(
    spark: SparkSession, cfg: PipelineConfig, run_dir: Path, out: Path
) -> dict[str, Any]:
    """Stage body for :func:`pipelines.core.stages.run_stage`: both tables under ``out``."""
    run_dir = Path(run_dir)
    ex = cfg.export
    items = run_embeddings(spark, run_dir, ITEM, ITEM)
    dictionary = run_dictionary(spark, run_dir)
    recs = recommend_topk(
        spark,
        run_embeddings(spark, run_dir, USER, USER),
        items,
        run_interactions(spark, run_dir, "train"),
        k=ex.top_k,
        dim=cfg.model.dim,
        block_size=ex.user_block_size,
        item_block_size=ex.item_block_size,
    )
    recs = with_original_ids(recs, dictionary, {USER_ID: (USER, USER), ITEM_ID: (ITEM, ITEM)})
    recs.write.parquet(str(out / "recommendations"))
    stats = (
        spark.read.parquet(str(out / "recommendations"))
        .agg(F.count(F.lit(1)).alias("n"), F.countDistinct(USER).alias("users"))
        .collect()[0]
    )
    result: dict[str, Any] = {"recommendations": int(stats["n"]), "users": int(stats["users"])}
    if ex.similar_k > 0:
        sims = similar_items(
            items,
            k=ex.similar_k,
            dim=cfg.model.dim,
            query_block_size=ex.item_block_size,
            item_block_size=ex.item_block_size,
        )
        sims = with_original_ids(
            sims, dictionary, {ITEM_ID: (ITEM, ITEM), SIMILAR_ID: (SIMILAR, ITEM)}
        )
        sims.write.parquet(str(out / "similar_items"))
        result["similar_items"] = spark.read.parquet(str(out / "similar_items")).count()
    return result
