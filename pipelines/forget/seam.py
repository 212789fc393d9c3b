"""The Spark-to-torch seam of the forget job: distill-to-delete on one leaf inside a Spark task.

:func:`unlearn_leaf_from` is the forget counterpart of
:func:`pipelines.train.seam.train_leaf_from`: it receives one leaf's training interactions (each
flagged ``deleted`` or not) and the current global ego vectors of the leaf's nodes (each node
flagged ``deleted`` when a user or item request names it), runs
:func:`gnn.unlearn.lightgcn.unlearn_lightgcn` (Sinha et al. 2023, D2DGN) with the current vectors
as the teacher, and returns the unlearned ego vectors of the nodes that remain, weighted by their
retained interaction count in the leaf (the federated-averaging weight of
:func:`pipelines.aggregate.stage.weighted_mean_by_node`). Deleted nodes and nodes left without an
interaction in the leaf return no row. Torch is imported lazily; device, threads and per-leaf
seeding follow :mod:`pipelines.train.seam_task`, so a retried task returns identical rows.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.core.schema import ITEM, KIND, LEAF_ID, NODE_ID, USER, VECTOR
from pipelines.core.vector_bytes import bytes_to_matrix, vectors_to_bytes
from pipelines.train.seam_task import (
    LEAF_LOG,
    WEIGHTED_ROWS_SCHEMA,
    LeafSetup,
    positions_in,
    setup_leaf,
)

DELETED = "deleted"


@dataclass(frozen=True)
class LeafForgetSettings:
    """Per-leaf unlearning knobs (plain data: pickles into the Spark closure).

    ``steps``, ``lr``, ``alpha``, ``beta``, ``batch_size``, ``trainable_hops`` are those of
    :class:`gnn.unlearn.d2dgn.UnlearnConfig`; ``dim`` and ``layers`` those of the trained model.
    """

    dim: int = 64
    layers: int = 3
    steps: int = 30
    lr: float = 5e-3
    alpha: float = 0.5
    beta: float = 1.0
    batch_size: int = 8192
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    trainable_hops: int = 0


def _empty() -> pd.DataFrame:
    return pd.DataFrame({f.name: [] for f in WEIGHTED_ROWS_SCHEMA.fields})


def unlearn_leaf_from(
    edges: pd.DataFrame, init: pd.DataFrame, settings: LeafForgetSettings
) -> pd.DataFrame:
    """Distill-to-delete on one leaf; return the retained nodes' unlearned ego vectors.

    Schema:
        edges: ``leaf_id`` long, ``user`` long, ``item`` long, ``deleted`` bool (the leaf's
        training interactions before deletion; ``deleted`` marks the ones to forget).
        init: ``leaf_id``, ``kind``, ``node_id``, ``vector`` (float32 bytes), ``deleted`` bool
        (current global ego vectors of every node of the leaf; ``deleted`` marks nodes named
        by a user or item request).
        out: :data:`pipelines.train.seam.WEIGHTED_ROWS_SCHEMA`; ``w`` = retained interactions of
        the node in the leaf (> 0), ``leaf_log`` JSON on the first row.
    """
    from gnn.unlearn.lightgcn import lightgcn_deletion

    if edges.empty:
        return _empty()
    started = time.perf_counter()
    leaf = setup_leaf(edges, settings)
    n_u, n_i = len(leaf.users_global), len(leaf.items_global)
    teacher, gone = _teacher(init, leaf, settings.dim)
    flagged = (
        edges[DELETED].to_numpy(bool) | gone[USER][leaf.users_local] | gone[ITEM][leaf.items_local]
    )
    deletion = lightgcn_deletion(
        leaf.users_local,
        leaf.items_local,
        edges=flagged,
        users_to_delete=np.flatnonzero(gone[USER]),
    )
    keep = deletion.keep
    w = np.concatenate(
        [
            np.bincount(leaf.users_local[keep], minlength=n_u),
            np.bincount(leaf.items_local[keep], minlength=n_i),
        ]
    ).astype(np.float64)
    # A leaf that holds no deleted interaction and no deleted node (it was selected only
    # because a deleted node sits in its halo) is a fixed point of distill-to-delete: the
    # student starts as the teacher on the same graph, L_r and its gradient are 0 there and
    # L_f has no terms, so every Adam step is 0. Skip the steps; the rows are the teacher's.
    changed = bool((~keep).any() or gone[USER].any() or gone[ITEM].any())
    steps, seconds = 0, 0.0
    losses: list[Any] = []
    ego = teacher
    if keep.any() and changed:
        ego, steps, seconds, losses = _unlearn(teacher, leaf, deletion, settings)
    alive = w > 0
    alive[:n_u] &= ~gone[USER]
    alive[n_u:] &= ~gone[ITEM]
    rows = np.flatnonzero(alive)
    if len(rows) == 0:
        return _empty()
    log: dict[str, Any] = {
        "leaf_id": leaf.leaf_id,
        "users": int(alive[:n_u].sum()),
        "items": int(alive[n_u:].sum()),
        "interactions": int(keep.sum()),
        "forgotten_interactions": int((~keep).sum()),
        "unchanged": not changed,
        "steps": steps,
        "losses": [round(float(x[0]), 6) for x in losses],
        "unlearn_seconds": round(seconds, 3),
        "seconds": round(time.perf_counter() - started, 3),
        "device": str(leaf.device),
    }
    return _rows(leaf, rows, w[rows], ego[rows], log)


def _teacher(
    init: pd.DataFrame, leaf: LeafSetup, dim: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The current vectors ``[users + items, dim]`` in the leaf's local order, and per kind the
    local nodes a request deletes."""
    n_u, n_i = len(leaf.users_global), len(leaf.items_global)
    teacher = np.zeros((n_u + n_i, dim), dtype=np.float32)
    gone = {USER: np.zeros(n_u, bool), ITEM: np.zeros(n_i, bool)}
    for kind, ids, offset in ((USER, leaf.users_global, 0), (ITEM, leaf.items_global, n_u)):
        part = init[init[KIND] == kind]
        pos, ok = positions_in(ids, part[NODE_ID].to_numpy(np.int64))
        teacher[offset + pos[ok]] = bytes_to_matrix(list(part[VECTOR]), dim)[ok]
        gone[kind][pos[ok]] = part[DELETED].to_numpy(bool)[ok]
    return teacher, gone


def _unlearn(
    teacher: np.ndarray, leaf: LeafSetup, deletion: Any, settings: LeafForgetSettings
) -> tuple[np.ndarray, int, float, list[Any]]:
    """D2DGN on the leaf from ``teacher``: ``(ego vectors, steps, seconds, losses)``."""
    import torch

    from gnn.unlearn.d2dgn import UnlearnConfig
    from gnn.unlearn.lightgcn import unlearn_lightgcn

    cfg = UnlearnConfig(
        alpha=settings.alpha,
        beta=settings.beta,
        steps=settings.steps,
        lr=settings.lr,
        batch_size=settings.batch_size,
        seed=settings.seed * 1_000_003 + leaf.leaf_id,
        trainable_hops=settings.trainable_hops,
    )
    result = unlearn_lightgcn(
        torch.from_numpy(teacher),
        leaf.users_local,
        leaf.items_local,
        len(leaf.users_global),
        len(leaf.items_global),
        deletion,
        cfg,
        layers=settings.layers,
        device=leaf.device,
        log=lambda *a, **k: None,
    )
    assert result.ego_emb is not None
    return result.ego_emb.numpy(), result.steps, result.seconds, result.losses


def _rows(
    leaf: LeafSetup, rows: np.ndarray, w: np.ndarray, ego: np.ndarray, log: dict[str, Any]
) -> pd.DataFrame:
    """The :data:`WEIGHTED_ROWS_SCHEMA` frame of the local nodes ``rows`` (users first)."""
    n_u, n_i = len(leaf.users_global), len(leaf.items_global)
    kinds = np.where(rows < n_u, USER, ITEM)
    node_ids = np.where(
        rows < n_u,
        leaf.users_global[np.minimum(rows, n_u - 1)],
        leaf.items_global[np.clip(rows - n_u, 0, max(n_i - 1, 0))],
    )
    return pd.DataFrame(
        {
            LEAF_ID: np.full(len(rows), leaf.leaf_id, dtype=np.int64),
            KIND: kinds,
            NODE_ID: node_ids.astype(np.int64),
            "w": w,
            VECTOR: vectors_to_bytes(ego),
            LEAF_LOG: [json.dumps(log)] + [None] * (len(rows) - 1),
        }
    )


def unlearn_leaves_from(
    leaf_edges: DataFrame, leaf_init: DataFrame, settings: LeafForgetSettings
) -> DataFrame:
    """Cogroup each affected leaf's flagged edges with its flagged vectors; unlearn per leaf.

    Schema:
        leaf_edges: ``leaf_id, user, item, deleted``; leaf_init: ``leaf_id, kind, node_id,
        vector, deleted``. out: :data:`pipelines.train.seam.WEIGHTED_ROWS_SCHEMA`.
    """

    def fn(edges: pd.DataFrame, init: pd.DataFrame) -> pd.DataFrame:
        return unlearn_leaf_from(edges, init, settings)

    edges = leaf_edges.select(*[F.col(c).alias(c) for c in (LEAF_ID, USER, ITEM, DELETED)])
    init = leaf_init.select(*[F.col(c).alias(c) for c in (LEAF_ID, KIND, NODE_ID, VECTOR, DELETED)])
    return (
        edges.groupBy(LEAF_ID)
        .cogroup(init.groupBy(LEAF_ID))
        .applyInPandas(fn, schema=WEIGHTED_ROWS_SCHEMA)
    )
