"""What every leaf task of the train seam shares: settings, row schemas, device, threads, log.

:mod:`pipelines.train.seam` (LightGCN leaves), :mod:`pipelines.forget.seam` (unlearning leaves)
and :mod:`pipelines.kg.seam` (NBFNet leaves) run inside Spark tasks; this module picks each
task's torch device (the GPU Spark assigned, else CUDA when present, else CPU) and thread count
(the task's cores), maps a leaf's global ids to local ``0..n-1`` and writes the JSON log row.
torch and :mod:`gnn` are imported lazily, inside the calls.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
from pyspark.sql import types as T

from pipelines.core.schema import ITEM, KIND, LEAF_ID, NODE_ID, ROLE, USER, VECTOR
from pipelines.core.vector_bytes import check_vector_dtype

LEAF_LOG = "leaf_log"
REPLICAS = "replicas"
"""How many leaves hold a node (a column of the round rows); > 1 marks a shared node."""

EMBEDDING_ROWS_SCHEMA = T.StructType(
    [
        T.StructField(LEAF_ID, T.LongType(), False),
        T.StructField(KIND, T.StringType(), False),
        T.StructField(NODE_ID, T.LongType(), False),
        T.StructField(ROLE, T.StringType(), False),
        T.StructField(VECTOR, T.BinaryType(), False),
        T.StructField(LEAF_LOG, T.StringType(), True),
    ]
)


@dataclass(frozen=True)
class LeafTrainSettings:
    """What every leaf's training needs; plain data so it pickles into the Spark closure."""

    dim: int = 64
    layers: int = 3
    epochs: int = 30
    batch_size: int = 8192
    lr: float = 0.001
    reg: float = 1e-4
    seed: int = 0
    time_budget_seconds: float = 0.0
    device: str = "auto"
    threads: int = 0
    vector_dtype: str = "float32"  # of the returned rows' vectors; "float16" halves their bytes
    shared_step: float = 1.0
    """Server step on nodes held by several leaves (FedAvg with a server learning rate, Reddi
    et al. 2021, Alg. 1 with SGD on the server: ``x <- x + eta * mean_k(x_k - x)``). A leaf
    returns ``x + eta (x_k - x)`` for a node whose start row says ``replicas > 1``; the weighted
    mean of those is the server step, with no extra pass. 1 is plain federated averaging."""

    def __post_init__(self) -> None:
        check_vector_dtype(self.vector_dtype, "vector_dtype")
        if not 0.0 < self.shared_step <= 8.0:
            raise ValueError(f"shared_step: must be in (0, 8] (got {self.shared_step})")


def task_device(requested: str = "auto") -> str:
    """The torch device for this task: the Spark-assigned GPU, else CUDA if present, else CPU."""
    if requested != "auto":
        return requested
    try:
        from pyspark import TaskContext

        ctx = TaskContext.get()
    except ImportError:  # pragma: no cover - pyspark is a dependency
        ctx = None
    if ctx is not None:
        gpus = ctx.resources().get("gpu")
        if gpus is not None and gpus.addresses:
            return f"cuda:{gpus.addresses[0]}"
        return "cpu"  # a task without an assigned GPU never grabs one
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def task_threads(requested: int = 0) -> int:
    """torch threads: the requested count, else the cores Spark gave this task, else all cores."""
    if requested > 0:
        return requested
    try:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        if ctx is not None:
            return max(1, int(ctx.cpus()))
    except ImportError:  # pragma: no cover
        pass
    import os

    return max(1, len(os.sched_getaffinity(0)))


@dataclass(frozen=True)
class LeafSetup:
    """One leaf in a task: its id, the torch device, and its global ids with local indices."""

    leaf_id: int
    device: Any
    users_global: np.ndarray
    users_local: np.ndarray
    items_global: np.ndarray
    items_local: np.ndarray


class TaskSettings(Protocol):
    """What :func:`setup_leaf` reads of a leaf's settings (train or forget)."""

    @property
    def threads(self) -> int: ...

    @property
    def device(self) -> str: ...


def setup_leaf(pdf: pd.DataFrame, settings: TaskSettings) -> LeafSetup:
    """Threads and device of the task, and the leaf's global ids mapped to local 0..n-1."""
    import torch

    torch.set_num_threads(task_threads(settings.threads))
    users_global, users_local = np.unique(pdf[USER].to_numpy(np.int64), return_inverse=True)
    items_global, items_local = np.unique(pdf[ITEM].to_numpy(np.int64), return_inverse=True)
    return LeafSetup(
        leaf_id=int(pdf[LEAF_ID].iloc[0]),
        device=torch.device(task_device(settings.device)),
        users_global=users_global,
        users_local=users_local.astype(np.int64),
        items_global=items_global,
        items_local=items_local.astype(np.int64),
    )


def positions_in(ids: np.ndarray, node_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of ``node_ids`` sits in the sorted ``ids``, and whether it is there at all.

    Returns ``(pos, ok)``: ``ids[pos[ok]] == node_ids[ok]``; ``pos[~ok]`` is meaningless.
    """
    pos = np.searchsorted(ids, node_ids)
    ok = (pos < len(ids)) & (ids[np.minimum(pos, len(ids) - 1)] == node_ids)
    return pos, ok


def leaf_train_config(settings: LeafTrainSettings, seed: int) -> Any:
    """The :class:`gnn.engine.lightgcn.LightGCNTrainConfig` of one leaf, seeded by ``seed``."""
    from gnn.engine.lightgcn import LightGCNTrainConfig

    return LightGCNTrainConfig(
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        lr=settings.lr,
        reg=settings.reg,
        layers=settings.layers,
        dim=settings.dim,
        seed=seed,
        time_budget_seconds=settings.time_budget_seconds,
    )


def leaf_log(
    leaf_id: int,
    result: Any,
    started: float,
    device: Any,
    settings: LeafTrainSettings,
    **sizes: int,
) -> dict[str, Any]:
    """The JSON log row of one trained leaf: sizes, epochs, loss curve, seconds, device.

    ``result`` is a training result with ``epochs``, ``losses`` and ``seconds``.
    """
    return {
        "leaf_id": leaf_id,
        **sizes,
        "epochs": result.epochs,
        "losses": [round(float(x), 6) for x in result.losses],
        "train_seconds": round(result.seconds, 3),
        "seconds": round(time.perf_counter() - started, 3),
        "device": str(device),
        "settings": asdict(settings),
    }


WEIGHTED_ROWS_SCHEMA = T.StructType(
    [
        T.StructField(LEAF_ID, T.LongType(), False),
        T.StructField(KIND, T.StringType(), False),
        T.StructField(NODE_ID, T.LongType(), False),
        T.StructField("w", T.DoubleType(), False),
        T.StructField(VECTOR, T.BinaryType(), False),
        T.StructField(LEAF_LOG, T.StringType(), True),
    ]
)
