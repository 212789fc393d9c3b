"""LightGCN training: config, BPR + Adam epochs with time budget, periodic full-ranking evaluation.

The BPR step lives in :mod:`gnn.engine.bpr`, the loop (budget, epochs, evaluation cadence) in
:mod:`gnn.engine.loop`; :func:`train_bpr` joins them for any ``(final, ego)`` model.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gnn.data.sampling import BPRSampler
from gnn.engine.bpr import BPRStepper, make_adam
from gnn.engine.device import torch_threads
from gnn.engine.loop import EpochRecord, LoopLimits, LoopResult, LoopState, run_loop
from gnn.eval.metrics import RankingEvaluator
from gnn.models.lightgcn import LightGCN, build_norm_adj

__all__ = [
    "BPRStepper",
    "LightGCNResult",
    "LightGCNTrainConfig",
    "fit_lightgcn",
    "make_adam",
    "train_bpr",
]


def _f(default: Any, help: str) -> Any:  # noqa: A002 - reads best in field declarations
    return field(default=default, metadata={"help": help})


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
        def require(cond: bool, name: str, msg: str) -> None:
            if not cond:
                raise ValueError(f"LightGCNTrainConfig.{name}: {msg} (got {getattr(self, name)!r})")

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


def fit_lightgcn(
    users: np.ndarray,
    items: np.ndarray,
    num_users: int,
    num_items: int,
    cfg: LightGCNTrainConfig,
    *,
    device: torch.device | str = "cpu",
    test_users: np.ndarray | None = None,
    test_items: np.ndarray | None = None,
    log: Callable[..., Any] = print,
    init_embedding: Tensor | None = None,
) -> LightGCNResult:
    """Train LightGCN with BPR and Adam; optionally evaluate Recall/NDCG@K along the way.

    The normalised adjacency is built once on ``device``. Each step propagates all
    embeddings (K sparse products), scores the batch's triples and back-propagates (K more
    sparse products). Training stops after ``cfg.epochs`` or when the training time reaches
    ``cfg.time_budget_seconds`` (checked before every step). Deterministic for a seed on CPU.

    Args:
        users, items: Training interactions (ids in ``[0, num_users)`` / ``[0, num_items)``).
        num_users, num_items: Id ranges.
        cfg: Settings.
        device: Training device.
        test_users, test_items: Held-out interactions; when given, the model is evaluated
            every ``cfg.eval_every`` epochs and after training.
        log: Receives one progress line per epoch / evaluation.
        init_embedding: Starting ego embeddings (users first, then items) instead of the
            seeded normal initialisation; used by partitioned training, where every leaf
            starts from the global table.

    Returns:
        :class:`LightGCNResult`.

    Shapes:
        users, items: ``[E]``; init_embedding: ``[num_users + num_items, dim]``.
    """
    dev = torch.device(device)
    with torch_threads(cfg.threads):
        return _fit(
            users,
            items,
            num_users,
            num_items,
            cfg,
            dev,
            test_users,
            test_items,
            log,
            init_embedding,
        )


def _fit(
    users: np.ndarray,
    items: np.ndarray,
    num_users: int,
    num_items: int,
    cfg: LightGCNTrainConfig,
    dev: torch.device,
    test_users: np.ndarray | None,
    test_items: np.ndarray | None,
    log: Callable[..., Any],
    init_embedding: Tensor | None = None,
) -> LightGCNResult:
    started = time.perf_counter()
    adj = build_norm_adj(users, items, num_users, num_items, dev)
    model = LightGCN(
        num_users, num_items, dim=cfg.dim, layers=cfg.layers, seed=cfg.seed, init_std=cfg.init_std
    ).to(dev)
    if init_embedding is not None:
        if tuple(init_embedding.shape) != tuple(model.embedding.shape):
            raise ValueError(
                f"init_embedding: expected shape {tuple(model.embedding.shape)}, "
                f"got {tuple(init_embedding.shape)}"
            )
        with torch.no_grad():
            model.embedding.copy_(init_embedding.to(dev, torch.float32))
    evaluate = _evaluator(
        model, adj, users, items, num_users, num_items, cfg, dev, log, test_users, test_items
    )

    def forward() -> tuple[Tensor, Tensor]:
        return model(adj), model.embedding

    model.train()
    run = train_bpr(
        forward,
        model.parameters(),
        users,
        items,
        num_users,
        num_items,
        cfg,
        dev,
        log=log,
        evaluate=evaluate,
        started=started,
    )
    model.eval()
    with torch.no_grad():
        u_emb, i_emb = model.propagate(adj)
    return LightGCNResult(
        user_emb=u_emb.detach().to("cpu", torch.float32).contiguous(),
        item_emb=i_emb.detach().to("cpu", torch.float32).contiguous(),
        losses=[r.loss for r in run.records],
        epochs=run.epochs,
        seconds=run.seconds,
        history=run.history,
        state_dict={key: value.detach().cpu().clone() for key, value in model.state_dict().items()},
        epoch_seconds=[r.seconds for r in run.records],
        ego_emb=model.embedding.detach().to("cpu", torch.float32).clone(),
    )


def _evaluator(
    model: LightGCN,
    adj: Tensor,
    users: np.ndarray,
    items: np.ndarray,
    num_users: int,
    num_items: int,
    cfg: LightGCNTrainConfig,
    dev: torch.device,
    log: Callable[..., Any],
    test_users: np.ndarray | None,
    test_items: np.ndarray | None,
) -> Callable[[LoopState], dict[str, float]] | None:
    """The loop's ``evaluate``: Recall/NDCG@K of the propagated embeddings (None: no test)."""
    if (test_users is None) != (test_items is None):
        raise ValueError("give both test_users and test_items, or neither")
    if test_users is None or test_items is None or not len(test_users):
        return None
    evaluator = RankingEvaluator(
        users,
        items,
        test_users,
        test_items,
        num_users=num_users,
        num_items=num_items,
        k=min(cfg.k, num_items),
        batch_size=cfg.eval_batch_size,
        device=dev,
    )

    def evaluate(state: LoopState) -> dict[str, float]:
        t0 = time.perf_counter()
        with torch.no_grad():
            u_emb, i_emb = model.propagate(adj)
            figures = evaluator.evaluate(u_emb, i_emb)
        row = {"epoch": float(state.epoch), "seconds": round(state.seconds, 3)}
        row = {**row, "loss": state.last_loss, **figures}
        shown = "  ".join(f"{key} {value:.4f}" for key, value in figures.items())
        log(
            f"eval epoch {state.epoch:4d}  {shown}  train {state.seconds:8.1f}s  "
            f"eval {time.perf_counter() - t0:.1f}s"
        )
        return row

    return evaluate


def train_bpr(
    forward: Callable[[], tuple[Tensor, Tensor]],
    parameters: Iterable[Tensor],
    users: np.ndarray,
    items: np.ndarray,
    num_users: int,
    num_items: int,
    cfg: LightGCNTrainConfig,
    dev: torch.device,
    *,
    log: Callable[..., Any] = print,
    evaluate: Callable[[LoopState], dict[str, float]] | None = None,
    started: float | None = None,
    name: str = "lightgcn",
    epochs: int | None = None,
) -> LoopResult:
    """BPR + Adam epochs (LightGCN Eq. 15) of any ``forward() -> (final, ego)`` model.

    The sampler, batches, loss, optimiser, lr schedule and (on CUDA) graph-replayed steps of
    ``cfg``, driven by :func:`gnn.engine.loop.run_loop` (strict budget: a step starts only
    within ``cfg.time_budget_seconds``; evaluation every ``cfg.eval_every`` epochs and at the
    end). :func:`fit_lightgcn` and the PyG comparison of ``bench.lightgcn`` both train here.

    Args:
        forward: Propagated and layer-0 embeddings of all nodes, users first.
        parameters: What Adam steps (the parameters behind ``ego``).
        users, items: Training interactions.
        num_users, num_items: Id ranges.
        cfg: Settings.
        dev: Training device.
        log: Receives the setup line, one line per epoch and the budget's stop line.
        evaluate: Evaluation of the loop (None: none).
        started: ``time.perf_counter()`` at the start of setup (for the setup line).
        name: Prefix of the setup line.
        epochs: Epochs instead of ``cfg.epochs`` (the lr schedule still spans ``cfg.epochs``).

    Returns:
        The loop's :class:`gnn.engine.loop.LoopResult` (one record per completed epoch).
    """
    started = time.perf_counter() if started is None else started
    sampler = BPRSampler(
        users,
        items,
        num_items,
        device=dev,
        exclude_positives=cfg.exclude_positives,
        mode=cfg.sampling,
    )
    generator = torch.Generator(device=dev).manual_seed(cfg.seed)
    graphed = cfg.cuda_graphs and dev.type == "cuda" and cfg.lr_schedule == "constant"
    optimizer = make_adam(parameters, cfg.lr, dev, capturable=graphed)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else None
    if sync is not None:
        sync()
    log(
        f"{name}: {num_users} users, {num_items} items, {len(sampler)} interactions, "
        f"device {dev}, setup {time.perf_counter() - started:.2f}s"
    )
    step = BPRStepper(
        forward,
        optimizer,
        num_users=num_users,
        reg=cfg.reg,
        batch_size=cfg.batch_size,
        cuda_graph=graphed,
    )

    def batches(state: LoopState) -> Iterable[tuple[Tensor, Tensor, Tensor]]:
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr_at(state.epoch, elapsed=state.seconds)
        return sampler.epoch(cfg.batch_size, generator=generator)

    def on_epoch(rec: EpochRecord) -> None:
        lr_now = float(optimizer.param_groups[0]["lr"])
        log(
            f"epoch {rec.epoch:4d}  loss {rec.loss:.5f}  lr {lr_now:.2e}  {rec.seconds:6.2f}s  "
            f"train {rec.total_seconds:8.1f}s"
        )
        if rec.epoch == 1 and graphed:
            log(
                f"cuda graph: {'replaying' if step.graphed else 'off'}"
                + (f" ({step.graph_error})" if step.graph_error else "")
            )

    limits = LoopLimits(
        epochs=cfg.epochs if epochs is None else epochs,
        budget_seconds=cfg.time_budget_seconds or None,
        eval_every=cfg.eval_every,
    )
    return run_loop(
        batches,
        lambda b: step(*b),
        limits,
        on_epoch=on_epoch,
        evaluate=evaluate,
        sync=sync,
        log=log,
    )
