"""The aggregation of :mod:`pipelines.train.homogeneous` in one Spark task, for graphs that fit one.

:func:`pipelines.train.homogeneous.aggregate_homogeneous` runs the replica averaging and each of
the ``K`` propagation layers as Spark shuffles: linear in the graph, but on a graph of a few
million edges those are a dozen Spark jobs of fixed cost (14-16 s of a 1M-edge R-MAT run on two
cores, against ~2 s of arithmetic). Below a size bound, the same computation runs here in one
task (the graph's edges and the leaf rows co-grouped on a constant key; an executor, never the
driver, holds them), in the same order of operations:

1. replicas: ``e_v = Σ_k w_k e_v^(k) / Σ_k w_k`` (federated averaging, McMahan et al. 2017,
   Eq. 1), float64 sums, rounded to float32 as the Spark path's rows are;
2. propagation over both directions of every pair: ``y_v = Σ_{(u, v)} x_u / sqrt(out(u) in(v))``
   (LightGCN, He et al. 2020, Eq. 3 and 7) for ``K`` layers, float32;
3. ``e = 1/(K+1) Σ_{k=0}^{K} e^(k)`` (Eq. 4), summed in float64.

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

DEFAULT_MAX_DIRECT_PAIRS = 2_000_000
"""Graphs with at most this many pairs are aggregated in one task (the partitioner's one-task
bound, ``partition.max_direct_edges``, is 4M adjacency rows = 2M pairs)."""

_GROUP = "_one_task"


def propagate_mean(
    ego_ids: np.ndarray, ego: np.ndarray, src: np.ndarray, dst: np.ndarray, layers: int
) -> tuple[np.ndarray, np.ndarray]:
    """``1/(K+1) Σ_k A_hat^k E^(0)`` over both directions of the pairs ``(src, dst)``.

    ``A_hat[v, u] = 1 / sqrt(out(u) in(v))`` summed over the directed rows (duplicates count
    twice, as in :func:`pipelines.aggregate.propagate.propagate_layer`); a pair end without an ego
    vector
    starts from zeros. Returns the ascending ids of ego nodes and pair ends, and their vectors.

    Shapes:
        ego_ids ``[M]`` (ascending), ego ``[M, dim]``, src/dst ``[P]`` -> ``[N]``, ``[N, dim]``.
    """
    import torch

    u = np.concatenate([src, dst]).astype(np.int64)
    v = np.concatenate([dst, src]).astype(np.int64)
    ids = np.union1d(ego_ids, u)
    n, dim = len(ids), ego.shape[1]
    x = torch.zeros(n, dim)
    x[torch.from_numpy(np.searchsorted(ids, ego_ids))] = torch.from_numpy(ego)
    ui, vi = np.searchsorted(ids, u), np.searchsorted(ids, v)
    coef = 1.0 / np.sqrt(
        np.bincount(ui, minlength=n)[ui].astype(np.float64)
        * np.bincount(vi, minlength=n)[vi].astype(np.float64)
    )
    adj = torch.sparse_coo_tensor(
        torch.from_numpy(np.stack([vi, ui])),
        torch.from_numpy(coef.astype(np.float32)),
        (n, n),
    ).coalesce()
    acc = x.to(torch.float64)
    layer = x
    for _ in range(layers):
        layer = torch.sparse.mm(adj, layer)
        acc += layer.to(torch.float64)
    return ids, (acc / (layers + 1)).to(torch.float32).numpy()


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
