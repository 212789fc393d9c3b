"""Held-out links and their AUROC for ``bench.scale``, all on Spark DataFrames.

Only O(test pairs) rows reach the driver.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from gnn.eval.metrics import auroc
from pipelines.core.schema import DST, NODE_ID, SRC, VECTOR

LABEL = "label"
SCORE_SCHEMA = T.StructType(
    [
        T.StructField(LABEL, T.IntegerType(), False),
        T.StructField("score", T.DoubleType(), False),
        T.StructField("cosine", T.DoubleType(), False),
    ]
)


def split_holdout(
    pairs: DataFrame, fraction: float, seed: int, work: Path
) -> tuple[DataFrame, DataFrame]:
    """(train, held-out) pairs by a seeded hash of the pair, written as Parquet.

    Schema: pairs ``src, dst`` -> two tables ``src, dst``.
    """
    bucket = F.pmod(F.xxhash64(SRC, DST, F.lit(seed)), F.lit(1_000_000))
    held = bucket < F.lit(int(round(fraction * 1_000_000)))
    pairs.where(~held).write.mode("overwrite").parquet(str(work / "train"))
    pairs.where(held).write.mode("overwrite").parquet(str(work / "heldout"))
    spark = pairs.sparkSession
    return spark.read.parquet(str(work / "train")), spark.read.parquet(str(work / "heldout"))


def eval_pairs(train: DataFrame, heldout: DataFrame, seed: int) -> DataFrame:
    """Positives (held-out pairs between training nodes) and as many random non-edge pairs.

    Only O(test pairs) rows reach the driver (the sampled node ids).

    Schema: ``src, dst, label`` (1 held-out edge, 0 random pair).
    """
    spark = train.sparkSession
    nodes = (
        train.select(F.col(SRC).alias(NODE_ID))
        .unionByName(train.select(F.col(DST).alias(NODE_ID)))
        .distinct()
    )
    known = nodes.select(F.col(NODE_ID).alias(SRC))
    pos = heldout.join(known, SRC, "left_semi").join(
        known.withColumnRenamed(SRC, DST), DST, "left_semi"
    )
    pos = pos.select(SRC, DST, F.lit(1).alias(LABEL)).localCheckpoint()
    m = pos.count()

    def sample(salt: int) -> np.ndarray:
        order = F.xxhash64(NODE_ID, F.lit(seed), F.lit(salt))
        rows = nodes.orderBy(order).limit(m).collect()
        return np.array([r[NODE_ID] for r in rows], dtype=np.int64)

    a, b = sample(1), sample(2)
    n = min(len(a), len(b))
    rng = np.random.default_rng(seed)
    a, b = a[:n], b[rng.permutation(n)]
    keep = a != b
    lo, hi = np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])
    neg = spark.createDataFrame(pd.DataFrame({SRC: lo, DST: hi}), schema="src long, dst long").join(
        train.unionByName(heldout), [SRC, DST], "left_anti"
    )
    return pos.unionByName(neg.select(SRC, DST, F.lit(0).alias(LABEL)))


def link_auroc(pairs: DataFrame, vectors: DataFrame, dim: int) -> tuple[float, float, int]:
    """AUROC of dot-product scores of labelled pairs; returns (auroc, cosine auroc, scored).

    Schema: pairs ``src, dst, label``; vectors ``node_id, vector`` (float32 bytes).
    """
    vs = vectors.select(F.col(NODE_ID).alias(SRC), F.col(VECTOR).alias("vs"))
    vd = vectors.select(F.col(NODE_ID).alias(DST), F.col(VECTOR).alias("vd"))
    joined = pairs.join(vs, SRC).join(vd, DST).select(LABEL, "vs", "vd")

    def fn(batches: Iterable[pd.DataFrame]) -> Iterable[pd.DataFrame]:
        for pdf in batches:
            if len(pdf):
                a = np.frombuffer(b"".join(pdf["vs"]), np.float32).reshape(len(pdf), dim)
                b = np.frombuffer(b"".join(pdf["vd"]), np.float32).reshape(len(pdf), dim)
                a64, b64 = a.astype(np.float64), b.astype(np.float64)
                score = (a64 * b64).sum(axis=1)
                norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
                cosine = score / np.where(norms == 0, 1.0, norms)
                yield pd.DataFrame(
                    {LABEL: pdf[LABEL].astype("int32"), "score": score, "cosine": cosine}
                )

    rows = joined.mapInPandas(fn, schema=SCORE_SCHEMA).collect()
    labels = torch.tensor([r[LABEL] for r in rows])
    scores = torch.tensor([r["score"] for r in rows], dtype=torch.float64)
    cosines = torch.tensor([r["cosine"] for r in rows], dtype=torch.float64)
    return auroc(scores, labels), auroc(cosines, labels), len(rows)
