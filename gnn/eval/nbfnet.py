"""NBFNet evaluation: filtered ranking for knowledge graphs, AUROC / AP for homogeneous graphs.

Filtered ranking (Bordes et al., NeurIPS 2013), both directions, as NBFNet reports it: for a
test triple ``(h, r, t)`` the tail query ``(h, r, ?)`` and the head query ``(t, r^{-1}, ?)``
each rank the answer among all entities after removing the OTHER true answers (from
``filter_triples``); the rank is ``1 + #{non-answers scored >= the answer}`` (ties count
against the model, as in the reference code).
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from gnn.data.kg import RelationalGraph
from gnn.eval.metrics import auroc, average_precision
from gnn.models.nbfnet import NBFNet

__all__ = [
    "AnswerFilter",
    "evaluate_kg",
    "evaluate_link_auc",
    "filtered_ranks",
    "kg_metrics",
    "kg_ranks",
    "link_auc",
    "rank_metrics",
]


class AnswerFilter:
    """All true answers of ``(source, relation)`` queries, with inverse queries included.

    Args:
        triples: ``[M, 3]`` (head, relation, tail) true triples.
        num_nodes: entity count.
        num_relations: relation count WITHOUT inverses; inverse relation is ``r + R``.
    """

    def __init__(self, triples: Tensor, num_nodes: int, num_relations: int) -> None:
        h, r, t = triples.t()
        src = torch.cat([h, t])
        rel = torch.cat([r, r + num_relations])
        ans = torch.cat([t, h])
        key = src * (2 * num_relations) + rel
        self.key, order = torch.sort(key)
        self.answer = ans[order]
        self.num_relations = num_relations

    def mask(self, src: Tensor, rel: Tensor, num_nodes: int) -> Tensor:
        """``[B, N]`` bool, ``True`` where the node is a true answer of ``(src_b, rel_b, ?)``."""
        dev = src.device
        key = (src * (2 * self.num_relations) + rel).to(self.key.device)
        start = torch.searchsorted(self.key, key, right=False)
        end = torch.searchsorted(self.key, key, right=True)
        count = end - start
        row = torch.repeat_interleave(torch.arange(len(key), device=dev), count.to(dev))
        offs = torch.arange(int(count.sum()), device=self.key.device)
        offs = offs - torch.repeat_interleave(torch.cumsum(count, 0) - count, count)
        cols = self.answer[torch.repeat_interleave(start, count) + offs].to(dev)
        out = torch.zeros(len(key), num_nodes, dtype=torch.bool, device=dev)
        out[row, cols] = True
        return out


def filtered_ranks(scores: Tensor, target: Tensor, true_mask: Tensor) -> Tensor:
    """Filtered 1-based ranks: ``1 + #{c not true, c != target : s_c >= s_target}``.

    Shapes:
        scores: ``[B, N]``; target: ``[B]``; true_mask: ``[B, N]`` bool -> ``[B]`` long.
    """
    pos = scores.gather(1, target.unsqueeze(1))
    others = ~true_mask
    others[torch.arange(len(target), device=target.device), target] = False
    return ((scores >= pos) & others).sum(dim=1) + 1


@torch.no_grad()
def kg_ranks(
    model: NBFNet,
    graph: RelationalGraph,
    triples: Tensor,
    *,
    filter_triples: Tensor,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    time_budget_seconds: float = 0.0,
) -> tuple[Tensor, float]:
    """Filtered ranks of the tail and head queries of ``triples``, and the seconds they took.

    Queries run in triple order, the tail query ``(h, r, ?)`` of a triple followed by its head
    query ``(t, r^{-1}, ?)``: rank ``2 i`` belongs to triple ``i``'s tail, ``2 i + 1`` to its
    head. ``time_budget_seconds`` stops after the batch that crosses it (0: no limit), so fewer
    ranks may come back. Arguments as in :func:`evaluate_kg`.

    Returns:
        ``([Q] long ranks on the CPU, seconds)``.
    """
    was_training = model.training
    model.eval()
    dev = torch.device(device)
    g = graph.to(dev) if graph.edge_index.device != dev else graph
    num_rel = g.num_relations // 2
    filt = AnswerFilter(filter_triples.to(dev), g.num_nodes, num_rel)
    h, r, t = triples.to(dev).t()
    src = torch.stack([h, t], dim=1).reshape(-1)
    rel = torch.stack([r, r + num_rel], dim=1).reshape(-1)
    ans = torch.stack([t, h], dim=1).reshape(-1)
    ranks = []
    _sync(dev)
    t0 = time.perf_counter()
    for a in range(0, len(src), batch_size):
        s, q, y = src[a : a + batch_size], rel[a : a + batch_size], ans[a : a + batch_size]
        scores = model.score_all(g, s, q)
        ranks.append(filtered_ranks(scores, y, filt.mask(s, q, g.num_nodes)))
        if time_budget_seconds and time.perf_counter() - t0 >= time_budget_seconds:
            break
    _sync(dev)
    secs = time.perf_counter() - t0
    model.train(was_training)
    return torch.cat(ranks).cpu(), secs


def rank_metrics(ranks: Tensor) -> dict[str, float]:
    """``{"mrr", "mr", "hits@1", "hits@3", "hits@10"}`` of 1-based ranks.

    MRR is ``mean(1 / rank)`` and Hits@k ``mean(rank <= k)`` (Bordes et al., 2013).
    """
    rk = ranks.double()
    out = {"mrr": float((1.0 / rk).mean()), "mr": float(rk.mean())}
    for k in (1, 3, 10):
        out[f"hits@{k}"] = float((rk <= k).double().mean())
    return out


@torch.no_grad()
def evaluate_kg(
    model: NBFNet,
    graph: RelationalGraph,
    triples: Tensor,
    *,
    filter_triples: Tensor,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    time_budget_seconds: float = 0.0,
) -> dict[str, float]:
    """Filtered MRR / Hits@1,3,10 over tail and head queries of ``triples``.

    Args:
        model: a trained NBFNet on ``graph`` (graph with inverse relations).
        graph: the graph to propagate on (the training graph).
        triples: ``[M, 3]`` (head, relation, tail) test triples.
        filter_triples: all known true triples (train + valid + test).
        batch_size: queries per Bellman-Ford pass.
        device: where to run.
        time_budget_seconds: stop after the batch that crosses this many seconds (0: no
            limit); queries run in triple order, tail and head query of a triple side by side,
            so pass shuffled triples to get a uniform sample. ``queries`` says how many ran.

    Returns:
        ``{"mrr", "mr", "hits@1", "hits@3", "hits@10", "queries", "seconds", "qps"}``.
    """
    ranks, secs = kg_ranks(
        model,
        graph,
        triples,
        filter_triples=filter_triples,
        batch_size=batch_size,
        device=device,
        time_budget_seconds=time_budget_seconds,
    )
    return kg_metrics(ranks, secs)


def kg_metrics(ranks: Tensor, seconds: float) -> dict[str, float]:
    """:func:`rank_metrics` plus ``queries``, ``seconds`` and ``qps`` (queries per second)."""
    out = rank_metrics(ranks)
    out.update(queries=float(len(ranks)), seconds=seconds, qps=len(ranks) / max(seconds, 1e-9))
    return out


@torch.no_grad()
def evaluate_link_auc(
    model: NBFNet,
    graph: RelationalGraph,
    pos: Tensor,
    neg: Tensor,
    *,
    batch_size: int = 64,
    symmetric: bool = True,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """AUROC and AP of positive vs negative node pairs (relation 0, homogeneous graph).

    Args:
        model: trained NBFNet.
        graph: graph to propagate on (training edges only).
        pos, neg: ``[P, 2]`` / ``[M, 2]`` node pairs.
        batch_size: pairs per Bellman-Ford pass.
        symmetric: average the pair features of the ``u -> v`` and ``v -> u`` passes (the
            reference's ``symmetric`` option for undirected graphs).
        device: where to run.

    Returns:
        ``{"auroc", "ap", "queries", "seconds", "qps"}`` (queries are Bellman-Ford passes).
    """
    was_training = model.training
    model.eval()
    dev = torch.device(device)
    g = graph.to(dev) if graph.edge_index.device != dev else graph
    pairs = torch.cat([pos, neg]).to(dev)
    labels = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))])
    scores = []
    _sync(dev)
    t0 = time.perf_counter()
    for a in range(0, len(pairs), batch_size):
        u, v = pairs[a : a + batch_size].t()
        scores.append(model.pair_scores(g, u, v, torch.zeros_like(u), symmetric=symmetric))
    _sync(dev)
    secs = time.perf_counter() - t0
    model.train(was_training)
    n_pass = len(pairs) * (2 if symmetric else 1)
    out = link_auc(torch.cat(scores).cpu(), labels)
    out.update(queries=float(n_pass), seconds=secs, qps=n_pass / max(secs, 1e-9))
    return out


def link_auc(scores: Tensor, labels: Tensor) -> dict[str, float]:
    """``{"auroc", "ap"}`` from scores and 0/1 labels (via :mod:`gnn.eval.metrics`)."""
    return {"auroc": auroc(scores, labels), "ap": average_precision(scores, labels)}


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
