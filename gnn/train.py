"""Training loop for LightGCN (BPR, Adam) with time budget and periodic full-ranking evaluation.

The loop is written against a ``forward() -> (final, ego)`` callable so the same sampler,
batching, loss and optimiser drive other LightGCN implementations too (the benchmark times
PyG's ``LightGCN`` through :func:`train_epoch`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gnn.losses import lightgcn_bpr_loss
from gnn.metrics import RankingEvaluator
from gnn.models.lightgcn import LightGCN, build_norm_adj
from gnn.sampling import BPRSampler

__all__ = ["LightGCNResult", "LightGCNTrainConfig", "fit_lightgcn", "train_epoch"]


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

    @classmethod
    def paper(cls, **overrides: Any) -> LightGCNTrainConfig:
        """The paper's settings: d=64, K=3, Adam lr 0.001, batch 2048, lambda 1e-4."""
        base: dict[str, Any] = dict(dim=64, layers=3, lr=1e-3, batch_size=2048, reg=1e-4)
        return cls(**{**base, **overrides})

    @classmethod
    def cpu_recipe(cls, **overrides: Any) -> LightGCNTrainConfig:
        """Fewer, larger steps for CPUs (every step is a full propagation): see bench results."""
        base: dict[str, Any] = dict(dim=64, layers=3, lr=5e-3, batch_size=16384, reg=1e-4)
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
        epochs: Completed epochs.
        seconds: Training time, evaluation excluded.
        history: One dict per evaluation: epoch, seconds, loss, ``recall@K``, ``ndcg@K``.
        state_dict: The model's state (CPU tensors).
        epoch_seconds: Training time of each completed epoch.
    """

    user_emb: Tensor
    item_emb: Tensor
    losses: list[float]
    epochs: int
    seconds: float
    history: list[dict[str, float]]
    state_dict: dict[str, Tensor]
    epoch_seconds: list[float] = field(default_factory=list)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_epoch(
    forward: Callable[[], tuple[Tensor, Tensor]],
    optimizer: torch.optim.Optimizer,
    sampler: BPRSampler,
    *,
    num_users: int,
    batch_size: int,
    reg: float,
    generator: torch.Generator,
    deadline: float | None = None,
) -> tuple[float, bool]:
    """One BPR epoch over shuffled interactions (LightGCN Eq. 15), one Adam step per batch.

    Args:
        forward: Returns ``(final, ego)``: propagated and layer-0 embeddings of all nodes,
            users first then items (item ``i`` is row ``num_users + i``). Called once per step.
        optimizer: Steps the parameters behind ``ego``.
        sampler: Source of ``(user, positive, negative)`` batches.
        num_users: Offset of the item rows.
        batch_size: Triples per step.
        reg: L2 weight on the batch's ego rows.
        generator: Sampling generator (on the sampler's device).
        deadline: ``time.perf_counter()`` value after which the epoch stops early.

    Returns:
        ``(mean loss over the steps run, completed)``; ``completed`` is False when the deadline
        cut the epoch short.

    Shapes:
        ``forward()``: ``([U + I, d], [U + I, d])``.
    """
    total = None
    steps = 0
    for users, pos, neg in sampler.epoch(batch_size, generator=generator):
        if deadline is not None and time.perf_counter() >= deadline:
            break
        final, ego = forward()
        idx = torch.cat([users, pos + num_users, neg + num_users])
        f_u, f_p, f_n = final.index_select(0, idx).chunk(3)
        e_u, e_p, e_n = ego.index_select(0, idx).chunk(3)
        loss, _, _ = lightgcn_bpr_loss(f_u, f_p, f_n, e_u, e_p, e_n, reg=reg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        detached = loss.detach()
        total = detached if total is None else total + detached  # no host sync per step
        steps += 1
    else:
        return (float(total) / steps if steps else 0.0), True
    return (float(total) / steps if steps else float("nan")), False


def make_adam(params: Any, lr: float, device: torch.device) -> torch.optim.Adam:
    """Adam, fused on CUDA (one kernel per step), foreach on CPU."""
    if device.type == "cuda":
        return torch.optim.Adam(params, lr=lr, fused=True)
    return torch.optim.Adam(params, lr=lr, foreach=True)


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

    Returns:
        :class:`LightGCNResult`.

    Shapes:
        users, items: ``[E]``.
    """
    dev = torch.device(device)
    old_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _fit(users, items, num_users, num_items, cfg, dev, test_users, test_items, log)
    finally:
        if cfg.threads:
            torch.set_num_threads(old_threads)


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
) -> LightGCNResult:
    started = time.perf_counter()
    adj = build_norm_adj(users, items, num_users, num_items, dev)
    model = LightGCN(
        num_users, num_items, dim=cfg.dim, layers=cfg.layers, seed=cfg.seed, init_std=cfg.init_std
    ).to(dev)
    sampler = BPRSampler(
        users, items, num_items, device=dev, exclude_positives=cfg.exclude_positives
    )
    generator = torch.Generator(device=dev).manual_seed(cfg.seed)
    optimizer = make_adam(model.parameters(), cfg.lr, dev)
    evaluator = None
    if (test_users is None) != (test_items is None):
        raise ValueError("give both test_users and test_items, or neither")
    if test_users is not None and test_items is not None and len(test_users):
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
    _sync(dev)
    log(
        f"lightgcn: {num_users} users, {num_items} items, {len(sampler)} interactions, "
        f"device {dev}, setup {time.perf_counter() - started:.2f}s"
    )

    def forward() -> tuple[Tensor, Tensor]:
        return model(adj), model.embedding

    budget = cfg.time_budget_seconds or None
    losses: list[float] = []
    epoch_seconds: list[float] = []
    history: list[dict[str, float]] = []
    train_seconds = 0.0
    epoch = 0

    def evaluate(loss: float) -> None:
        assert evaluator is not None
        t0 = time.perf_counter()
        with torch.no_grad():
            u_emb, i_emb = model.propagate(adj)
            figures = evaluator.evaluate(u_emb, i_emb)
        row = {"epoch": float(epoch), "seconds": round(train_seconds, 3), "loss": loss, **figures}
        history.append(row)
        shown = "  ".join(f"{key} {value:.4f}" for key, value in figures.items())
        log(
            f"eval epoch {epoch:4d}  {shown}  train {train_seconds:8.1f}s  "
            f"eval {time.perf_counter() - t0:.1f}s"
        )

    model.train()
    for epoch in range(1, cfg.epochs + 1):  # noqa: B007 - read by evaluate()
        t0 = time.perf_counter()
        deadline = t0 + (budget - train_seconds) if budget is not None else None
        loss, completed = train_epoch(
            forward,
            optimizer,
            sampler,
            num_users=num_users,
            batch_size=cfg.batch_size,
            reg=cfg.reg,
            generator=generator,
            deadline=deadline,
        )
        _sync(dev)
        spent = time.perf_counter() - t0
        train_seconds += spent
        if not completed:
            log(f"epoch {epoch:4d}  stopped by the time budget after {train_seconds:.1f}s")
            epoch -= 1
            break
        losses.append(loss)
        epoch_seconds.append(spent)
        log(f"epoch {epoch:4d}  loss {loss:.5f}  {spent:6.2f}s  train {train_seconds:8.1f}s")
        if evaluator is not None and cfg.eval_every and epoch % cfg.eval_every == 0:
            evaluate(loss)
        if budget is not None and train_seconds >= budget:
            log(f"time budget {budget:.0f}s reached after {epoch} epochs")
            break
    else:
        epoch = cfg.epochs
    if evaluator is not None and (not history or history[-1]["epoch"] != epoch):
        evaluate(losses[-1] if losses else float("nan"))

    model.eval()
    with torch.no_grad():
        u_emb, i_emb = model.propagate(adj)
    return LightGCNResult(
        user_emb=u_emb.detach().to("cpu", torch.float32).contiguous(),
        item_emb=i_emb.detach().to("cpu", torch.float32).contiguous(),
        losses=losses,
        epochs=epoch,
        seconds=train_seconds,
        history=history,
        state_dict={key: value.detach().cpu().clone() for key, value in model.state_dict().items()},
        epoch_seconds=epoch_seconds,
    )
