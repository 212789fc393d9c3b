"""The ``export`` stage of a run: embeddings with original ids, seen items and the faiss index.

Writes::

    <run_dir>/export/embeddings/   kind, node_id, original_id, vector (float32 bytes)
    <run_dir>/export/seen/         user, item (dense ids of the training interactions)
    <run_dir>/export/ann/          index.faiss, item_ids.parquet, meta.json (see
    pipelines.serve.ann)

The embeddings and seen tables are written by Spark tasks; only the item vectors come to the
driver, which builds the single faiss index over them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.core.schema import ITEM, KIND, NODE_ID, ORIGINAL_ID, VECTOR
from pipelines.core.vector_bytes import bytes_to_matrix
from pipelines.serve.ann import AnnSettings, build_index, save_index
from pipelines.serve.recommend_stage import embeddings_path, run_dictionary, run_interactions

EXPORT_SECTIONS = ("ingest", "run", "model", "train", "export")


def embeddings_with_original_ids(embeddings: DataFrame, dictionary: DataFrame) -> DataFrame:
    """Attach each vector's original id (joined on kind and node id).

    Schema:
        embeddings: ``kind string, node_id long, vector binary`` (other columns dropped).
        dictionary: ``kind, original_id, node_id``.
        returns: ``kind string, node_id long, original_id string, vector binary``.
    """
    d = dictionary.select(KIND, NODE_ID, ORIGINAL_ID)
    return (
        embeddings.select(KIND, NODE_ID, VECTOR)
        .join(d, [KIND, NODE_ID], "left")
        .select(KIND, NODE_ID, ORIGINAL_ID, VECTOR)
    )


def export_body(
    spark: SparkSession,
    settings: AnnSettings,
    run_dir: Path,
    out: Path,
    *,
    dim: int,
) -> dict[str, Any]:
    """Stage body for :func:`pipelines.core.stages.run_stage` (``out`` is the stage's temp dir)."""
    run_dir = Path(run_dir)
    emb = spark.read.parquet(str(embeddings_path(run_dir)))
    embeddings_with_original_ids(emb, run_dictionary(spark, run_dir)).write.parquet(
        str(out / "embeddings")
    )
    run_interactions(spark, run_dir, "train").write.parquet(str(out / "seen"))
    written = spark.read.parquet(str(out / "embeddings"))
    items: pd.DataFrame = (
        written.where(F.col(KIND) == ITEM).select(NODE_ID, ORIGINAL_ID, VECTOR).toPandas()
    )
    items = items.sort_values(NODE_ID)
    matrix = bytes_to_matrix(list(items[VECTOR]), dim)
    index, meta = build_index(matrix, settings)
    save_index(
        out / "ann",
        index,
        meta,
        items[NODE_ID].to_numpy(np.int64),
        [str(x) for x in items[ORIGINAL_ID]],
    )
    counts = {str(r[KIND]): int(r["count"]) for r in written.groupBy(KIND).count().collect()}
    return {
        "exported_users": counts.get("user", 0),
        "exported_items": counts.get(ITEM, 0),
        "seen": spark.read.parquet(str(out / "seen")).count(),
        "ann_index": settings.kind,
        "ann_build_seconds": meta["build_seconds"],
    }
