"""THE Spark-to-torch seam: the function Spark runs once per leaf inside a task.

``train_leaf`` takes one leaf's interactions as a pandas DataFrame (what ``applyInPandas`` hands a
group), imports torch lazily, trains LightGCN with :mod:`gnn`, and returns one row per node with its
vector as raw float32 bytes (cheaper through Arrow than ``array<float>``). It can be called on a
plain pandas DataFrame without Spark, which is how it is unit-tested.

Device: the GPU Spark assigned to the task (``TaskContext.get().resources()["gpu"]``, requested
with ``spark.executor.resource.gpu.amount`` and ``spark.task.resource.gpu.amount``), else CUDA when
running outside Spark on a machine that has it, else CPU (:mod:`pipelines.train.seam_task`).
Threads: ``settings.threads`` or the task's CPU count (Spark sets ``OMP_NUM_THREADS=1`` in Python
workers otherwise). Each leaf is seeded from ``(seed, leaf_id)`` so a retried task returns
identical rows.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import to_arrow_schema

from pipelines.core.schema import ITEM, KIND, LEAF_ID, NODE_ID, ROLE, USER, VECTOR
from pipelines.core.vector_bytes import (
    arrow_to_matrix,
    bytes_to_matrix,
    matrix_to_arrow,
    vectors_to_bytes,
)
from pipelines.train.seam_task import (
    EMBEDDING_ROWS_SCHEMA,
    LEAF_LOG,
    REPLICAS,
    WEIGHTED_ROWS_SCHEMA,
    LeafTrainSettings,
    leaf_log,
    leaf_train_config,
    positions_in,
    setup_leaf,
    task_device,
    task_threads,
)
from pipelines.train.seeded_init import seeded_vectors

__all__ = [
    "EMBEDDING_ROWS_SCHEMA",
    "LEAF_LOG",
    "REPLICAS",
    "WEIGHTED_ROWS_ARROW_SCHEMA",
    "WEIGHTED_ROWS_SCHEMA",
    "LeafTrainSettings",
    "leaf_log",
    "task_device",
    "task_threads",
    "train_leaf",
    "train_leaf_from",
    "train_leaf_from_arrow",
    "train_leaves",
    "train_leaves_from",
]


def train_leaf(pdf: pd.DataFrame, settings: LeafTrainSettings) -> pd.DataFrame:
    """Train LightGCN on one leaf and return its node vectors.

    Schema:
        in: ``leaf_id`` long, ``user`` long, ``item`` long (global dense ids; one row per
        training interaction of the leaf).
        out: :data:`EMBEDDING_ROWS_SCHEMA` — ``leaf_id``, ``kind`` (user|item), ``node_id``
        (global id), ``role`` (core), ``vector`` (float32 bytes), ``leaf_log`` (JSON with the
        loss curve, epochs, seconds and device on the first row of the leaf, else null).
    """
    from gnn.engine.lightgcn import fit_lightgcn

    if pdf.empty:
        return pd.DataFrame({f.name: [] for f in EMBEDDING_ROWS_SCHEMA.fields})
    started = time.perf_counter()
    leaf = setup_leaf(pdf, settings)
    leaf_id, device = leaf.leaf_id, leaf.device
    users_global, items_global = leaf.users_global, leaf.items_global
    result = fit_lightgcn(
        leaf.users_local,
        leaf.items_local,
        len(users_global),
        len(items_global),
        leaf_train_config(settings, settings.seed * 1_000_003 + leaf_id),
        device=device,
        log=lambda *a, **k: None,
    )
    user_vecs = result.user_emb.detach().cpu().numpy()
    item_vecs = result.item_emb.detach().cpu().numpy()
    log = leaf_log(
        leaf_id,
        result,
        started,
        device,
        settings,
        users=len(users_global),
        items=len(items_global),
        interactions=len(pdf),
    )
    n_u, n_i = len(users_global), len(items_global)
    out = pd.DataFrame(
        {
            LEAF_ID: np.full(n_u + n_i, leaf_id, dtype=np.int64),
            KIND: [USER] * n_u + [ITEM] * n_i,
            NODE_ID: np.concatenate([users_global, items_global]),
            ROLE: ["core"] * (n_u + n_i),
            VECTOR: vectors_to_bytes(user_vecs) + vectors_to_bytes(item_vecs),
            LEAF_LOG: [json.dumps(log)] + [None] * (n_u + n_i - 1),
        }
    )
    return out


def train_leaves(interactions: DataFrame, settings: LeafTrainSettings) -> DataFrame:
    """Run :func:`train_leaf` once per ``leaf_id`` group inside Spark tasks.

    Schema:
        in: ``leaf_id`` long, ``user`` long, ``item`` long.
        out: :data:`EMBEDDING_ROWS_SCHEMA`.
    """

    def fn(pdf: pd.DataFrame) -> pd.DataFrame:
        return train_leaf(pdf, settings)

    return (
        interactions.select(
            F.col(LEAF_ID).cast("long"), F.col(USER).cast("long"), F.col(ITEM).cast("long")
        )
        .groupBy(LEAF_ID)
        .applyInPandas(fn, schema=EMBEDDING_ROWS_SCHEMA)
    )


def train_leaf_from(
    edges: pd.DataFrame, init: pd.DataFrame, settings: LeafTrainSettings, *, round_index: int = 0
) -> pd.DataFrame:
    """One round of a leaf: start from the global ego vectors, train, return the new ego vectors.

    Schema:
        edges: ``leaf_id``, ``user``, ``item`` (the leaf's core and halo interactions).
        init: ``leaf_id``, ``kind``, ``node_id``, ``vector`` (current global ego vectors of
        every node the leaf touches), optionally ``replicas`` (leaves holding the node; those
        with more than one take :attr:`LeafTrainSettings.shared_step`).
        out: :data:`WEIGHTED_ROWS_SCHEMA` — ego vectors after training, ``w`` = the node's
        interaction count in the leaf (the federated-averaging weight).
    """
    if edges.empty:
        return pd.DataFrame({f.name: [] for f in WEIGHTED_ROWS_SCHEMA.fields})
    columns, ego = _train_leaf_arrays(
        edges,
        init[KIND].to_numpy(),
        init[NODE_ID].to_numpy(np.int64),
        _start_matrix(list(init[VECTOR]), settings.dim),
        settings,
        round_index,
        init[REPLICAS].to_numpy(np.int64) if REPLICAS in init else None,
    )
    columns[VECTOR] = vectors_to_bytes(ego, settings.vector_dtype)
    return pd.DataFrame({f.name: columns[f.name] for f in WEIGHTED_ROWS_SCHEMA.fields})


WEIGHTED_ROWS_ARROW_SCHEMA = to_arrow_schema(WEIGHTED_ROWS_SCHEMA)


def train_leaf_from_arrow(
    edges: pa.Table, init: pa.Table, settings: LeafTrainSettings, *, round_index: int = 0
) -> pa.Table:
    """:func:`train_leaf_from` on Arrow tables, what the Spark tasks run: the vectors are read
    from and written to the binary column's buffers (no Python object per row).

    Schema: as :func:`train_leaf_from`; out :data:`WEIGHTED_ROWS_ARROW_SCHEMA`.
    """
    if edges.num_rows == 0:
        return WEIGHTED_ROWS_ARROW_SCHEMA.empty_table()
    columns, ego = _train_leaf_arrays(
        edges.select([LEAF_ID, USER, ITEM]).to_pandas(),
        init.column(KIND).to_numpy(zero_copy_only=False),
        init.column(NODE_ID).to_numpy().astype(np.int64),
        _start_matrix(init.column(VECTOR), settings.dim),
        settings,
        round_index,
        init.column(REPLICAS).to_numpy().astype(np.int64)
        if REPLICAS in init.schema.names
        else None,
    )
    arrays = {name: pa.array(values, WEIGHTED_ROWS_ARROW_SCHEMA.field(name).type)
              for name, values in columns.items()}  # fmt: skip
    arrays[VECTOR] = matrix_to_arrow(ego, settings.vector_dtype)
    return pa.Table.from_arrays(
        [arrays[name] for name in WEIGHTED_ROWS_ARROW_SCHEMA.names],
        schema=WEIGHTED_ROWS_ARROW_SCHEMA,
    )


def _start_matrix(values: pa.Array | pa.ChunkedArray | list[bytes], dim: int) -> np.ndarray | None:
    """The start rows' vectors; ``None`` when every one is empty, or there are none (round 0:
    start seeded), on both seams alike."""
    if isinstance(values, list):
        if all(len(v) == 0 for v in values):
            return None
        return bytes_to_matrix(values, dim)
    if len(values) == 0 or pc.max(pc.binary_length(values)).as_py() == 0:
        return None
    return arrow_to_matrix(values, dim)


def _train_leaf_arrays(
    edges: pd.DataFrame,
    init_kinds: np.ndarray,
    init_ids: np.ndarray,
    init_vectors: np.ndarray | None,
    settings: LeafTrainSettings,
    round_index: int,
    init_replicas: np.ndarray | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """Train one leaf from its nodes' start vectors: every column but ``vector``, and the
    ``[users + items, dim]`` trained ego matrix in the same row order (shared nodes moved by
    ``settings.shared_step`` times their change, see :class:`LeafTrainSettings`).
    ``init_vectors=None``: every node starts from its seeded vector
    (:func:`pipelines.train.seeded_init.seeded_vectors`, ``settings.seed``)."""
    import torch

    from gnn.engine.lightgcn import fit_lightgcn

    started = time.perf_counter()
    leaf = setup_leaf(edges, settings)
    leaf_id, device = leaf.leaf_id, leaf.device
    users_global, users_local = leaf.users_global, leaf.users_local
    items_global, items_local = leaf.items_global, leaf.items_local
    n_u, n_i = len(users_global), len(items_global)
    start = np.zeros((n_u + n_i, settings.dim), dtype=np.float32)
    shared = np.zeros(n_u + n_i, dtype=bool)
    for kind, ids, offset in ((USER, users_global, 0), (ITEM, items_global, n_u)):
        mask = init_kinds == kind
        pos, ok = positions_in(ids, init_ids[mask])
        if init_vectors is not None:
            start[offset + pos[ok]] = init_vectors[mask][ok]
        if init_replicas is not None:
            shared[offset + pos[ok]] = init_replicas[mask][ok] > 1
    if init_vectors is None:
        nodes = pd.DataFrame({KIND: [USER] * n_u + [ITEM] * n_i,
                              NODE_ID: np.concatenate([users_global, items_global])})  # fmt: skip
        start = seeded_vectors(nodes, dim=settings.dim, seed=settings.seed)
    result = fit_lightgcn(
        users_local,
        items_local,
        n_u,
        n_i,
        leaf_train_config(settings, (settings.seed * 1_000_003 + leaf_id) * 1_009 + round_index),
        device=device,
        init_embedding=torch.from_numpy(start),
        log=lambda *a, **k: None,
    )
    assert result.ego_emb is not None
    ego = result.ego_emb.detach().cpu().numpy()
    if settings.shared_step != 1.0 and shared.any():
        ego[shared] = start[shared] + settings.shared_step * (ego[shared] - start[shared])
    weights = np.concatenate(
        [np.bincount(users_local, minlength=n_u), np.bincount(items_local, minlength=n_i)]
    ).astype(np.float64)
    log = leaf_log(leaf_id, result, started, device, settings, round=round_index, users=n_u,
                   items=n_i, interactions=len(edges))  # fmt: skip
    columns = {
        LEAF_ID: np.full(n_u + n_i, leaf_id, dtype=np.int64),
        KIND: [USER] * n_u + [ITEM] * n_i,
        NODE_ID: np.concatenate([users_global, items_global]),
        "w": weights,
        LEAF_LOG: [json.dumps(log)] + [None] * (n_u + n_i - 1),
    }
    return columns, ego


def train_leaves_from(
    leaf_edges: DataFrame,
    leaf_init: DataFrame,
    settings: LeafTrainSettings,
    *,
    round_index: int,
    group_key: str = LEAF_ID,
) -> DataFrame:
    """Cogroup each leaf's edges with its starting vectors and run :func:`train_leaf_from_arrow`.

    ``group_key``: the column both sides are grouped (and so partitioned) by; one value per
    leaf. Default ``leaf_id``; :mod:`pipelines.train.leaf_slots` keys place leaves on chosen tasks.

    Schema:
        leaf_edges: ``leaf_id``, ``user``, ``item``; leaf_init: ``leaf_id``, ``kind``,
        ``node_id``, ``vector`` (and ``replicas`` when it has one); both also ``group_key``
        when it is not ``leaf_id``.
        out: :data:`WEIGHTED_ROWS_SCHEMA`.
    """

    def fn(edges: pa.Table, init: pa.Table) -> pa.Table:
        return train_leaf_from_arrow(edges, init, settings, round_index=round_index)

    # Fresh attribute ids on both sides (leaf_init is usually derived from leaf_edges), and one
    # leaf id type: co-partitioned sides hashed as int and as long would not meet.
    keys = [F.col(group_key).cast("long").alias(group_key)] if group_key != LEAF_ID else []
    edges = leaf_edges.select(
        *keys, *[F.col(c).cast("long").alias(c) for c in (LEAF_ID, USER, ITEM)]
    )
    init = leaf_init.select(
        *keys,
        F.col(LEAF_ID).cast("long").alias(LEAF_ID),
        *[F.col(c).alias(c) for c in (KIND, NODE_ID, VECTOR)],
        *([F.col(REPLICAS).alias(REPLICAS)] if REPLICAS in leaf_init.columns else []),
    )
    return (
        edges.groupBy(group_key)
        .cogroup(init.groupBy(group_key))
        .applyInArrow(fn, schema=WEIGHTED_ROWS_SCHEMA)
    )
