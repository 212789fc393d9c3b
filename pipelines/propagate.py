"""One sparse propagation step ``y_v = Σ_u w_uv x_u`` in Spark, shipping each vector once.

The join formulation (edges ⋈ vectors on ``u``, then group by ``v``) copies a ``dim``-float
vector onto every edge and moves it twice (join output to Python, then the shuffle by ``v``),
so a layer costs ``O(E · dim)`` bytes of traffic. Here the edges are hashed into ``buckets`` by
their source ``u`` and co-grouped with the vectors of the same bucket: each task reads its
edges (three numbers each) and each source vector once, and pushes ``w_uv x_u`` into a dense
partial sum per destination it touches. Only one partial row per ``(bucket, v)`` leaves the
task, so the traffic is ``O(E + min(E, buckets · N) · dim)`` and hubs (R-MAT, popular items)
collapse to one row per bucket. The partial rows are summed per node by
:func:`pipelines.aggregate.weighted_mean_by_node` with ``normalise=False``.

Memory per task: one bucket's edges and source vectors plus a ``[distinct v, dim]`` float32
accumulator; pick ``buckets`` so that ``E / buckets`` is at most a few million.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pipelines.bridge import bytes_to_matrix, vectors_to_bytes
from pipelines.schema import KIND, NODE_ID, VECTOR

BUCKET_COL = "_bucket"
WEIGHT = "w"
ADD_CHUNK_ROWS = 1 << 20

PARTIAL_SCHEMA = T.StructType(
    [
        T.StructField(KIND, T.StringType(), False),
        T.StructField(NODE_ID, T.LongType(), False),
        T.StructField(WEIGHT, T.DoubleType(), False),
        T.StructField(VECTOR, T.BinaryType(), False),
    ]
)


def _bucket(col: str, buckets: int) -> Column:
    return F.pmod(F.xxhash64(F.col(col)), F.lit(buckets))


def bucket_edges(edges: DataFrame, *, buckets: int) -> DataFrame:
    """Weighted edges tagged with their source bucket (checkpoint the result, reuse per layer).

    Schema:
        in: ``u`` long, ``v`` long, ``w`` double. out: the same plus ``_bucket`` long.
    """
    if buckets < 1:
        raise ValueError(f"buckets: must be >= 1 (got {buckets})")
    return edges.select(_bucket("u", buckets).alias(BUCKET_COL), "u", "v", WEIGHT)


def push_partial_sums(
    bucketed_edges: DataFrame, vectors: DataFrame, *, dim: int, buckets: int, out_kind: str
) -> DataFrame:
    """Partial sums ``Σ_{u in bucket} w_uv x_u``, one row per ``(bucket, v)``.

    Edges whose source has no vector contribute nothing (as an inner join would).

    Schema:
        bucketed_edges: from :func:`bucket_edges` with the same ``buckets``.
        vectors: ``node_id`` long, ``vector`` binary (float32 x dim), one row per source.
        returns: :data:`PARTIAL_SCHEMA` with ``kind = out_kind`` and ``w = 1`` (input for
        :func:`pipelines.aggregate.weighted_mean_by_node` with ``normalise=False``).
    """

    def push(edges: pd.DataFrame, xs: pd.DataFrame) -> pd.DataFrame:
        import torch

        if edges.empty or xs.empty:
            return pd.DataFrame({f.name: [] for f in PARTIAL_SCHEMA.fields})
        ids = xs[NODE_ID].to_numpy(np.int64)
        order = np.argsort(ids, kind="stable")
        ids = ids[order]
        x = torch.from_numpy(bytes_to_matrix(list(xs[VECTOR].iloc[order]), dim))
        u = edges["u"].to_numpy(np.int64)
        pos = np.searchsorted(ids, u).clip(0, len(ids) - 1)
        known = ids[pos] == u
        pos = pos[known]
        v = edges["v"].to_numpy(np.int64)[known]
        w = edges[WEIGHT].to_numpy(np.float32)[known]
        targets, slot = np.unique(v, return_inverse=True)
        acc = torch.zeros(len(targets), dim)
        for start in range(0, len(v), ADD_CHUNK_ROWS):
            part = slice(start, start + ADD_CHUNK_ROWS)
            rows = x[torch.from_numpy(pos[part])] * torch.from_numpy(w[part])[:, None]
            acc.index_add_(0, torch.from_numpy(slot[part].astype(np.int64)), rows)
        return pd.DataFrame(
            {
                KIND: out_kind,
                NODE_ID: targets,
                WEIGHT: np.ones(len(targets)),
                VECTOR: vectors_to_bytes(acc.numpy()),
            }
        )

    xs = vectors.select(_bucket(NODE_ID, buckets).alias(BUCKET_COL), NODE_ID, VECTOR)
    return (
        bucketed_edges.groupBy(BUCKET_COL)
        .cogroup(xs.groupBy(BUCKET_COL))
        .applyInPandas(push, schema=PARTIAL_SCHEMA)
    )
