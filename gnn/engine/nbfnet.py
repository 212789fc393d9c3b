"""NBFNet training: negative sampling, self-adversarial BCE, easy-edge removal, time budget.

Zhu et al., NeurIPS 2021, Sec. 3.3 and App. B: each training triple ``(h, r, t)`` becomes one
query; half of a batch predicts tails ``(h, r, ?)``, half predicts heads as ``(t, r^{-1}, ?)``.
Every query scores its answer and ``num_negative`` corrupted answers drawn uniformly from
non-answers ("strict" negatives). The loss is binary cross-entropy with self-adversarial
negative weights (Sun et al., ICLR 2019, Eq. 5):
``L = -log s(x_+) - sum_i p_i log(1 - s(x_i))``, ``p = softmax(x_neg / T)`` (no gradient),
normalised by ``1 + sum_i p_i`` as in the reference. Edges between a query's source and its
candidates are removed from the graph for that step (``remove_one_hop``), so the model has to
reason over paths rather than read the answer off a direct edge.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from gnn.data.kg import RelationalGraph
from gnn.engine.device import torch_threads
from gnn.eval.nbfnet import evaluate_kg, evaluate_link_auc
from gnn.models.nbfnet import NBFNet, remove_easy_edges

__all__ = [
    "NBFNetResult",
    "NBFNetTrainConfig",
    "NegativeSampler",
    "build_model",
    "evaluate_kg",
    "evaluate_link_auc",
    "fit_nbfnet",
    "nbfnet_loss",
    "query_batch_loss",
    "symmetric_pair_loss",
]


def _f(default: Any, help: str) -> Any:  # noqa: A002 - reads best in field declarations
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class NBFNetTrainConfig:
    """NBFNet model and training settings (defaults: the paper's FB15k-237 setting).

    Invalid values raise ``ValueError`` naming the field.
    """

    task: str = _f("kg", "'kg' (triples, head+tail queries) or 'link' (undirected pairs).")
    dim: int = _f(32, "State width d.")
    layers: int = _f(6, "Bellman-Ford iterations.")
    message: str = _f("distmult", "MESSAGE: distmult, transe or rotate.")
    aggregate: str = _f("pna", "AGGREGATE: sum, mean, max or pna.")
    dependent: bool = _f(True, "Relation vectors projected from the query relation.")
    short_cut: bool = _f(True, "Residual connection between layers.")
    layer_norm: bool = _f(True, "LayerNorm in every layer.")
    epochs: int = _f(20, "Passes over the training triples.")
    batch_size: int = _f(64, "Queries per optimiser step.")
    lr: float = _f(5e-3, "Adam learning rate.")
    num_negative: int = _f(32, "Negatives per query.")
    adversarial_temperature: float = _f(0.5, "Self-adversarial temperature T (0: uniform).")
    strict_negative: bool = _f(True, "Redraw negatives that are true answers in the graph.")
    remove_one_hop: bool = _f(
        True,
        "Drop every edge between a query source and its candidates "
        "(else only the query triple and its inverse).",
    )
    negative_sources: float = _f(
        0.0,
        "link task: extra all-negative queries per positive "
        "query, from uniform random sources with uniform random "
        "non-neighbour candidates (calibrates scores across "
        "sources, like the reference's random negative pairs).",
    )
    symmetric: bool = _f(
        False,
        "link task: train on pairs, each scored with the mean of its "
        "h->t and t->h passes, against num_negative random non-edge "
        "pairs per positive (the reference's Cora setting).",
    )
    seed: int = _f(0, "Seed of initialisation, shuffling and negative sampling.")
    time_budget_seconds: float = _f(0.0, "Stop training after this long (0: no limit).")
    max_steps: int = _f(0, "Stop after this many optimiser steps (0: no limit).")
    log_every: int = _f(50, "Log a line every N steps (0: never).")
    threads: int = _f(0, "torch CPU threads while training (0: leave as set).")
    backend: str = _f("auto", "Aggregation backend: auto, naive, torch or triton.")

    def __post_init__(self) -> None:
        def require(cond: bool, name: str, msg: str) -> None:
            if not cond:
                raise ValueError(f"NBFNetTrainConfig.{name}: {msg} (got {getattr(self, name)!r})")

        require(self.task in ("kg", "link"), "task", "must be 'kg' or 'link'")
        require(self.dim >= 1, "dim", "must be >= 1")
        require(self.layers >= 1, "layers", "must be >= 1")
        require(
            self.message in ("distmult", "transe", "rotate"),
            "message",
            "must be distmult, transe or rotate",
        )
        require(self.message != "rotate" or self.dim % 2 == 0, "dim", "rotate needs an even dim")
        require(
            self.aggregate in ("sum", "mean", "max", "pna"),
            "aggregate",
            "must be sum, mean, max or pna",
        )
        require(self.epochs >= 0, "epochs", "must be >= 0")
        require(self.batch_size >= 1, "batch_size", "must be >= 1")
        require(self.lr > 0, "lr", "must be > 0")
        require(self.num_negative >= 1, "num_negative", "must be >= 1")
        require(self.adversarial_temperature >= 0, "adversarial_temperature", "must be >= 0")
        require(self.time_budget_seconds >= 0, "time_budget_seconds", "must be >= 0")
        require(self.max_steps >= 0, "max_steps", "must be >= 0")
        require(self.negative_sources >= 0, "negative_sources", "must be >= 0")
        require(
            self.negative_sources == 0 or self.task == "link",
            "negative_sources",
            "only for task='link'",
        )
        require(not self.symmetric or self.task == "link", "symmetric", "only for task='link'")
        require(
            not (self.symmetric and self.negative_sources),
            "negative_sources",
            "must be 0 with symmetric (its negatives are random pairs already)",
        )
        require(self.log_every >= 0, "log_every", "must be >= 0")
        require(self.threads >= 0, "threads", "must be >= 0")
        require(
            self.backend in ("auto", "naive", "torch", "triton"),
            "backend",
            "must be auto, naive, torch or triton",
        )


@dataclass
class NBFNetResult:
    """Outcome of :func:`fit_nbfnet`.

    Attributes:
        state_dict: trained weights (on CPU).
        losses: mean loss of every step.
        seconds: training wall time (callbacks excluded).
        history: one dict per epoch-end callback call (with ``epoch``, ``step``).
        steps: optimiser steps taken.
        queries: training queries processed.
        model: the trained model (on the training device).
    """

    state_dict: dict[str, Tensor]
    losses: list[float]
    seconds: float
    history: list[dict[str, float]]
    steps: int
    queries: int
    model: NBFNet


def build_model(num_relations: int, cfg: NBFNetTrainConfig) -> NBFNet:
    """The NBFNet that ``cfg`` describes."""
    return NBFNet(
        num_relations,
        dim=cfg.dim,
        layers=cfg.layers,
        message=cfg.message,
        aggregate=cfg.aggregate,
        short_cut=cfg.short_cut,
        layer_norm=cfg.layer_norm,
        dependent=cfg.dependent,
        backend=cfg.backend,
    )


class NegativeSampler:
    """Uniform negative answers for ``(source, relation)`` queries.

    With ``strict`` a draw that is a true answer in ``graph`` (an edge ``source -r-> node``) or
    the query's own answer is redrawn (up to 50 rounds). Sampling runs on CPU.
    """

    def __init__(self, graph: RelationalGraph, *, strict: bool = True) -> None:
        ei, et = graph.edge_index.cpu(), graph.edge_type.cpu()
        self.n, self.r, self.strict = graph.num_nodes, graph.num_relations, strict
        self.keys = torch.sort((ei[0] * self.r + et) * self.n + ei[1]).values

    def _is_true(self, src: Tensor, rel: Tensor, cand: Tensor) -> Tensor:
        key = (src * self.r + rel).unsqueeze(1) * self.n + cand
        pos = torch.searchsorted(self.keys, key).clamp(max=len(self.keys) - 1)
        return self.keys[pos] == key

    def sample(
        self, src: Tensor, rel: Tensor, answer: Tensor, k: int, *, generator: torch.Generator
    ) -> Tensor:
        """Draw ``k`` negatives per query.

        Shapes:
            src, rel, answer: ``[B]`` (CPU) -> ``[B, k]`` long.
        """
        cand = torch.randint(self.n, (len(src), k), generator=generator)
        if not self.strict:
            return cand
        for _ in range(50):
            bad = self._is_true(src, rel, cand) | (cand == answer.unsqueeze(1))
            if not bool(bad.any()):
                break
            cand[bad] = torch.randint(self.n, (int(bad.sum()),), generator=generator)
        return cand


def nbfnet_loss(logits: Tensor, temperature: float) -> Tensor:
    """Binary cross-entropy, positive in column 0, self-adversarial weights on negatives.

    Shapes:
        logits: ``[B, 1 + K]`` -> scalar.
    """
    target = torch.zeros_like(logits)
    target[:, 0] = 1.0
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    weight = torch.ones_like(logits)
    k = logits.shape[1] - 1
    if temperature > 0:
        weight[:, 1:] = torch.softmax(logits[:, 1:].detach() / temperature, dim=-1)
    else:
        weight[:, 1:] = 1.0 / k
    return ((bce * weight).sum(dim=-1) / weight.sum(dim=-1)).mean()


def _queries(
    triples: Tensor, cfg: NBFNetTrainConfig, num_rel: int, gen: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """Turn a batch of (h, r, t) into (source, relation, answer) queries."""
    h, r, t = triples.t()
    if cfg.task == "link":
        flip = torch.rand(len(h), generator=gen) < 0.5
        return torch.where(flip, t, h), r, torch.where(flip, h, t)
    half = len(h) // 2
    src = torch.cat([h[:half], t[half:]])
    ans = torch.cat([t[:half], h[half:]])
    rel = torch.cat([r[:half], r[half:] + num_rel])
    return src, rel, ans


def default_train_triples(graph: RelationalGraph, task: str) -> Tensor:
    """Training triples implied by a graph: the first half of the edges for a KG built with
    :func:`gnn.data.kg.add_inverse_relations`; each undirected non-loop edge once for ``link``."""
    src, dst = graph.edge_index
    if task == "link":
        sel = src < dst
        return torch.stack([src[sel], graph.edge_type[sel], dst[sel]], dim=1)
    e = graph.num_edges // 2
    return torch.stack([src[:e], graph.edge_type[:e], dst[:e]], dim=1)


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
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    g = graph.to(dev)
    triples = (
        default_train_triples(graph, cfg.task) if train_triples is None else train_triples
    ).cpu()
    num_rel = graph.num_relations // 2 if cfg.task == "kg" else 0
    model = build_model(graph.num_relations, cfg).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sampler = NegativeSampler(graph, strict=cfg.strict_negative)
    losses: list[float] = []
    history: list[dict[str, float]] = []
    step = queries = 0
    train_time = 0.0
    t_start = time.perf_counter()
    done = False
    for epoch in range(cfg.epochs):
        t_epoch = time.perf_counter()
        for batch in torch.randperm(len(triples), generator=gen).split(cfg.batch_size):
            src, rel, ans = _queries(triples[batch], cfg, num_rel, gen)
            loss = query_batch_loss(model, g, sampler, src, rel, ans, cfg, num_rel, gen, dev)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            step += 1
            queries += len(batch)
            elapsed = train_time + time.perf_counter() - t_epoch
            if cfg.log_every and step % cfg.log_every == 0:
                recent = losses[-cfg.log_every :]
                log(
                    f"[nbfnet] epoch {epoch + 1} step {step} loss {sum(recent) / len(recent):.4f}"
                    f" train {queries / elapsed:.1f} queries/s elapsed {elapsed:.1f}s"
                    f" wall {time.perf_counter() - t_start:.1f}s"
                )
            if (cfg.time_budget_seconds and elapsed >= cfg.time_budget_seconds) or (
                cfg.max_steps and step >= cfg.max_steps
            ):
                done = True
                break
        train_time += time.perf_counter() - t_epoch
        if on_epoch_end is not None:
            rec = {"epoch": float(epoch + 1), "step": float(step), **on_epoch_end(model)}
            history.append(rec)
            log(
                f"[nbfnet] epoch {epoch + 1} eval "
                + " ".join(f"{k}={v:.4f}" for k, v in rec.items() if k not in ("epoch", "step"))
            )
        if done:
            break
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return NBFNetResult(state, losses, train_time, history, step, queries, model)


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
