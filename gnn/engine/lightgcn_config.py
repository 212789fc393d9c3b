"""LightGCN training settings (LightGCN, He et al., SIGIR 2020, Sec. 4.1) and result."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from gnn.engine.settings import field_check
from gnn.engine.settings import help_field as _f

__all__ = ["LightGCNResult", "LightGCNTrainConfig"]


@dataclass(frozen=True)
class LightGCNTrainConfig:
    """LightGCN training settings. Invalid values raise ``ValueError`` naming the field."""

    epochs: int = _f(1000, "Maximum epochs (one pass over the training interactions each).")
    batch_size: int = _f(2048, "BPR triples per optimiser step.")
    lr: float = _f(1e-3, "Adam learning rate.")
    reg: float = _f(1e-4, "L2 weight lambda on the batch's ego embeddings (Eq. 15).")
    layers: int = _f(3, "Propagation layers K.")
    dim: int = _f(64, "Embedding size.")
    seed: int = _f(0, "Seed of initialisation and sampling.")
    time_budget_seconds: float | None = _f(
        0.0, "Stop after this much training time, evaluation excluded (0 or None: no limit)."
    )
    eval_every: int = _f(0, "Evaluate every N epochs when test data is given (0: at the end).")
    k: int = _f(20, "Cut-off of Recall@K / NDCG@K.")
    threads: int = _f(0, "torch CPU threads during training (0: leave as set).")
    eval_batch_size: int = _f(2048, "Users scored at once during evaluation.")
    exclude_positives: bool = _f(True, "Draw negatives among each user's non-positive items.")
    init_std: float = _f(0.1, "Std of the normal initialisation of the ego embeddings.")
    sampling: str = _f("user", "user: users uniform then a positive (authors' code); edge.")
    lr_schedule: str = _f(
        "constant", "constant | cosine (set per epoch, over `epochs` or the time budget)."
    )
    lr_min_ratio: float = _f(0.0, "Cosine schedule: final lr as a fraction of `lr`.")
    cuda_graphs: bool = _f(
        True, "On CUDA, capture the training step in a CUDA graph (constant lr only)."
    )

    def __post_init__(self) -> None:
        require = field_check(self)

        require(self.epochs >= 0, "epochs", "must be >= 0")
        require(self.batch_size >= 1, "batch_size", "must be >= 1")
        require(math.isfinite(self.lr) and self.lr > 0, "lr", "must be > 0")
        require(math.isfinite(self.reg) and self.reg >= 0, "reg", "must be >= 0")
        require(self.layers >= 0, "layers", "must be >= 0")
        require(self.dim >= 1, "dim", "must be >= 1")
        require(self.seed >= 0, "seed", "must be >= 0")
        budget = self.time_budget_seconds
        require(budget is None or budget >= 0, "time_budget_seconds", "must be >= 0 or None")
        require(self.eval_every >= 0, "eval_every", "must be >= 0")
        require(self.k >= 1, "k", "must be >= 1")
        require(self.threads >= 0, "threads", "must be >= 0")
        require(self.eval_batch_size >= 1, "eval_batch_size", "must be >= 1")
        require(self.init_std > 0, "init_std", "must be > 0")
        require(self.sampling in ("user", "edge"), "sampling", "must be 'user' or 'edge'")
        require(
            self.lr_schedule in ("constant", "cosine"), "lr_schedule", "must be constant or cosine"
        )
        require(0.0 <= self.lr_min_ratio <= 1.0, "lr_min_ratio", "must be in [0, 1]")

    def lr_at(self, epoch: int, *, elapsed: float = 0.0) -> float:
        """Learning rate for a 1-based epoch that starts after ``elapsed`` training seconds.

        ``cosine`` anneals from ``lr`` to ``lr * lr_min_ratio`` over whichever limit comes
        first: ``epochs``, or the time budget (progress = elapsed / budget). Without a binding
        budget the schedule depends on the epoch only, so runs stay deterministic.
        """
        if self.lr_schedule == "constant":
            return self.lr
        progress = (epoch - 1) / self.epochs if self.epochs else 1.0
        if self.time_budget_seconds:
            progress = max(progress, elapsed / self.time_budget_seconds)
        progress = min(max(progress, 0.0), 1.0)
        low = self.lr * self.lr_min_ratio
        return low + 0.5 * (self.lr - low) * (1.0 + math.cos(math.pi * progress))

    @classmethod
    def paper(cls, **overrides: Any) -> LightGCNTrainConfig:
        """The paper's settings: d=64, K=3, Adam lr 0.001, batch 2048, lambda 1e-4, 1000 epochs."""
        base: dict[str, Any] = dict(
            dim=64, layers=3, lr=1e-3, batch_size=2048, reg=1e-4, epochs=1000
        )
        return cls(**{**base, **overrides})

    @classmethod
    def cpu_recipe(cls, **overrides: Any) -> LightGCNTrainConfig:
        """Few, large steps for CPUs, where every step is a full propagation.

        Batch 65536, Adam lr 0.02 annealed (cosine) to 0.001 over 150 epochs or the time
        budget, whichever is closer; d=64, K=3, lambda 1e-4 as in the paper. On Gowalla it
        reached Recall@20 0.1709 in 30 minutes on one busy CPU core
        (bench/results/lightgcn.md).
        """
        base: dict[str, Any] = dict(
            dim=64,
            layers=3,
            lr=0.02,
            batch_size=65536,
            reg=1e-4,
            epochs=150,
            lr_schedule="cosine",
            lr_min_ratio=0.05,
        )
        return cls(**{**base, **overrides})

    def replace(self, **changes: Any) -> LightGCNTrainConfig:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)


@dataclass
class LightGCNResult:
    """What :func:`fit_lightgcn` returns.

    Attributes:
        user_emb, item_emb: Final propagated embeddings, CPU float32, ``[U, d]`` / ``[I, d]``.
        losses: Mean training loss of each completed epoch.
        epochs: Completed epochs (steps of an epoch cut short by the time budget are kept in
            the model but not counted).
        seconds: Training time, evaluation excluded.
        history: One dict per evaluation: epoch, seconds, loss, ``recall@K``, ``ndcg@K``.
        state_dict: The model's state (CPU tensors).
        epoch_seconds: Training time of each completed epoch.
        ego_emb: The trained ego embeddings (layer 0), users first then items, CPU float32.
    """

    user_emb: Tensor
    item_emb: Tensor
    losses: list[float]
    epochs: int
    seconds: float
    history: list[dict[str, float]]
    state_dict: dict[str, Tensor]
    epoch_seconds: list[float] = field(default_factory=list)
    ego_emb: Tensor | None = None
