"""NBFNet training on the full graph: the step of :mod:`gnn.engine.nbfnet_batch` in the loop.

Zhu et al., NeurIPS 2021, Sec. 3.3 and App. B: each training triple ``(h, r, t)`` becomes one
query; half of a batch predicts tails ``(h, r, ?)``, half predicts heads as ``(t, r^{-1}, ?)``.
Every query scores its answer and ``num_negative`` corrupted answers drawn uniformly from
non-answers ("strict" negatives). The loss is binary cross-entropy with self-adversarial
negative weights (Sun et al., ICLR 2019, Eq. 5):
``L = -log s(x_+) - sum_i p_i log(1 - s(x_i))``, ``p = softmax(x_neg / T)`` (no gradient),
normalised by ``1 + sum_i p_i`` as in the reference. Edges between a query's source and its
candidates are removed from the graph for that step (``remove_one_hop``), so the model has to
reason over paths rather than read the answer off a direct edge.

:func:`fit_nbfnet` drives :class:`gnn.engine.nbfnet_batch.QueryStepper` with
:func:`gnn.engine.loop.run_loop`: ``epochs``, ``max_steps`` and the time budget (read after
every step, evaluation excluded) bound the run, and ``on_epoch_end`` runs after every epoch,
the one a limit cuts short included. Settings and model: :mod:`gnn.engine.nbfnet_config`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from gnn.data.kg import RelationalGraph
from gnn.data.sampling import NegativeSampler
from gnn.engine.device import torch_threads
from gnn.engine.loop import LoopState, run_loop
from gnn.engine.nbfnet_batch import (
    QueryStepper,
    query_batch_loss,
    split_queries,
    symmetric_pair_loss,
)
from gnn.engine.nbfnet_config import (
    NBFNetResult,
    NBFNetTrainConfig,
    build_model,
    default_train_triples,
)
from gnn.eval.nbfnet import evaluate_kg, evaluate_link_auc
from gnn.losses import nbfnet_loss
from gnn.models.nbfnet import NBFNet

__all__ = [
    "NBFNetResult",
    "NBFNetTrainConfig",
    "NegativeSampler",
    "build_model",
    "default_train_triples",
    "evaluate_kg",
    "evaluate_link_auc",
    "fit_nbfnet",
    "nbfnet_loss",
    "query_batch_loss",
    "symmetric_pair_loss",
]


def fit_nbfnet(
    graph: RelationalGraph,
    cfg: NBFNetTrainConfig,
    *,
    device: torch.device | str = "cpu",
    log: Callable[[str], Any] = print,
    train_triples: Tensor | None = None,
    on_epoch_end: Callable[[NBFNet], dict[str, float]] | None = None,
) -> NBFNetResult:
    """Train an NBFNet on ``graph``.

    Args:
        graph: training graph (KG: inverse relations included; link: undirected relation 0).
        cfg: settings.
        device: where to train.
        log: progress sink (one line per ``log_every`` steps, with elapsed time).
        train_triples: ``[M, 3]`` (h, r, t) training triples (original relations); defaults to
            :func:`default_train_triples`.
        on_epoch_end: optional evaluation callback; its dicts form ``history``.

    Returns:
        :class:`NBFNetResult`.
    """
    with torch_threads(cfg.threads):
        return _fit(graph, cfg, torch.device(device), log, train_triples, on_epoch_end)


def _fit(
    graph: RelationalGraph,
    cfg: NBFNetTrainConfig,
    dev: torch.device,
    log: Callable[[str], Any],
    train_triples: Tensor | None,
    on_epoch_end: Callable[[NBFNet], dict[str, float]] | None,
) -> NBFNetResult:
    stepper, triples = QueryStepper.seeded(graph, cfg, dev, train_triples)
    model, gen, num_rel = stepper.model, stepper.gen, stepper.num_rel
    g = graph.to(dev)
    sampler = NegativeSampler(graph, strict=cfg.strict_negative)

    def batches(state: LoopState) -> tuple[Tensor, ...]:
        return torch.randperm(len(triples), generator=gen).split(cfg.batch_size)

    def step(batch: Tensor) -> float:
        return stepper(g, sampler, split_queries(triples[batch], cfg, num_rel, gen))

    def evaluate(state: LoopState) -> dict[str, float]:
        assert on_epoch_end is not None
        rec = {"epoch": float(state.epoch), "step": float(state.step), **on_epoch_end(model)}
        shown = " ".join(f"{k}={v:.4f}" for k, v in rec.items() if k not in ("epoch", "step"))
        log(f"[nbfnet] epoch {state.epoch} eval {shown}")
        return rec

    run = run_loop(
        batches,
        step,
        stepper.limits(eval_every=1, eval_at_end=False),
        on_step=stepper.logger("nbfnet", log, tail=lambda s: f" wall {s.wall:.1f}s"),
        evaluate=evaluate if on_epoch_end is not None else None,
    )
    return stepper.result(run, run.history)
