"""Ranking metrics computed in Spark from recommendation lists and held-out interactions.

Recall@K and NDCG@K follow the LightGCN protocol: for every user with at least one test item,
``recall = |top-K ∩ test| / |test|`` and ``NDCG = DCG / IDCG`` with
``DCG = Σ_{hits} 1 / log2(rank + 1)`` and ``IDCG = Σ_{i=1}^{min(|test|, K)} 1 / log2(i + 1)``;
both are averaged over those users (a user with no recommendations scores 0).
"""

from __future__ import annotations

import math

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.core.schema import ITEM, RANK, USER


def ranking_metrics(recommendations: DataFrame, test: DataFrame, *, k: int) -> dict[str, float]:
    """Recall@k and NDCG@k averaged over users with test items.

    Schema:
        recommendations: ``user`` long, ``item`` long, ``rank`` int (1-based).
        test: ``user`` long, ``item`` long.
        returns: {"recall@k": float, "ndcg@k": float, "users": int}.
    """
    test = test.select(USER, ITEM).distinct()
    recs = recommendations.where(F.col(RANK) <= k).select(USER, ITEM, RANK)
    hits = (
        recs.join(test, [USER, ITEM], "inner")
        .groupBy(USER)
        .agg(F.count("*").alias("hits"), F.sum(1.0 / F.log2(F.col(RANK) + 1)).alias("dcg"))
    )
    idcg_table = [0.0]
    for i in range(1, k + 1):
        idcg_table.append(idcg_table[-1] + 1.0 / math.log2(i + 1))
    idcg = F.array(*[F.lit(v) for v in idcg_table])
    per_user = (
        test.groupBy(USER)
        .agg(F.count("*").alias("n_test"))
        .join(hits, USER, "left")
        .select(
            (F.coalesce(F.col("hits"), F.lit(0)) / F.col("n_test")).alias("recall"),
            (
                F.coalesce(F.col("dcg"), F.lit(0.0))
                / F.element_at(idcg, F.least(F.col("n_test"), F.lit(k)).cast("int") + 1)
            ).alias("ndcg"),
        )
    )
    row = per_user.agg(
        F.avg("recall").alias("recall"), F.avg("ndcg").alias("ndcg"), F.count("*").alias("users")
    ).first()
    assert row is not None
    return {
        f"recall@{k}": float(row["recall"] or 0.0),
        f"ndcg@{k}": float(row["ndcg"] or 0.0),
        "users": int(row["users"]),
    }
