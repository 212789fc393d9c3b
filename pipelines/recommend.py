"""Top-K recommendations from embedding tables, computed in Spark tasks in blocks.

Each task scores a block of users against the item matrix (a broadcast of the item vectors), masks
the user's seen items, and keeps the K best with ties broken by the lower item id. Only the item
table travels to the tasks; users, their seen items and the results stay distributed.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pipelines.bridge import bytes_to_matrix
from pipelines.schema import ITEM, RANK, SCORE, USER, VECTOR

SEEN = "seen"

RECOMMENDATION_SCHEMA = T.StructType(
    [
        T.StructField(USER, T.LongType(), False),
        T.StructField(ITEM, T.LongType(), False),
        T.StructField(SCORE, T.FloatType(), False),
        T.StructField(RANK, T.IntegerType(), False),
    ]
)


def topk_block(
    user_matrix: np.ndarray,
    item_matrix: np.ndarray,
    item_ids: np.ndarray,
    seen: list[np.ndarray],
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` items for a block of users, seen items masked, ties to the lower item id.

    Shapes:
        user_matrix: ``[U, d]``; item_matrix: ``[I, d]``; item_ids: ``[I]`` sorted ascending;
        seen: ``U`` arrays of item ids. Returns (items ``[U, k']``, scores ``[U, k']``) with
        ``k' = min(k, I)``; a row may hold fewer valid entries (marked -1) when the user has seen
        almost every item.
    """
    scores = user_matrix.astype(np.float32) @ item_matrix.astype(np.float32).T
    for row, items in enumerate(seen):
        if len(items):
            pos = np.clip(np.searchsorted(item_ids, items), 0, len(item_ids) - 1)
            pos = pos[item_ids[pos] == items]
            scores[row, pos] = -np.inf
    kk = min(k, scores.shape[1])
    out_items = np.full((scores.shape[0], kk), -1, dtype=np.int64)
    out_scores = np.full((scores.shape[0], kk), -np.inf, dtype=np.float32)
    if kk == 0:
        return out_items, out_scores
    # k-th largest value per row, then every candidate >= it; exact order among candidates by
    # (score desc, item id asc) makes ties deterministic.
    kth = -np.partition(-scores, kk - 1, axis=1)[:, kk - 1]
    for row in range(scores.shape[0]):
        cand = np.flatnonzero(scores[row] >= kth[row])
        cand = cand[np.isfinite(scores[row, cand])]
        order = np.lexsort((item_ids[cand], -scores[row, cand]))[:kk]
        chosen = cand[order]
        out_items[row, : len(chosen)] = item_ids[chosen]
        out_scores[row, : len(chosen)] = scores[row, chosen]
    return out_items, out_scores


def recommend_topk(
    spark: SparkSession,
    user_vectors: DataFrame,
    item_vectors: DataFrame,
    seen: DataFrame,
    *,
    k: int,
    dim: int,
    block_size: int = 4096,
) -> DataFrame:
    """Top-``k`` unseen items per user.

    Schema:
        user_vectors: ``user`` long, ``vector`` binary (float32 x dim).
        item_vectors: ``item`` long, ``vector`` binary.
        seen: ``user`` long, ``item`` long (training interactions, masked out).
        returns: ``user`` long, ``item`` long, ``score`` float, ``rank`` int (1 = best).
    """
    items_pdf: pd.DataFrame = item_vectors.select(ITEM, VECTOR).toPandas()
    items_pdf = items_pdf.sort_values(ITEM)
    item_ids = items_pdf[ITEM].to_numpy(np.int64)
    item_matrix = bytes_to_matrix(list(items_pdf[VECTOR]), dim)
    bc = spark.sparkContext.broadcast((item_ids, item_matrix))
    seen_lists = seen.groupBy(USER).agg(F.collect_list(ITEM).alias(SEEN))
    users = user_vectors.select(USER, VECTOR).join(seen_lists, USER, "left")

    def score(batches: Iterable[pd.DataFrame]) -> Iterable[pd.DataFrame]:
        ids, matrix = bc.value
        for pdf in batches:
            for start in range(0, len(pdf), block_size):
                block = pdf.iloc[start : start + block_size]
                u = bytes_to_matrix(list(block[VECTOR]), dim)
                seen_arrays = [
                    np.asarray(s, dtype=np.int64) if s is not None else np.zeros(0, np.int64)
                    for s in block[SEEN]
                ]
                top_items, top_scores = topk_block(u, matrix, ids, seen_arrays, k)
                kk = top_items.shape[1]
                users_rep = np.repeat(block[USER].to_numpy(np.int64), kk)
                ranks = np.tile(np.arange(1, kk + 1, dtype=np.int32), len(block))
                flat_items = top_items.reshape(-1)
                valid = flat_items >= 0
                yield pd.DataFrame(
                    {
                        USER: users_rep[valid],
                        ITEM: flat_items[valid],
                        SCORE: top_scores.reshape(-1)[valid],
                        RANK: ranks[valid],
                    }
                )

    return users.mapInPandas(score, schema=RECOMMENDATION_SCHEMA)
