"""The Spark-to-torch seam of the homogeneous graph: one leaf's training, one task's propagation.

Pandas in, pandas/numpy out; torch and :mod:`gnn` are imported inside the functions, so the Spark
driver that imports :mod:`pipelines.train.homogeneous` never loads them.

* :func:`train_leaf_homogeneous` trains one leaf with :func:`gnn.engine.homogeneous.fit_homogeneous`
  (LightGCN over the leaf's undirected graph, BPR on ``(u, v, random v')``) from the shared
  deterministic initialisation :func:`pipelines.train.seeded_init.seeded_normal`.
* :func:`propagate_mean` is the final LightGCN propagation of a graph that fits one task
  (He et al., SIGIR 2020, Eq. 8-9 per layer and Eq. 4 for the mean), by
  :mod:`gnn.layers.lg_conv`.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd

from pipelines.aggregate.stage import WEIGHT_COL
from pipelines.core.schema import DST, KIND, LEAF_ID, NODE_ID, SRC, VECTOR
from pipelines.core.vector_bytes import vectors_to_bytes
from pipelines.train.seam import (
    LEAF_LOG,
    WEIGHTED_ROWS_SCHEMA,
    LeafTrainSettings,
    leaf_log,
    task_device,
    task_threads,
)
from pipelines.train.seeded_init import KIND_CODES, seeded_normal

NODE_KIND = "node"
INIT_STD = 0.1


def train_leaf_homogeneous(pdf: pd.DataFrame, settings: LeafTrainSettings) -> pd.DataFrame:
    """Train one leaf and return its nodes' ego vectors with federated-averaging weights.

    Schema:
        in: ``leaf_id``, ``src``, ``dst`` (global ids; one row per edge of the leaf).
        out: :data:`pipelines.train.seam.WEIGHTED_ROWS_SCHEMA` with kind ``node``; ``w`` = the
        node's number of distinct undirected edges in the leaf; ``leaf_log`` JSON on the first
        row (losses, epochs, seconds, device).
    """
    import torch

    from gnn.engine.homogeneous import HomogeneousConfig, fit_homogeneous
    from gnn.layers.lg_conv import undirected_pairs

    if pdf.empty:
        return pd.DataFrame({f.name: [] for f in WEIGHTED_ROWS_SCHEMA.fields})
    started = time.perf_counter()
    torch.set_num_threads(task_threads(settings.threads))
    device = torch.device(task_device(settings.device))
    leaf_id = int(pdf[LEAF_ID].iloc[0])
    ids, local = np.unique(
        np.concatenate([pdf[SRC].to_numpy(np.int64), pdf[DST].to_numpy(np.int64)]),
        return_inverse=True,
    )
    src, dst = local[: len(pdf)].astype(np.int64), local[len(pdf) :].astype(np.int64)
    init = seeded_normal(ids, KIND_CODES[NODE_KIND], settings.dim, settings.seed, INIT_STD)
    cfg = HomogeneousConfig(
        dim=settings.dim,
        layers=settings.layers,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        lr=settings.lr,
        reg=settings.reg,
        seed=settings.seed * 1_000_003 + leaf_id,
        time_budget_seconds=settings.time_budget_seconds,
    )
    result = fit_homogeneous(
        src, dst, len(ids), cfg, init_embedding=torch.from_numpy(init), device=device
    )
    lo, hi = undirected_pairs(src, dst)
    weights = np.bincount(np.concatenate([lo, hi]), minlength=len(ids)).astype(np.float64)
    log = leaf_log(leaf_id, result, started, device, settings, nodes=len(ids), edges=len(lo))
    return pd.DataFrame(
        {
            LEAF_ID: np.full(len(ids), leaf_id, dtype=np.int64),
            KIND: [NODE_KIND] * len(ids),
            NODE_ID: ids,
            WEIGHT_COL: weights,
            VECTOR: vectors_to_bytes(result.ego.numpy(), settings.vector_dtype),
            LEAF_LOG: [json.dumps(log)] + [None] * (len(ids) - 1),
        }
    )


def propagate_mean(
    ego_ids: np.ndarray, ego: np.ndarray, src: np.ndarray, dst: np.ndarray, layers: int
) -> tuple[np.ndarray, np.ndarray]:
    """``1/(K+1) Σ_k A_hat^k E^(0)`` over the undirected graph of the pairs ``(src, dst)``.

    ``A_hat = D^-1/2 A D^-1/2`` of the simple graph (duplicate pairs count once, self-loops
    none: :func:`gnn.layers.lg_conv.build_homogeneous_adj`), the same matrix as the Spark path's
    :func:`pipelines.aggregate.propagate.propagate_layer` over both directions of simple pairs;
    the ``K`` layers and their mean are :func:`gnn.layers.lg_conv.lightgcn_propagate` (float32).
    A pair end without an ego vector starts from zeros. Returns the ascending ids of ego nodes
    and pair ends, and their vectors.

    Shapes:
        ego_ids ``[M]`` (ascending), ego ``[M, dim]``, src/dst ``[P]`` -> ``[N]``, ``[N, dim]``.
    """
    import torch

    from gnn.layers.lg_conv import build_homogeneous_adj, lightgcn_propagate

    ids = np.union1d(ego_ids, np.concatenate([src, dst]).astype(np.int64))
    if not len(ids):
        return ids, np.zeros((0, ego.shape[1]), dtype=np.float32)
    x = torch.zeros(len(ids), ego.shape[1])
    x[torch.from_numpy(np.searchsorted(ids, ego_ids))] = torch.from_numpy(ego)
    adj = build_homogeneous_adj(np.searchsorted(ids, src), np.searchsorted(ids, dst), len(ids))
    with torch.no_grad():
        return ids, lightgcn_propagate(adj, x, layers).numpy()
