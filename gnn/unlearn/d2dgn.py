"""Distill to delete: graph unlearning by knowledge distillation (D2DGN).

Sinha, Mandal, Kankanhalli, "Distill to Delete: Unlearning in Graph Networks with Knowledge
Distillation", arXiv:2309.16173, 2023. The trained model is the *preserver* (teacher); a
randomly initialised model of the same architecture is the *destroyer*. A *student*, initialised
from the preserver, is trained on the retained graph with the paper's combined objective::

    L   = alpha * L_r + (1 - alpha) * L_f                                (D2DGN, "Loss")
    L_r = KL(sigma(z_T / tau) || sigma(z_S / tau)) * tau^2  +  beta * ||h_S - h_T||^2
          over retained elements (edges and sampled non-edges; their nodes' embeddings)
    L_f = KL(sigma(z_D / tau) || sigma(z_S / tau)) * tau^2  +  beta * ||h_S - h_D||^2
          over deleted elements (edges; embeddings of deleted nodes only)

``z`` are link logits (response-based soft targets: each logit is a Bernoulli distribution,
the KL is between Bernoullis), ``h`` are node embeddings (LightGCN's final embeddings; NBFNet's
pair representations ``h_q(u, v)``), squared distances are summed over the dimension and
averaged over rows. Teacher and destroyer outputs are computed on the *retained* graph, the
graph the unlearned model will run on, so at step 0 the student equals the teacher there and
``L_r`` only anchors it while ``L_f`` moves the deleted elements' outputs towards the
destroyer's (uninformed) ones. For edge deletion the endpoints stay in the graph, so ``L_f``
uses responses only; for node (user) deletion the nodes' embeddings are pulled too.

Works on any partition leaf: every function takes plain tensors / arrays of one graph, ids in
``[0, n)``, and never imports pyspark. Deterministic for ``UnlearnConfig.seed`` on CPU (all
sampling from one ``torch.Generator``); the same code runs on CUDA. This module holds the
config, the result, the loss terms and the step loop (:func:`distill_steps`); LightGCN unlearning
lives in :mod:`gnn.unlearn.lightgcn`, NBFNet unlearning in :mod:`gnn.unlearn.nbfnet`, evaluation
helpers in :mod:`gnn.unlearn.eval`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gnn.engine.loop import LoopLimits, descend, run_loop
from gnn.engine.settings import field_check
from gnn.engine.settings import help_field as _f

__all__ = [
    "LossTerms",
    "UnlearnConfig",
    "UnlearnResult",
    "bernoulli_kl",
    "d2d_objective",
    "distill_steps",
    "embedding_distance",
    "log_distill",
    "pick_rows",
]


@dataclass(frozen=True)
class UnlearnConfig:
    """Distill-to-delete settings. Invalid values raise ``ValueError`` naming the field."""

    alpha: float = _f(0.5, "Weight of the retained loss L_r; the deleted loss L_f gets 1-alpha.")
    beta: float = _f(1.0, "Weight of the embedding term inside L_r and L_f.")
    temperature: float = _f(1.0, "Softening temperature tau of the logits.")
    steps: int = _f(30, "Optimiser steps.")
    lr: float = _f(5e-3, "Adam learning rate of the student.")
    batch_size: int = _f(8192, "Retained edges per step (each with num_negative non-edges).")
    deleted_batch_size: int = _f(4096, "Deleted edges per step (all when fewer).")
    num_negative: int = _f(1, "Sampled non-edges per retained edge (LightGCN) / query (NBFNet).")
    seed: int = _f(0, "Seed of the destroyer and of all sampling.")
    time_budget_seconds: float = _f(0.0, "Stop after this long (0: no limit).")
    threads: int = _f(0, "torch CPU threads while unlearning (0: leave as set).")
    trainable_hops: int = _f(
        -1,
        "LightGCN: only ego rows within this many hops (original graph) of a deleted user or a "
        "deleted edge's endpoints are updated; -1: every row.",
    )

    def __post_init__(self) -> None:
        require = field_check(self)

        require(0.0 <= self.alpha <= 1.0, "alpha", "must be in [0, 1]")
        require(math.isfinite(self.beta) and self.beta >= 0, "beta", "must be >= 0")
        require(self.temperature > 0, "temperature", "must be > 0")
        require(self.steps >= 0, "steps", "must be >= 0")
        require(self.lr > 0, "lr", "must be > 0")
        require(self.batch_size >= 1, "batch_size", "must be >= 1")
        require(self.deleted_batch_size >= 1, "deleted_batch_size", "must be >= 1")
        require(self.num_negative >= 1, "num_negative", "must be >= 1")
        require(self.seed >= 0, "seed", "must be >= 0")
        require(self.time_budget_seconds >= 0, "time_budget_seconds", "must be >= 0")
        require(self.threads >= 0, "threads", "must be >= 0")
        require(self.trainable_hops >= -1, "trainable_hops", "must be >= -1")

    def replace(self, **changes: Any) -> UnlearnConfig:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)


@dataclass
class UnlearnResult:
    """What the unlearning functions return.

    Attributes:
        seconds: Wall time of the whole call (setup, teacher/destroyer passes, steps).
        steps: Optimiser steps taken.
        losses: ``(total, L_r, L_f)`` of every step.
        ego_emb: LightGCN: the student's ego embeddings (users first), CPU float32.
        user_emb, item_emb: LightGCN: the student's final embeddings on the retained graph.
        model: NBFNet: the student (:class:`gnn.models.nbfnet.NBFNet`, on the device).
        graph: NBFNet: the retained :class:`gnn.data.kg.RelationalGraph` (on the device).
        retained_users, retained_items: LightGCN: the retained interactions.
    """

    seconds: float
    steps: int
    losses: list[tuple[float, float, float]]
    ego_emb: Tensor | None = None
    user_emb: Tensor | None = None
    item_emb: Tensor | None = None
    model: Any = None
    graph: Any = None
    retained_users: np.ndarray | None = None
    retained_items: np.ndarray | None = None


# --------------------------------------------------------------------------- loss terms


def bernoulli_kl(target_logits: Tensor, logits: Tensor, *, temperature: float = 1.0) -> Tensor:
    """``tau^2 * mean KL(Bern(sigma(t / tau)) || Bern(sigma(s / tau)))`` (response distillation).

    ``KL(p || q) = p log(p / q) + (1 - p) log((1 - p) / (1 - q))``, written with log-sigmoids
    for stability. The ``tau^2`` factor keeps gradient sizes comparable across temperatures
    (Hinton et al., 2015). Gradients flow into ``logits`` only.

    Shapes:
        target_logits, logits: ``[...]`` (same shape) -> scalar (0 for empty inputs).
    """
    if logits.numel() == 0:
        return logits.sum() * 0.0
    t = target_logits.detach() / temperature
    s = logits / temperature
    p = torch.sigmoid(t)
    kl = p * (F.logsigmoid(t) - F.logsigmoid(s)) + (1 - p) * (F.logsigmoid(-t) - F.logsigmoid(-s))
    return kl.mean() * temperature**2


def embedding_distance(emb: Tensor, target: Tensor) -> Tensor:
    """``mean_rows sum_d (emb - target)^2`` (feature distillation); 0 for no rows.

    Shapes:
        emb, target: ``[R, d]`` (or ``[..., d]``) -> scalar.
    """
    if emb.numel() == 0:
        return emb.sum() * 0.0
    return (emb - target.detach()).pow(2).sum(dim=-1).mean()


def d2d_objective(retained: Tensor, forgotten: Tensor, *, alpha: float) -> Tensor:
    """``alpha * L_r + (1 - alpha) * L_f`` (the D2DGN combination).

    Shapes:
        scalars -> scalar.
    """
    return alpha * retained + (1.0 - alpha) * forgotten


def pick_rows(n: int, k: int, gen: torch.Generator, device: torch.device) -> Tensor:
    """All of ``range(n)`` when ``k >= n``, else ``k`` uniform draws with replacement.

    Shapes:
        -> ``[min(n, k)]`` int64 on ``device``.
    """
    if k >= n:
        return torch.arange(n, device=device)
    return torch.randint(n, (k,), generator=gen, device=device)


# --------------------------------------------------------------------------- the step loop

LossTerms = tuple[Tensor, Tensor, Tensor]


def distill_steps(
    cfg: UnlearnConfig,
    opt: torch.optim.Optimizer,
    step_loss: Callable[[], LossTerms],
    t0: float,
) -> tuple[int, list[tuple[float, float, float]]]:
    """Minimise ``L`` with ``opt`` for ``cfg.steps`` steps (or until ``cfg.time_budget_seconds``
    after ``t0``, a ``time.perf_counter()`` reading, read after every step); ``step_loss()``
    draws one step's batch and returns ``(L, L_r, L_f)``. The loop is
    :func:`gnn.engine.loop.run_loop` (one epoch of ``cfg.steps`` steps).

    Returns:
        the steps taken and ``(L, L_r, L_f)`` of every step, as floats.
    """
    losses: list[tuple[float, float, float]] = []

    def step(_: int) -> float:
        total, l_r, l_f = step_loss()
        descend(opt, total)
        losses.append((float(total.detach()), float(l_r.detach()), float(l_f.detach())))
        return losses[-1][0]

    limits = LoopLimits(
        epochs=1,
        budget_seconds=cfg.time_budget_seconds or None,
        strict_budget=False,  # read after every step: at least one step
        spent=time.perf_counter() - t0,
    )
    run = run_loop(lambda state: range(cfg.steps), step, limits)
    return run.steps, losses


def log_distill(
    name: str,
    steps: int,
    seconds: float,
    losses: list[tuple[float, float, float]],
    log: Callable[[str], Any],
) -> None:
    """One progress line: steps, time, first and last ``L`` with the last ``L_r`` and ``L_f``."""
    if losses:
        log(
            f"unlearn {name}: {steps} steps in {seconds:.1f}s; loss {losses[0][0]:.5f} -> "
            f"{losses[-1][0]:.5f} (L_r {losses[-1][1]:.5f}, L_f {losses[-1][2]:.5f})"
        )
