"""The aggregation of :mod:`pipelines.train.homogeneous` in one Spark task, for graphs that fit one.

:func:`pipelines.train.homogeneous.aggregate_homogeneous` runs the replica averaging and each of
the ``K`` propagation layers as Spark shuffles: linear in the graph, but on a graph of a few
million edges those are a dozen Spark jobs of fixed cost (14-16 s of a 1M-edge R-MAT run on two
cores, against ~2 s of arithmetic). Below a size bound, the same computation runs here in one
task (the graph's edges and the leaf rows co-grouped on a constant key; an executor, never the
driver, holds them), in the same order of operations:

1. replicas: ``e_v = Σ_k w_k e_v^(k) / Σ_k w_k`` (federated averaging, McMahan et al. 2017,
   Eq. 1), float64 sums, rounded to float32 as the Spark path's rows are;
2. LightGCN propagation over the undirected graph of the pairs (He et al., SIGIR 2020,
   Eq. 8-9: ``y_v = Σ_{(u, v)} x_u / sqrt(deg(u) deg(v))``) for ``K`` layers and
   ``e = 1/(K+1) Σ_{k=0}^{K} e^(k)`` (Eq. 4), float32, by the one LightGCN layer
   :mod:`gnn.layers.lg_conv` through the seam
   :func:`pipelines.train.seam_homogeneous.propagate_mean`.

Results equal the Spark path's up to float32 rounding (``tests/test_scale_parts.py``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.aggregate.propagate import VECTOR_TABLE_SCHEMA
from pipelines.aggregate.stage import WEIGHT_COL
from pipelines.core.schema import DST, KIND, NODE_ID, SRC, VECTOR
from pipelines.core.vector_bytes import sums_by_node, vectors_to_bytes
from pipelines.train.seam_homogeneous import propagate_mean

DEFAULT_MAX_DIRECT_PAIRS = 2_000_000
"""Graphs with at most this many pairs are aggregated in one task (the partitioner's one-task
bound, ``partition.max_direct_edges``, is 4M adjacency rows = 2M pairs)."""

_GROUP = "_one_task"


def aggregate_one_task(
    rows: pd.DataFrame, pairs: pd.DataFrame, *, dim: int, layers: int
) -> pd.DataFrame:
    """Leaf rows and the graph's pairs -> the final vector table, computed in this process.

    Schema:
        rows: ``node_id``, ``w``, ``vector`` (float32 or float16 bytes); pairs: ``src, dst``.
        returns: :data:`pipelines.aggregate.propagate.VECTOR_TABLE_SCHEMA` columns (kind ``node``).
    """
    if rows.empty:
        ego_ids, ego = np.zeros(0, dtype=np.int64), np.zeros((0, dim), dtype=np.float32)
    else:
        ego_ids, sums, wsum = sums_by_node(rows, dim, weight_col=WEIGHT_COL, weight_vectors=True)
        ego = (sums / np.where(wsum == 0, 1.0, wsum)[:, None]).astype(np.float32)
    ids, final = propagate_mean(
        ego_ids, ego, pairs[SRC].to_numpy(np.int64), pairs[DST].to_numpy(np.int64), layers
    )
    return pd.DataFrame({KIND: "node", NODE_ID: ids, VECTOR: vectors_to_bytes(final)})


def aggregate_homogeneous_one_task(
    rows: DataFrame, pairs: DataFrame, *, dim: int, layers: int
) -> DataFrame:
    """:func:`aggregate_one_task` in one Spark task (rows and pairs co-grouped on one key).

    Schema:
        rows: :data:`pipelines.train.seam.WEIGHTED_ROWS_SCHEMA`; pairs: ``src, dst``.
        returns: :data:`pipelines.aggregate.propagate.VECTOR_TABLE_SCHEMA` (kind ``node``).
    """

    def fn(left: pd.DataFrame, right: pd.DataFrame) -> pd.DataFrame:
        return aggregate_one_task(left, right, dim=dim, layers=layers)

    keyed_rows = rows.select(F.lit(0).alias(_GROUP), NODE_ID, WEIGHT_COL, VECTOR)
    keyed_pairs = pairs.select(F.lit(0).alias(_GROUP), SRC, DST)
    return (
        keyed_rows.groupBy(_GROUP)
        .cogroup(keyed_pairs.groupBy(_GROUP))
        .applyInPandas(fn, schema=VECTOR_TABLE_SCHEMA)
    )
