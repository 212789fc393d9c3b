"""One NBFNet training step: queries, negatives, easy-edge removal, loss and the Adam step.

Zhu et al., NeurIPS 2021, Sec. 3.3 and App. B: each training triple ``(h, r, t)`` becomes one
query, a tail query ``(h, r, ?)`` or a head query ``(t, r^{-1}, ?)``. Every query scores its
answer and ``num_negative`` corrupted answers drawn uniformly from non-answers
(:class:`gnn.data.sampling.NegativeSampler`); the loss is :func:`gnn.losses.nbfnet_loss`.
Edges between a query's source and its candidates are removed from the graph for that step
(``remove_one_hop``), so the model has to reason over paths rather than read the answer off a
direct edge. :class:`QueryStepper` is the step every NBFNet trainer takes (full graph, leaf by
leaf, federated leaf rounds).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from gnn.data.kg import RelationalGraph
from gnn.data.sampling import NegativeSampler
from gnn.engine.loop import LoopLimits, LoopResult, LoopState, descend
from gnn.engine.nbfnet_config import (
    NBFNetResult,
    NBFNetTrainConfig,
    build_model,
    default_train_triples,
)
from gnn.losses import nbfnet_loss
from gnn.models.nbfnet import NBFNet, remove_easy_edges

__all__ = [
    "QueryStepper",
    "flip_queries",
    "query_batch_loss",
    "split_queries",
    "symmetric_pair_loss",
]


def split_queries(
    triples: Tensor, cfg: NBFNetTrainConfig, num_rel: int, gen: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """Turn a batch of (h, r, t) into (source, relation, answer) queries.

    KG: the first half of the batch become tail queries ``(h, r, ?)``, the rest head queries
    ``(t, r^-1, ?)`` (Zhu et al. 2021, App. B); link: a seeded coin picks each direction.

    Shapes:
        triples: ``[B, 3]`` -> three ``[B]``.
    """
    h, r, t = triples.t()
    if cfg.task == "link":
        flip = torch.rand(len(h), generator=gen) < 0.5
        return torch.where(flip, t, h), r, torch.where(flip, h, t)
    half = len(h) // 2
    src = torch.cat([h[:half], t[half:]])
    ans = torch.cat([t[:half], h[half:]])
    rel = torch.cat([r[:half], r[half:] + num_rel])
    return src, rel, ans


def flip_queries(
    triples: Tensor, gen: torch.Generator, *, task: str, inverse_offset: int
) -> tuple[Tensor, Tensor, Tensor]:
    """One query per triple: tail query ``(h, r, ?)`` or head query ``(t, r + off, ?)`` (link:
    either direction of relation 0), by a seeded coin flip on the triples' device.

    Shapes:
        triples: ``[B, 3]`` -> three ``[B]``.
    """
    h, r, t = triples.t()
    flip = torch.rand(len(h), generator=gen, device=h.device) < 0.5
    rel = r if task == "link" else torch.where(flip, r + inverse_offset, r)
    return torch.where(flip, t, h), rel, torch.where(flip, h, t)


class QueryStepper:
    """One Adam step of ``model`` on a batch of queries; keeps every step's loss.

    Args:
        model: The NBFNet trained.
        optimizer: Its optimiser.
        cfg: Settings (loss, negatives, easy-edge removal).
        num_rel: Offset of the inverse relations (0 for ``link``).
        gen: The generator of negative sampling.
        dev: Where the model runs.

    Attributes:
        losses: The loss of every step, as floats.
        queries: Queries stepped on.
    """

    def __init__(
        self,
        model: NBFNet,
        optimizer: torch.optim.Optimizer,
        cfg: NBFNetTrainConfig,
        num_rel: int,
        gen: torch.Generator,
        dev: torch.device,
    ) -> None:
        self.model, self.optimizer, self.cfg = model, optimizer, cfg
        self.num_rel, self.gen, self.dev = num_rel, gen, dev
        self.losses: list[float] = []
        self.queries = 0

    @classmethod
    def seeded(
        cls,
        graph: RelationalGraph,
        cfg: NBFNetTrainConfig,
        dev: torch.device,
        train_triples: Tensor | None,
    ) -> tuple[QueryStepper, Tensor]:
        """Seed torch and a new sampling generator with ``cfg.seed``, then build the model of
        ``cfg`` for ``graph`` on ``dev`` and its Adam stepper; also returns the training triples
        (``train_triples``, by default those of ``graph``) on CPU."""
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        triples = (
            default_train_triples(graph, cfg.task) if train_triples is None else train_triples
        ).cpu()
        num_rel = graph.num_relations // 2 if cfg.task == "kg" else 0
        model = build_model(graph.num_relations, cfg).to(dev)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        return cls(model, optimizer, cfg, num_rel, gen, dev), triples

    def limits(self, **evaluation: Any) -> LoopLimits:
        """The loop's limits: ``cfg.epochs``, ``cfg.max_steps`` and the time budget (read after
        every step), plus ``evaluation`` (``eval_every``, ``eval_at_end``)."""
        return LoopLimits(
            epochs=self.cfg.epochs,
            max_steps=self.cfg.max_steps,
            budget_seconds=self.cfg.time_budget_seconds or None,
            strict_budget=False,
            **evaluation,
        )

    def result(self, run: LoopResult, history: list[dict[str, float]]) -> NBFNetResult:
        """The trained weights (a CPU copy), the losses and counts of ``run``, and ``history``."""
        state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        return NBFNetResult(
            state, self.losses, run.seconds, history, run.steps, self.queries, self.model
        )

    def __call__(
        self,
        graph: RelationalGraph,
        sampler: NegativeSampler,
        queries: tuple[Tensor, Tensor, Tensor],
        *,
        source_pool: Tensor | None = None,
        on_grad: Callable[[], Any] | None = None,
    ) -> float:
        """Step on ``queries = (src, rel, ans)`` (CPU, ``[B]`` each); returns the loss."""
        src, rel, ans = queries
        loss = query_batch_loss(
            self.model,
            graph,
            sampler,
            src,
            rel,
            ans,
            self.cfg,
            self.num_rel,
            self.gen,
            self.dev,
            source_pool=source_pool,
        )
        descend(self.optimizer, loss, on_grad=on_grad)
        self.losses.append(loss.item())
        self.queries += len(src)
        return self.losses[-1]

    def logger(
        self,
        label: str,
        log: Callable[[str], Any],
        *,
        mid: Callable[[], str] = str,
        tail: Callable[[LoopState], str] = lambda state: "",
    ) -> Callable[[LoopState], None]:
        """The loop's ``on_step``: every ``cfg.log_every`` steps one line, ``[label] epoch E
        step S{mid()} loss L train Q queries/s elapsed Xs{tail(state)}`` (``L``: the mean loss
        of those steps; ``Q``: queries per training second)."""
        every = self.cfg.log_every

        def on_step(state: LoopState) -> None:
            if every and state.step % every == 0:
                recent = self.losses[-every:]
                log(
                    f"[{label}] epoch {state.epoch} step {state.step}{mid()} loss "
                    f"{sum(recent) / len(recent):.4f} train {self.queries / state.seconds:.1f} "
                    f"queries/s elapsed {state.seconds:.1f}s{tail(state)}"
                )

        return on_step


def query_batch_loss(
    model: NBFNet,
    graph: RelationalGraph,
    sampler: NegativeSampler,
    src: Tensor,
    rel: Tensor,
    ans: Tensor,
    cfg: NBFNetTrainConfig,
    num_rel: int,
    gen: torch.Generator,
    dev: torch.device,
    *,
    source_pool: Tensor | None = None,
) -> Tensor:
    """The training loss of one batch of queries ``(src, rel, ?)`` with answers ``ans``.

    Each query scores its answer against ``cfg.num_negative`` sampled negatives; the
    self-adversarial BCE of :func:`gnn.losses.nbfnet_loss` (Zhu et al. 2021, Eq. 7-8) is taken
    over them. ``cfg.negative_sources`` adds all-negative queries whose sources are drawn
    uniformly from ``source_pool`` (all nodes when None), scored with the mean BCE towards 0.
    The batch's own edges are removed from the graph first (``remove_easy_edges``).

    Shapes:
        src, rel, ans: ``[B]`` (CPU; moved to ``dev`` here). Returns a scalar.
    """
    if cfg.symmetric:
        return symmetric_pair_loss(
            model, graph, sampler, src, ans, cfg, gen, dev, source_pool=source_pool
        )
    neg = sampler.sample(src, rel, ans, cfg.num_negative, generator=gen)
    cand = torch.cat([ans.unsqueeze(1), neg], dim=1)
    n_pos = len(src)
    n_extra = round(cfg.negative_sources * n_pos)
    if n_extra:
        if source_pool is None:
            xs = torch.randint(graph.num_nodes, (n_extra,), generator=gen)
        else:
            xs = source_pool[torch.randint(len(source_pool), (n_extra,), generator=gen)]
        xr = torch.zeros(n_extra, dtype=torch.long)
        xc = sampler.sample(xs, xr, xs, cfg.num_negative + 1, generator=gen)
        src, rel, cand = torch.cat([src, xs]), torch.cat([rel, xr]), torch.cat([cand, xc])
    src, rel, ans, cand = src.to(dev), rel.to(dev), ans.to(dev), cand.to(dev)
    if cfg.remove_one_hop:
        keep = remove_easy_edges(graph, src.unsqueeze(1).expand_as(cand), cand)
    else:
        keep = remove_easy_edges(
            graph,
            src[:n_pos],
            ans,
            r_index=rel[:n_pos],
            inverse_offset=num_rel if cfg.task == "kg" else 0,
        )
    logits = model(graph, src, cand, rel, keep=keep)
    loss = nbfnet_loss(logits[:n_pos], cfg.adversarial_temperature)
    if n_extra:  # rows of negatives only: mean BCE towards 0, one row = one query
        neg_rows = F.softplus(logits[n_pos:]).mean(dim=1)
        loss = (loss * n_pos + neg_rows.sum()) / (n_pos + n_extra)
    return loss


def symmetric_pair_loss(
    model: NBFNet,
    graph: RelationalGraph,
    sampler: NegativeSampler,
    src: Tensor,
    ans: Tensor,
    cfg: NBFNetTrainConfig,
    gen: torch.Generator,
    dev: torch.device,
    *,
    source_pool: Tensor | None = None,
) -> Tensor:
    """Loss of a batch of undirected positive pairs ``(src_b, ans_b)`` (``cfg.symmetric``).

    Each positive gets ``K = cfg.num_negative`` negative pairs ``(x, y)``: ``x`` uniform over
    ``source_pool`` (all nodes when None), ``y`` a uniform non-neighbour of ``x``. Every pair
    is scored with the mean of its two directions' features (Zhu et al. 2021, App. B,
    ``symmetric``); the edges between every pair are removed for the step. The loss is
    :func:`nbfnet_loss` over ``[B, 1 + K]`` logits, as in the reference's link task.

    Shapes:
        src, ans: ``[B]`` (CPU). Returns a scalar.
    """
    b, k = len(src), cfg.num_negative
    if source_pool is None:
        xs = torch.randint(graph.num_nodes, (b * k,), generator=gen)
    else:
        xs = source_pool[torch.randint(len(source_pool), (b * k,), generator=gen)]
    ys = sampler.sample(xs, torch.zeros_like(xs), xs, 1, generator=gen)[:, 0]
    h = torch.cat([src, xs]).to(dev)
    t = torch.cat([ans, ys]).to(dev)
    keep = remove_easy_edges(graph, h, t)
    logits = model.pair_scores(graph, h, t, torch.zeros_like(h), symmetric=True, keep=keep)
    table = torch.cat([logits[:b].unsqueeze(1), logits[b:].view(b, k)], dim=1)
    return nbfnet_loss(table, cfg.adversarial_temperature)
