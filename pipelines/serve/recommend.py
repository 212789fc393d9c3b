"""Top-K recommendations and similar items from embedding tables, in Spark tasks, in blocks.

Queries (users, or items for similar items) are grouped into blocks of ``query_block_size``
rows and items into blocks of ``item_block_size`` rows; every (query block, item block) pair is
one row of a shuffled join, scored by one matrix product in a Python task, which keeps the K
best of that item block per query (masked items excluded, ties broken by the lower item id).
A per-query window then keeps the K best over all item blocks. This is exact: every item of
the global top-K under the order (score desc, item id asc) is in its own block's top-K.

Nothing is collected to the driver and no task holds more than one block of each side; with a
single item block this degenerates to scoring user blocks against the whole (small) item table.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pipelines.core.schema import ITEM, RANK, SCORE, USER, VECTOR
from pipelines.core.vector_bytes import bytes_to_matrix
from pipelines.serve.seam import topk_block

__all__ = [
    "RECOMMENDATION_SCHEMA",
    "SEEN",
    "SIMILAR",
    "blocked_topk",
    "recommend_topk",
    "similar_items",
    "topk_block",
]

SEEN = "seen"
SIMILAR = "similar"
_QID, _QBLOCK, _IBLOCK = "_qid", "_qblock", "_iblock"
_QIDS, _QVECS, _QSEEN, _IIDS, _IVECS = "_qids", "_qvecs", "_qseen", "_iids", "_ivecs"

RECOMMENDATION_SCHEMA = T.StructType(
    [
        T.StructField(USER, T.LongType(), False),
        T.StructField(ITEM, T.LongType(), False),
        T.StructField(SCORE, T.FloatType(), False),
        T.StructField(RANK, T.IntegerType(), False),
    ]
)

_PARTIAL_SCHEMA = T.StructType(
    [
        T.StructField(_QID, T.LongType(), False),
        T.StructField(ITEM, T.LongType(), False),
        T.StructField(SCORE, T.FloatType(), False),
    ]
)


def _block_pairs(
    queries: DataFrame, items: DataFrame, *, query_block_size: int, item_block_size: int
) -> DataFrame:
    """One row per (query block, item block): ids, vectors and masks of both blocks.

    Blocks are ``id div block_size``, so a block never holds more than ``block_size`` rows. The
    item-block ids are attached to every query block by a join with the (tiny) list of item
    block ids, then the item blocks come in through a shuffled join (never a broadcast of the
    whole item table).
    """
    iblocks = (
        items.withColumn(_IBLOCK, F.floor(F.col(ITEM) / item_block_size))
        .groupBy(_IBLOCK)
        .agg(F.collect_list(F.struct(ITEM, VECTOR)).alias("_irows"))
        .select(
            _IBLOCK,
            F.col(f"_irows.{ITEM}").alias(_IIDS),
            F.col(f"_irows.{VECTOR}").alias(_IVECS),
        )
    )
    qblocks = (
        queries.withColumn(_QBLOCK, F.floor(F.col(_QID) / query_block_size))
        .groupBy(_QBLOCK)
        .agg(F.collect_list(F.struct(_QID, VECTOR, SEEN)).alias("_qrows"))
        .select(
            _QBLOCK,
            F.col(f"_qrows.{_QID}").alias(_QIDS),
            F.col(f"_qrows.{VECTOR}").alias(_QVECS),
            F.col(f"_qrows.{SEEN}").alias(_QSEEN),
        )
    )
    block_ids = iblocks.select(_IBLOCK)
    pairs = qblocks.crossJoin(F.broadcast(block_ids))
    return pairs.hint("shuffle_hash").join(iblocks.hint("shuffle_hash"), _IBLOCK)


def _score_pairs(pairs: DataFrame, *, k: int, dim: int) -> DataFrame:
    """Partial top-``k`` of every (query block, item block) row.

    Schema:
        pairs: see :func:`_block_pairs`.
        returns: ``_qid long, item long, score float`` (at most ``k`` rows per query and block).
    """

    def score(batches: Iterable[pd.DataFrame]) -> Iterable[pd.DataFrame]:
        for pdf in batches:
            for i in range(len(pdf)):
                iids = np.asarray(pdf[_IIDS].iat[i], dtype=np.int64)
                order = np.argsort(iids, kind="stable")
                ivecs = pdf[_IVECS].iat[i]
                imat = bytes_to_matrix([ivecs[j] for j in order], dim)
                qids = np.asarray(pdf[_QIDS].iat[i], dtype=np.int64)
                qmat = bytes_to_matrix(list(pdf[_QVECS].iat[i]), dim)
                seen = [
                    np.asarray(s, dtype=np.int64) if s is not None else np.zeros(0, np.int64)
                    for s in pdf[_QSEEN].iat[i]
                ]
                top_items, top_scores = topk_block(qmat, imat, iids[order], seen, k)
                kk = top_items.shape[1]
                flat = top_items.reshape(-1)
                valid = flat >= 0
                yield pd.DataFrame(
                    {
                        _QID: np.repeat(qids, kk)[valid],
                        ITEM: flat[valid],
                        SCORE: top_scores.reshape(-1)[valid],
                    }
                )

    return pairs.mapInPandas(score, schema=_PARTIAL_SCHEMA)


def blocked_topk(
    queries: DataFrame,
    items: DataFrame,
    *,
    k: int,
    dim: int,
    query_block_size: int = 4096,
    item_block_size: int = 4096,
) -> DataFrame:
    """Exact top-``k`` items per query by blocks of queries and items.

    Args:
        queries: One row per query vector with the item ids it must not get.
        items: The candidate item vectors.
        k: Results per query.
        dim: Vector size (float32 values per ``vector``).
        query_block_size: Queries per matrix product.
        item_block_size: Items per matrix product.

    Returns:
        Up to ``k`` rows per query, ranked 1..k by (score desc, item id asc).

    Schema:
        queries: ``_qid long, vector binary, seen array<long>`` (``seen`` may be null).
        items: ``item long, vector binary``.
        returns: ``_qid long, item long, score float, rank int``.
    """
    pairs = _block_pairs(
        queries, items, query_block_size=query_block_size, item_block_size=item_block_size
    )
    partial = _score_pairs(pairs, k=k, dim=dim)
    window = Window.partitionBy(_QID).orderBy(F.col(SCORE).desc(), F.col(ITEM).asc())
    ranked = partial.withColumn(RANK, F.row_number().over(window))
    return ranked.where(F.col(RANK) <= k).select(_QID, ITEM, SCORE, ranked[RANK].cast("int"))


def recommend_topk(
    spark: SparkSession,
    user_vectors: DataFrame,
    item_vectors: DataFrame,
    seen: DataFrame,
    *,
    k: int,
    dim: int,
    block_size: int = 4096,
    item_block_size: int = 4096,
) -> DataFrame:
    """Top-``k`` unseen items per user.

    Args:
        spark: The session (kept for API stability; nothing is broadcast from the driver).
        user_vectors, item_vectors, seen: See Schema.
        k: Items per user.
        dim: Vector size.
        block_size: Users per block.
        item_block_size: Items per block.

    Schema:
        user_vectors: ``user`` long, ``vector`` binary (float32 x dim).
        item_vectors: ``item`` long, ``vector`` binary.
        seen: ``user`` long, ``item`` long (training interactions, masked out).
        returns: ``user`` long, ``item`` long, ``score`` float, ``rank`` int (1 = best).
    """
    del spark
    seen_lists = seen.groupBy(USER).agg(F.collect_list(ITEM).alias(SEEN))
    queries = (
        user_vectors.select(USER, VECTOR)
        .join(seen_lists, USER, "left")
        .select(F.col(USER).alias(_QID), VECTOR, SEEN)
    )
    out = blocked_topk(
        queries,
        item_vectors.select(ITEM, VECTOR),
        k=k,
        dim=dim,
        query_block_size=block_size,
        item_block_size=item_block_size,
    )
    return out.select(F.col(_QID).alias(USER), ITEM, SCORE, RANK)


def similar_items(
    item_vectors: DataFrame,
    *,
    k: int,
    dim: int,
    query_block_size: int = 4096,
    item_block_size: int = 4096,
) -> DataFrame:
    """Top-``k`` most similar items (inner product) per item, the item itself excluded.

    Ties go to the lower item id, as in :func:`recommend_topk`.

    Schema:
        item_vectors: ``item long, vector binary``.
        returns: ``item long, similar long, score float, rank int`` (1 = most similar).
    """
    items = item_vectors.select(ITEM, VECTOR)
    queries = items.select(F.col(ITEM).alias(_QID), VECTOR, F.array(F.col(ITEM)).alias(SEEN))
    out = blocked_topk(
        queries,
        items,
        k=k,
        dim=dim,
        query_block_size=query_block_size,
        item_block_size=item_block_size,
    )
    return out.select(F.col(_QID).alias(ITEM), F.col(ITEM).alias(SIMILAR), SCORE, RANK)
