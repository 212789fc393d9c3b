"""Per-leaf results -> one global embedding table, with vector algebra done in Spark tasks.

Design (measured in bench/pipeline.py): every leaf starts from the same deterministic global
initialisation, trains its ego embeddings for a few epochs on its core and halo edges, and the
replicas of a node held by several leaves (halo copies, items shared by users of many leaves) are
averaged with weights = the node's edge count in each leaf (federated averaging, McMahan et al.
2017, Eq. 1: ``w = Σ_k (n_k / n) w_k``). After the last round the LightGCN propagation (He et
al., SIGIR 2020, Eq. 8-9: ``e_u^{(l+1)} = Σ_{i∈N_u} e_i^{(l)} / sqrt(|N_u||N_i|)``, final
``e = mean_l e^{(l)}``, Eq. 4) runs over the *whole* graph in Spark, so every vector is computed
from the same global neighbourhoods and scores are comparable across leaves. Cost per layer and
direction: one pass over the edges that ships each vector once
(:mod:`pipelines.aggregate.propagate`), linear in nodes + edges; nothing is collected to the
driver.

Vectors travel as raw float32 bytes (``binary``), see :mod:`pipelines.train.seam`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from pipelines.aggregate.propagate import (
    VECTOR_TABLE_SCHEMA,
    bucket_edges,
    push_partial_sums,
    reduce_by_node,
    sum_partials,
)
from pipelines.core.schema import ITEM, KIND, LEAF_ID, NODE_ID, USER, VECTOR
from pipelines.core.vector_bytes import arrow_to_matrix, matrix_to_arrow, vectors_to_bytes
from pipelines.train.seam import LEAF_LOG, REPLICAS
from pipelines.train.seeded_init import seeded_vectors

WEIGHT_COL = "w"


def initial_vectors(nodes: DataFrame, *, dim: int, seed: int, std: float = 0.1) -> DataFrame:
    """The shared initialisation every leaf starts from.

    Schema:
        in: ``kind`` string, ``node_id`` long. out: :data:`VECTOR_TABLE_SCHEMA`.
    """

    def fn(batches: Iterable[pd.DataFrame]) -> Iterable[pd.DataFrame]:
        for pdf in batches:
            if len(pdf):
                vecs = seeded_vectors(pdf, dim=dim, seed=seed, std=std)
                yield pd.DataFrame(
                    {KIND: pdf[KIND], NODE_ID: pdf[NODE_ID], VECTOR: vectors_to_bytes(vecs)}
                )

    return nodes.select(KIND, NODE_ID).distinct().mapInPandas(fn, schema=VECTOR_TABLE_SCHEMA)


def weighted_mean_by_node(
    rows: DataFrame, *, dim: int, partitions: int, normalise: bool = True
) -> DataFrame:
    """Σ_r w_r v_r per (kind, node_id), divided by Σ_r w_r when ``normalise``.

    Schema:
        in: ``kind`` string, ``node_id`` long, ``w`` double, ``vector`` binary.
        out: :data:`VECTOR_TABLE_SCHEMA`.
    """

    def finish(sums: np.ndarray, wsum: np.ndarray) -> np.ndarray:
        return sums / np.where(wsum == 0, 1.0, wsum)[:, None] if normalise else sums

    return reduce_by_node(rows, dim=dim, partitions=partitions, weight_vectors=True, finish=finish)


def layer_mean(
    ego: DataFrame,
    step: Callable[[DataFrame], DataFrame],
    *,
    layers: int,
    dim: int,
    partitions: int,
) -> DataFrame:
    """LightGCN's layer combination ``1/(K+1) Σ_{k=0}^{K} E^(k)`` (Eq. 4), in Spark.

    ``E^(0)`` is ``ego``, ``E^(k+1) = step(E^(k))`` (one propagation layer, Eq. 8-9). Every
    layer is checkpointed: layer 0 feeds the first step and the final mean (unpinned, its
    upstream shuffle would run twice), and each layer feeds the next.

    Schema:
        ego and every ``step`` output: ``kind``, ``node_id``, ``vector``.
        returns: :data:`VECTOR_TABLE_SCHEMA`.
    """
    share = 1.0 / (layers + 1)
    layer = ego.select(KIND, NODE_ID, VECTOR).localCheckpoint()
    acc = [layer.withColumn(WEIGHT_COL, F.lit(share))]
    for _ in range(layers):
        layer = step(layer).localCheckpoint()
        acc.append(layer.withColumn(WEIGHT_COL, F.lit(share)))
    stacked = acc[0]
    for part in acc[1:]:
        stacked = stacked.unionByName(part)
    return weighted_mean_by_node(stacked, dim=dim, partitions=partitions, normalise=False)


def lightgcn_propagate(
    interactions: DataFrame, ego: DataFrame, *, dim: int, layers: int, partitions: int
) -> DataFrame:
    """LightGCN's final embeddings over the whole bipartite graph, computed in Spark.

    ``e^{(l+1)}_u = Σ_{i∈N_u} e^{(l)}_i / sqrt(|N_u| |N_i|)`` (and symmetrically for items;
    He et al., SIGIR 2020, Eq. 8-9), ``e = (1 / (L + 1)) Σ_{l=0}^{L} e^{(l)}`` (Eq. 4,
    :func:`layer_mean`). The scale path; the tests check it against
    :func:`gnn.layers.lg_conv.lightgcn_propagate`.

    Schema:
        interactions: ``user`` long, ``item`` long (distinct training pairs).
        ego: :data:`VECTOR_TABLE_SCHEMA` with kinds user and item.
        returns: :data:`VECTOR_TABLE_SCHEMA`.
    """
    pairs = interactions.select(USER, ITEM).distinct()
    user_to_item = bucket_edges(
        pairs.select(F.col(USER).alias("u"), F.col(ITEM).alias("v")), buckets=partitions
    ).localCheckpoint()
    item_to_user = bucket_edges(
        pairs.select(F.col(ITEM).alias("u"), F.col(USER).alias("v")), buckets=partitions
    ).localCheckpoint()

    def step(layer: DataFrame) -> DataFrame:
        users = layer.where(F.col(KIND) == USER)
        items = layer.where(F.col(KIND) == ITEM)
        to_items = push_partial_sums(
            user_to_item, users, dim=dim, buckets=partitions, out_kind=ITEM
        )
        to_users = push_partial_sums(
            item_to_user, items, dim=dim, buckets=partitions, out_kind=USER
        )
        return sum_partials(to_items.unionByName(to_users), dim=dim, partitions=partitions)

    return layer_mean(ego, step, layers=layers, dim=dim, partitions=partitions)


PRIMARY = "primary"
"""True on one row per node (its lowest ``leaf_id``): selects the global table out of the
per-leaf rows of :func:`average_replicas_per_leaf`."""

LEAF_ROWS_SCHEMA = T.StructType(
    [
        T.StructField(LEAF_ID, T.LongType(), False),
        T.StructField(KIND, T.StringType(), False),
        T.StructField(NODE_ID, T.LongType(), False),
        T.StructField(VECTOR, T.BinaryType(), False),
        T.StructField(PRIMARY, T.BooleanType(), False),
        T.StructField(REPLICAS, T.IntegerType(), False),
        T.StructField(LEAF_LOG, T.StringType(), True),
    ]
)


LEAF_ROWS_ARROW_SCHEMA = to_arrow_schema(LEAF_ROWS_SCHEMA)
ARROW_BATCH_ROWS = 65_536


def replica_means(rows: pa.Table, dim: int, vector_dtype: str = "float32") -> pa.Table:
    """Every replica row gets its node's weighted mean ``Σ_k w_k v_k / Σ_k w_k``.

    Federated averaging (McMahan et al. 2017, Eq. 1) of the copies of a node held by several
    leaves, written back onto each copy so the next round's leaves read their start vectors
    without a join. Rows are ordered by ``(kind, node_id, leaf_id)`` first, so the float64 sums
    do not depend on the order rows arrive in. Arrow in, Arrow out: the vectors are read from
    and written to the binary column's buffers (no Python object per row).

    Schema:
        in: ``leaf_id``, ``kind``, ``node_id``, ``w``, ``vector`` (float32 or float16 bytes),
        ``leaf_log`` (passed through). out: :data:`LEAF_ROWS_SCHEMA` (``replicas``: the node's
        number of rows), vectors written as ``vector_dtype`` (float16 halves the bytes every
        round moves; sums stay float64).
    """
    if rows.num_rows == 0:
        return LEAF_ROWS_ARROW_SCHEMA.empty_table()
    kinds = rows.column(KIND).combine_chunks().dictionary_encode()
    names = kinds.dictionary.to_pylist()
    rank = np.argsort(np.argsort(names))  # kinds sorted by name, not by first appearance
    kind_codes = rank[kinds.indices.to_numpy(zero_copy_only=False)]
    ids = rows.column(NODE_ID).to_numpy().astype(np.int64)
    leaves = rows.column(LEAF_ID).to_numpy().astype(np.int64)
    order = np.lexsort((leaves, ids, kind_codes))
    kind_codes, ids, leaves = kind_codes[order], ids[order], leaves[order]
    w = rows.column(WEIGHT_COL).to_numpy().astype(np.float64)[order]
    vecs = arrow_to_matrix(rows.column(VECTOR), dim)[order]
    first = np.r_[True, (ids[1:] != ids[:-1]) | (kind_codes[1:] != kind_codes[:-1])]
    group = np.cumsum(first) - 1
    m = int(group[-1]) + 1
    # one bincount per dimension: sequential float64 sums in row order (reduceat along axis 0
    # is ~2x slower)
    sums = np.stack(
        [np.bincount(group, weights=vecs[:, j] * w, minlength=m) for j in range(dim)], axis=1
    )
    wsum = np.bincount(group, weights=w, minlength=m)
    means = (sums / np.where(wsum == 0, 1.0, wsum)[:, None]).astype(np.float32)
    sorted_names = pa.array(sorted(names), pa.string())
    return pa.Table.from_arrays(
        [
            pa.array(leaves, pa.int64()),
            sorted_names.take(pa.array(kind_codes)),
            pa.array(ids, pa.int64()),
            matrix_to_arrow(means[group], vector_dtype),
            pa.array(first, pa.bool_()),
            pa.array(np.bincount(group, minlength=m)[group].astype(np.int32), pa.int32()),
            rows.column(LEAF_LOG).take(pa.array(order)).cast(pa.string()),
        ],
        schema=LEAF_ROWS_ARROW_SCHEMA,
    )


def average_replicas_per_leaf(
    rows: DataFrame, *, dim: int, partitions: int, vector_dtype: str = "float32"
) -> DataFrame:
    """:func:`replica_means` in Spark: one shuffle by node, one pass per partition.

    Schema:
        in: ``leaf_id``, ``kind``, ``node_id``, ``w`` double, ``vector`` binary, ``leaf_log``.
        out: :data:`LEAF_ROWS_SCHEMA`.
    """

    def fn(batches: Iterable[pa.RecordBatch]) -> Iterable[pa.RecordBatch]:
        got = [b for b in batches if b.num_rows]
        if got:
            out = replica_means(pa.Table.from_batches(got), dim, vector_dtype)
            yield from out.to_batches(max_chunksize=ARROW_BATCH_ROWS)

    return (
        rows.select(LEAF_ID, KIND, NODE_ID, WEIGHT_COL, VECTOR, LEAF_LOG)
        .repartition(partitions, KIND, NODE_ID)
        .mapInArrow(fn, schema=LEAF_ROWS_SCHEMA)
    )


def round_zero_rows(members: DataFrame) -> DataFrame:
    """Round-0 rows: every (leaf, node) with an empty vector, its replica count and primary flag.

    An empty vector means "the seeded start vector" (:mod:`pipelines.train.seeded_init`): the leaves
    of round 1 compute it themselves (:func:`pipelines.train.seam.train_leaf_from_arrow`), so this
    is one JVM stage (a window by node) with no Python and no vector bytes.

    Schema:
        in: ``leaf_id``, ``kind``, ``node_id`` (distinct). out: :data:`LEAF_ROWS_SCHEMA`.
    """
    from pyspark.sql import Window

    by_node = Window.partitionBy(KIND, NODE_ID)
    return members.select(
        F.col(LEAF_ID).cast("long").alias(LEAF_ID),
        KIND,
        F.col(NODE_ID).cast("long").alias(NODE_ID),
        F.lit(bytearray()).cast("binary").alias(VECTOR),
        (F.row_number().over(by_node.orderBy(LEAF_ID)) == 1).alias(PRIMARY),
        F.count(F.lit(1)).over(by_node).cast("int").alias(REPLICAS),
        F.lit(None).cast("string").alias(LEAF_LOG),
    )
