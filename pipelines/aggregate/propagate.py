"""One normalised propagation step in Spark, shipping each vector once and joining no degrees.

LightGCN's layer (He et al., SIGIR 2020, Eq. 8-9) over directed edges ``u -> v``::

    y_v = Σ_{(u, v) ∈ E} x_u / sqrt(out(u) · in(v))

The join formulation (edges ⋈ degrees twice, then edges ⋈ vectors on ``u``, then group by
``v``) copies a ``dim``-float vector onto every edge and moves it twice, so a layer costs
``O(E · dim)`` bytes of traffic plus two joins of the edge list. Here the edges are hashed into
buckets by their source ``u`` (:func:`bucket_edges`, once) and each layer co-groups a bucket's
edges with the vectors of the same bucket (:func:`push_partial_sums`, whose arithmetic is the seam
:func:`pipelines.aggregate.seam.bucket_partial_sums`). All of ``u``'s out-edges
sit in ``u``'s bucket, so ``out(u)`` is counted there; each task reads its edges (two ids each)
and each source vector once, and emits one partial row per ``(bucket, v)`` carrying
``Σ x_u / sqrt(out(u))`` and the number of edges it covers. :func:`sum_partials` adds a node's
partial rows; the counts add up to ``in(v)``, which gives the ``1 / sqrt(in(v))`` factor. Traffic
per layer is ``O(E + min(E, buckets · N) · dim)``: hubs (R-MAT, popular items) collapse to one
row per bucket.

Memory per task: one bucket's edges and source vectors plus a ``[distinct v, dim]`` float32
accumulator; pick ``buckets`` so that ``E / buckets`` is at most a few million.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pipelines.aggregate.seam import bucket_partial_sums
from pipelines.core.schema import KIND, NODE_ID, VECTOR
from pipelines.core.vector_bytes import bytes_to_matrix, sums_by_node, vectors_to_bytes

BUCKET_COL = "_bucket"
COUNT = "w"

PARTIAL_SCHEMA = T.StructType(
    [
        T.StructField(KIND, T.StringType(), False),
        T.StructField(NODE_ID, T.LongType(), False),
        T.StructField(COUNT, T.DoubleType(), False),
        T.StructField(VECTOR, T.BinaryType(), False),
    ]
)

VECTOR_TABLE_SCHEMA = T.StructType(
    [
        T.StructField(KIND, T.StringType(), False),
        T.StructField(NODE_ID, T.LongType(), False),
        T.StructField(VECTOR, T.BinaryType(), False),
    ]
)


def _bucket(col: str, buckets: int) -> Column:
    return F.pmod(F.xxhash64(F.col(col)), F.lit(buckets))


def bucket_edges(edges: DataFrame, *, buckets: int) -> DataFrame:
    """Edges tagged with their source's bucket (checkpoint the result and reuse it per layer).

    Schema:
        in: ``u`` long, ``v`` long (one row per directed edge). out: ``_bucket``, ``u``, ``v``.
    """
    if buckets < 1:
        raise ValueError(f"buckets: must be >= 1 (got {buckets})")
    return edges.select(_bucket("u", buckets).alias(BUCKET_COL), "u", "v")


def push_partial_sums(
    bucketed_edges: DataFrame, vectors: DataFrame, *, dim: int, buckets: int, out_kind: str
) -> DataFrame:
    """Per ``(bucket, v)``: ``Σ x_u / sqrt(out(u))`` over the bucket's edges into ``v``.

    ``w`` of each row is the number of those edges (every edge counts, also one whose source
    has no vector: it adds nothing to the sum, as a missing row of an inner join would not).

    Schema:
        bucketed_edges: from :func:`bucket_edges` with the same ``buckets``.
        vectors: ``node_id`` long, ``vector`` binary (float32 x dim), one row per source.
        returns: :data:`PARTIAL_SCHEMA` with ``kind = out_kind``; reduce with
        :func:`sum_partials`.
    """

    def push(edges: pd.DataFrame, xs: pd.DataFrame) -> pd.DataFrame:
        if edges.empty:
            return pd.DataFrame({f.name: [] for f in PARTIAL_SCHEMA.fields})
        x_ids, x = np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
        if len(xs):  # a bucket without vectors may come without columns
            x_ids, x = xs[NODE_ID].to_numpy(np.int64), bytes_to_matrix(list(xs[VECTOR]), dim)
        targets, in_count, sums = bucket_partial_sums(
            edges["u"].to_numpy(np.int64), edges["v"].to_numpy(np.int64), x_ids, x
        )
        return pd.DataFrame(
            {
                KIND: out_kind,
                NODE_ID: targets,
                COUNT: in_count.astype(np.float64),
                VECTOR: vectors_to_bytes(sums),
            }
        )

    xs = vectors.select(_bucket(NODE_ID, buckets).alias(BUCKET_COL), NODE_ID, VECTOR)
    return (
        bucketed_edges.groupBy(BUCKET_COL)
        .cogroup(xs.groupBy(BUCKET_COL))
        .applyInPandas(push, schema=PARTIAL_SCHEMA)
    )


def reduce_by_node(
    rows: DataFrame,
    *,
    dim: int,
    partitions: int,
    weight_vectors: bool,
    finish: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> DataFrame:
    """Per ``(kind, node_id)``: ``finish(Σ (w_r ·) v_r, Σ w_r)`` after one shuffle by node.

    Schema:
        in: ``kind`` string, ``node_id`` long, ``w`` double, ``vector`` binary.
        out: :data:`VECTOR_TABLE_SCHEMA`.
    """

    def fn(batches: Iterable[pd.DataFrame]) -> Iterable[pd.DataFrame]:
        frames = [b for b in batches if len(b)]
        if not frames:
            return
        pdf = pd.concat(frames, ignore_index=True)
        for kind, group in pdf.groupby(KIND, sort=False):
            ids, sums, wsum = sums_by_node(
                group, dim, weight_col=COUNT, weight_vectors=weight_vectors
            )
            vectors = vectors_to_bytes(finish(sums, wsum).astype(np.float32))
            yield pd.DataFrame({KIND: kind, NODE_ID: ids, VECTOR: vectors})

    return (
        rows.select(KIND, NODE_ID, COUNT, VECTOR)
        .repartition(partitions, KIND, NODE_ID)
        .mapInPandas(fn, schema=VECTOR_TABLE_SCHEMA)
    )


def sum_partials(partials: DataFrame, *, dim: int, partitions: int) -> DataFrame:
    """``y_v = (Σ_r vector_r) / sqrt(Σ_r w_r)`` per ``(kind, node_id)``: one propagated layer.

    Schema:
        in: :data:`PARTIAL_SCHEMA`. out: :data:`VECTOR_TABLE_SCHEMA`.
    """
    return reduce_by_node(
        partials,
        dim=dim,
        partitions=partitions,
        weight_vectors=False,
        finish=lambda sums, counts: sums / np.sqrt(counts)[:, None],
    )


def propagate_layer(
    bucketed_edges: DataFrame, vectors: DataFrame, *, dim: int, buckets: int, out_kind: str
) -> DataFrame:
    """``y_v = Σ_{(u, v)} x_u / sqrt(out(u) in(v))`` for every ``v`` with an in-edge.

    Schema:
        bucketed_edges: from :func:`bucket_edges`; vectors: ``node_id``, ``vector``.
        returns: ``kind`` (= ``out_kind``), ``node_id``, ``vector``.
    """
    partials = push_partial_sums(
        bucketed_edges, vectors, dim=dim, buckets=buckets, out_kind=out_kind
    )
    return sum_partials(partials, dim=dim, partitions=buckets)
