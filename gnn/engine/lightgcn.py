"""LightGCN training: BPR + Adam epochs with time budget, periodic full-ranking evaluation.

Settings and result live in :mod:`gnn.engine.lightgcn_config`, the BPR step and its epochs
(:func:`gnn.engine.bpr.train_bpr`) in :mod:`gnn.engine.bpr`, the loop (budget, epochs,
evaluation cadence) in :mod:`gnn.engine.loop`; all are re-exported here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gnn.data.sampling import Interactions
from gnn.engine.bpr import BPRStepper, make_adam, train_bpr
from gnn.engine.device import torch_threads
from gnn.engine.lightgcn_config import LightGCNResult, LightGCNTrainConfig
from gnn.engine.loop import LoopState
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
        data = Interactions(users, items, num_users, num_items)
        return _fit(data, cfg, dev, (test_users, test_items), log, init_embedding)


def _fit(
    data: Interactions,
    cfg: LightGCNTrainConfig,
    dev: torch.device,
    test: tuple[np.ndarray | None, np.ndarray | None],
    log: Callable[..., Any],
    init_embedding: Tensor | None = None,
) -> LightGCNResult:
    started = time.perf_counter()
    num_users, num_items = data.num_users, data.num_items
    adj = build_norm_adj(data.users, data.items, num_users, num_items, dev)
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
    evaluate = _evaluator(model, adj, data, cfg, dev, log, test)

    def forward() -> tuple[Tensor, Tensor]:
        return model(adj), model.embedding

    model.train()
    run = train_bpr(
        forward, model.parameters(), data, cfg, dev, log=log, evaluate=evaluate, started=started
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
    data: Interactions,
    cfg: LightGCNTrainConfig,
    dev: torch.device,
    log: Callable[..., Any],
    test: tuple[np.ndarray | None, np.ndarray | None],
) -> Callable[[LoopState], dict[str, float]] | None:
    """The loop's ``evaluate``: Recall/NDCG@K of the propagated embeddings (None: no test)."""
    test_users, test_items = test
    if (test_users is None) != (test_items is None):
        raise ValueError("give both test_users and test_items, or neither")
    if test_users is None or test_items is None or not len(test_users):
        return None
    evaluator = RankingEvaluator(
        data.users,
        data.items,
        test_users,
        test_items,
        num_users=data.num_users,
        num_items=data.num_items,
        k=min(cfg.k, data.num_items),
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
