"""Inference and evaluation of partitioned NBFNet, each query on its leaf + halo subgraph.

The subgraphs are those of :class:`gnn.data.kg_partition.PartitionedGraph`. A query
``(s, r, ?)`` or pair ``(s, t)`` runs on the subgraph of the leaf that owns ``s`` (NBFNet, Zhu et
al., NeurIPS 2021, Eq. 2-3, over that subgraph only); candidates outside it get ``-inf`` (the
lowest score; ties count against the model in :func:`gnn.eval.nbfnet.filtered_ranks` and one
half in AUROC). A pair query whose two nodes are both known can instead run on its *pair scope*,
the union of both nodes' subgraphs (:func:`pair_subgraph`). :func:`restriction_ceiling` measures
what the source-scope restriction alone costs a model.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from gnn.data.kg import RelationalGraph
from gnn.data.kg_partition import PartitionedGraph
from gnn.eval.nbfnet import AnswerFilter, filtered_ranks, link_auc
from gnn.models.nbfnet import NBFNet

__all__ = [
    "SCOPES",
    "answers_inside",
    "evaluate_kg_partitioned",
    "evaluate_link_auc_partitioned",
    "pair_scores_partitioned",
    "pair_subgraph",
    "restriction_ceiling",
    "score_all_partitioned",
]


def _groups(pg: PartitionedGraph, src: Tensor, batch_size: int) -> list[tuple[int, Tensor]]:
    """Positions of ``src`` grouped by leaf, in batches of at most ``batch_size``."""
    which = pg.node_leaf[src]
    return [
        (i, rows)
        for i in range(len(pg.leaves))
        for rows in (which == i).nonzero().squeeze(1).split(batch_size)
        if len(rows)
    ]


@torch.no_grad()
def score_all_partitioned(
    model: NBFNet, pg: PartitionedGraph, h_index: Tensor, r_index: Tensor, *, batch_size: int = 64
) -> Tensor:
    """Scores of every node as the tail of ``(h_b, r_b, ?)``, each on ``h_b``'s leaf + halo.

    Nodes outside the source's subgraph get ``-inf``.

    Shapes:
        h_index, r_index: ``[B]`` -> ``[B, N]``.
    """
    out = torch.full((len(h_index), pg.graph.num_nodes), float("-inf"), device=h_index.device)
    for i, rows in _groups(pg, h_index, batch_size):
        leaf = pg.leaves[i]
        scores = model.score_all(leaf.graph, leaf.to_local[h_index[rows]], r_index[rows])
        out[rows.unsqueeze(1), leaf.nodes.unsqueeze(0)] = scores
    return out


SCOPES = ("source", "pair")


def pair_subgraph(pg: PartitionedGraph, i: int, j: int) -> tuple[Tensor, RelationalGraph]:
    """The union of the subgraphs of leaves ``i`` and ``j`` (positions in ``pg.leaves``).

    Nodes and edges are those of either leaf's core + halo subgraph; built from the two
    leaves' own lists in ``O(n_i + n_j + e_i + e_j)`` (nothing of size ``N`` or ``E``).

    Returns:
        ``(nodes, graph)``: ``nodes`` ``[n]`` ascending global ids (local id = position) and
        the subgraph in local ids.
    """
    a, b = pg.leaves[i], pg.leaves[j]
    if i == j:
        return a.nodes, a.graph
    nodes = torch.unique(torch.cat([a.nodes, b.nodes]))
    edge_ids = torch.unique(torch.cat([a.edge_ids, b.edge_ids]))
    ends = pg.graph.edge_index[:, edge_ids]
    local = torch.searchsorted(nodes, ends.reshape(-1)).reshape(ends.shape)
    return nodes, RelationalGraph(
        local, pg.graph.edge_type[edge_ids], len(nodes), pg.graph.num_relations
    )


def _pair_scope_scores(
    model: NBFNet,
    pg: PartitionedGraph,
    h_index: Tensor,
    t_index: Tensor,
    r_index: Tensor,
    symmetric: bool,
    batch_size: int,
) -> Tensor:
    """Every pair on the union of its two leaves' subgraphs (see :func:`pair_subgraph`)."""
    out = torch.empty(len(h_index), device=h_index.device)
    lh, lt = pg.node_leaf[h_index], pg.node_leaf[t_index]
    lo, hi = torch.minimum(lh, lt), torch.maximum(lh, lt)
    key = lo * len(pg.leaves) + hi
    for k in torch.unique(key).tolist():
        rows = (key == k).nonzero().squeeze(1)
        nodes, sub = pair_subgraph(pg, k // len(pg.leaves), k % len(pg.leaves))
        for part in rows.split(batch_size):
            h = torch.searchsorted(nodes, h_index[part])
            t = torch.searchsorted(nodes, t_index[part])
            out[part] = model.pair_scores(sub, h, t, r_index[part], symmetric=symmetric)
    return out


@torch.no_grad()
def pair_scores_partitioned(
    model: NBFNet,
    pg: PartitionedGraph,
    h_index: Tensor,
    t_index: Tensor,
    r_index: Tensor,
    *,
    symmetric: bool = False,
    batch_size: int = 64,
    scope: str = "source",
) -> Tensor:
    """Scores of pairs ``(h_b, r_b, t_b)``, each on a subgraph chosen by ``scope``.

    ``scope="source"``: on ``h_b``'s leaf + halo; ``-inf`` when ``t_b`` lies outside it.
    ``scope="pair"``: on the union of ``h_b``'s and ``t_b``'s leaf + halo subgraphs
    (:func:`pair_subgraph`), so every pair gets a finite score. With ``symmetric`` the
    ``t -> h`` pass runs on the same subgraph.

    Shapes:
        h_index, t_index, r_index: ``[B]`` -> ``[B]``.
    """
    if scope not in SCOPES:
        raise ValueError(f"scope: must be one of {SCOPES} (got {scope!r})")
    if scope == "pair":
        return _pair_scope_scores(model, pg, h_index, t_index, r_index, symmetric, batch_size)
    out = torch.full((len(h_index),), float("-inf"), device=h_index.device)
    for i, rows in _groups(pg, h_index, batch_size):
        leaf = pg.leaves[i]
        h, t = leaf.to_local[h_index[rows]], leaf.to_local[t_index[rows]]
        ok = t >= 0
        if bool(ok.any()):
            out[rows[ok]] = model.pair_scores(
                leaf.graph, h[ok], t[ok], r_index[rows][ok], symmetric=symmetric
            )
    return out


def _warm(pg: PartitionedGraph) -> None:
    for leaf in pg.leaves:
        leaf.graph.index()


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


@torch.no_grad()
def evaluate_kg_partitioned(
    model: NBFNet,
    pg: PartitionedGraph,
    triples: Tensor,
    *,
    filter_triples: Tensor,
    batch_size: int = 32,
) -> dict[str, float]:
    """Filtered MRR / Hits@k of tail and head queries, each ranked on its source's leaf + halo.

    Like :func:`gnn.eval.nbfnet.evaluate_kg`; answers outside the subgraph score ``-inf`` (so
    they rank behind every non-answer). ``pg`` and ``model`` must be on the same device.

    Returns:
        ``{"mrr", "mr", "hits@1", "hits@3", "hits@10", "coverage", "queries", "seconds",
        "qps"}``; ``coverage`` is the share of answers inside their query's subgraph.
    """
    was_training = model.training
    model.eval()
    dev = pg.node_leaf.device
    num_rel = pg.graph.num_relations // 2
    filt = AnswerFilter(filter_triples.to(dev), pg.graph.num_nodes, num_rel)
    h, r, t = triples.to(dev).t()
    src, rel, ans = torch.cat([h, t]), torch.cat([r, r + num_rel]), torch.cat([t, h])
    _warm(pg)
    _sync(dev)
    t0 = time.perf_counter()
    ranks = torch.empty(len(src), dtype=torch.long, device=dev)
    inside = torch.empty(len(src), dtype=torch.bool, device=dev)
    for i, rows in _groups(pg, src, batch_size):
        leaf = pg.leaves[i]
        s = leaf.to_local[src[rows]]
        local = model.score_all(leaf.graph, s, rel[rows])
        scores = torch.full((len(rows), pg.graph.num_nodes), float("-inf"), device=dev)
        scores[:, leaf.nodes] = local
        ranks[rows] = filtered_ranks(
            scores, ans[rows], filt.mask(src[rows], rel[rows], pg.graph.num_nodes)
        )
        inside[rows] = leaf.to_local[ans[rows]] >= 0
    _sync(dev)
    secs = time.perf_counter() - t0
    model.train(was_training)
    rk = ranks.double()
    out = {"mrr": float((1.0 / rk).mean()), "mr": float(rk.mean())}
    for k in (1, 3, 10):
        out[f"hits@{k}"] = float((rk <= k).double().mean())
    out.update(
        coverage=float(inside.double().mean()),
        queries=float(len(rk)),
        seconds=secs,
        qps=len(rk) / max(secs, 1e-9),
    )
    return out


def answers_inside(pg: PartitionedGraph, triples: Tensor) -> Tensor:
    """``[2M]`` bool: does each query's answer lie in its source's leaf + halo?

    Queries in :func:`gnn.eval.nbfnet.kg_ranks` order: triple ``i``'s tail query ``(h, r, ?)``
    at ``2 i`` (answer ``t``, source ``h``), its head query at ``2 i + 1`` (answer ``h``,
    source ``t``).
    """
    dev = pg.node_leaf.device
    h, _, t = triples.to(dev).t()
    src = torch.stack([h, t], dim=1).reshape(-1)
    ans = torch.stack([t, h], dim=1).reshape(-1)
    inside = torch.zeros(len(src), dtype=torch.bool, device=dev)
    leaf_of = pg.node_leaf[src]
    for i, leaf in enumerate(pg.leaves):
        rows = leaf_of == i
        inside[rows] = leaf.to_local[ans[rows]] >= 0
    return inside.cpu()


def restriction_ceiling(pg: PartitionedGraph, triples: Tensor, ranks: Tensor) -> dict[str, float]:
    """How much of a model's full-graph MRR the source-scope restriction can keep.

    ``ranks`` are a model's filtered full-graph ranks of the tail and head queries of
    ``triples`` (:func:`gnn.eval.nbfnet.kg_ranks`). On leaf + halo, a query whose answer lies
    outside its source's subgraph ranks behind every candidate, so the most the restriction
    leaves such a model is

        MRR_ceiling = (1 / Q) * sum_{q : answer inside} 1 / rank_q

    (the excluded queries counted as misses; their true reciprocal rank is below 1 / (N - 1)).
    ``ceiling_loss = 1 - MRR_ceiling / MRR`` is the relative MRR loss of a partitioned model
    that ranked every covered query exactly as the full model does.

    Returns:
        ``{"ceiling_mrr", "ceiling_loss", "coverage"[, "covered_mrr"][, "uncovered_mrr"]}``:
        the last two (when such queries exist) are the model's MRR over the covered queries
        and over the others alone.
    """
    inside = answers_inside(pg, triples)[: len(ranks)]
    recip = 1.0 / ranks.double()
    mrr = float(recip.mean())
    ceiling = float((recip * inside).mean())
    out = {
        "ceiling_mrr": ceiling,
        "ceiling_loss": 1.0 - ceiling / mrr if mrr else 0.0,
        "coverage": float(inside.double().mean()),
    }
    if inside.any():
        out["covered_mrr"] = float(recip[inside].mean())
    if (~inside).any():
        out["uncovered_mrr"] = float(recip[~inside].mean())
    return out


@torch.no_grad()
def evaluate_link_auc_partitioned(
    model: NBFNet,
    pg: PartitionedGraph,
    pos: Tensor,
    neg: Tensor,
    *,
    batch_size: int = 64,
    symmetric: bool = True,
    scope: str = "source",
) -> dict[str, float]:
    """AUROC / AP of positive vs negative pairs, each pair scored on its first node's leaf +
    halo (``-inf`` when the second node lies outside; ``scope="source"``) or on the union of
    its two nodes' leaf + halo subgraphs (``scope="pair"``), as :func:`gnn.eval.nbfnet.
    evaluate_link_auc` does on the whole graph. The time includes building pair scopes.

    Returns:
        ``{"auroc", "ap", "coverage_pos", "coverage_neg", "queries", "seconds", "qps"}``
        (queries are Bellman-Ford passes; coverage = share of pairs inside the subgraph).
    """
    was_training = model.training
    model.eval()
    dev = pg.node_leaf.device
    pairs = torch.cat([pos, neg]).to(dev)
    labels = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))])
    _warm(pg)
    _sync(dev)
    t0 = time.perf_counter()
    u, v = pairs.t()
    scores = pair_scores_partitioned(
        model,
        pg,
        u,
        v,
        torch.zeros_like(u),
        symmetric=symmetric,
        batch_size=batch_size,
        scope=scope,
    )
    _sync(dev)
    secs = time.perf_counter() - t0
    model.train(was_training)
    inside = torch.isfinite(scores).cpu()
    n_pass = int(inside.sum()) * (2 if symmetric else 1)
    out = link_auc(scores.cpu(), labels)
    out.update(
        coverage_pos=float(inside[: len(pos)].double().mean()),
        coverage_neg=float(inside[len(pos) :].double().mean()),
        queries=float(len(pairs) * (2 if symmetric else 1)),
        seconds=secs,
        qps=len(pairs) * (2 if symmetric else 1) / max(secs, 1e-9),
        passes=float(n_pass),
    )
    return out
