"""Partitioned NBFNet: one shared parameter set trained leaf by leaf.

NBFNet (Zhu et al., NeurIPS 2021, Eq. 2-3) runs ``T`` Bellman-Ford steps over the WHOLE graph
for every query, so one query costs ``O(T (E d + N d^2))``. Here the graph is cut into leaves
(a node -> leaf assignment, e.g. from :mod:`pipelines.partition.stage`;
:class:`gnn.data.kg_partition.PartitionedGraph`, re-exported here); each leaf's subgraph holds
the leaf's core and its ``h``-hop halo (hops counted over edges of either direction) and, by
default (``halo_edges="outward"``), the edges among them with an endpoint at most ``h - 1`` hops
from the core, which is what the Spark partitioner ships with a leaf (``"induced"``: every edge
among them). :mod:`pipelines.kg.seam` runs the same inference inside Spark tasks.
A query ``(s, r, ?)`` or pair ``(s, t)`` runs on the subgraph of the
leaf that owns ``s``; candidates outside that subgraph get ``-inf`` (the lowest score; ties count
against the model in :func:`gnn.eval.nbfnet.filtered_ranks` and one half in AUROC). A pair
query ``(s, t)`` whose two nodes are both known (link prediction) can instead run on its *pair
scope*: the union of the subgraphs of the leaves that own ``s`` and ``t`` (both endpoints then
always lie inside). That inference and its evaluation live in :mod:`gnn.eval.nbfnet_partitioned`.

Training keeps ONE parameter set. Every optimiser step draws its query batch from one leaf and
propagates on that leaf's subgraph (source and answer must both lie in it; the rest is dropped
and counted); the batches of all leaves are interleaved in a seeded random order, so every leaf
updates the same weights in proportion to its queries. Loss, negatives and easy-edge removal
are those of :mod:`gnn.engine.nbfnet` (self-adversarial BCE, strict negatives drawn from the
leaf's subgraph, ``remove_one_hop``), applied in the leaf's local node ids, in the loop of
:func:`gnn.engine.loop.run_loop` (``epochs``, ``max_steps``, budget read after every step).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from gnn.data.kg import RelationalGraph
from gnn.data.kg_partition import HALO_EDGES, Leaf, PartitionedGraph, halo_mask, leaf_queries
from gnn.data.sampling import NegativeSampler
from gnn.engine.device import torch_threads
from gnn.engine.loop import LoopLimits, LoopState, run_loop
from gnn.engine.nbfnet_batch import QueryStepper, flip_queries
from gnn.engine.nbfnet_config import (
    NBFNetResult,
    NBFNetTrainConfig,
    default_train_triples,
)
from gnn.models.nbfnet import NBFNet

__all__ = [
    "HALO_EDGES",
    "Leaf",
    "PartitionedGraph",
    "fit_partitioned",
    "halo_mask",
    "leaf_queries",
    "leaf_training_queries",
    "train_leaf_steps",
]


def fit_partitioned(
    pg: PartitionedGraph,
    cfg: NBFNetTrainConfig,
    *,
    device: torch.device | str = "cpu",
    log: Callable[[str], Any] = print,
    train_triples: Tensor | None = None,
    on_step: Callable[[int, NBFNet], Any] | None = None,
) -> NBFNetResult:
    """Train ONE NBFNet leaf by leaf: every step is a query batch of one leaf on its subgraph.

    Args:
        pg: the partitioned training graph (KG: inverse relations included).
        cfg: settings, as for :func:`gnn.engine.nbfnet.fit_nbfnet` (``epochs``,
            ``time_budget_seconds`` and ``max_steps`` bound the run).
        device: where to train.
        log: progress sink.
        train_triples: ``[M, 3]`` (h, r, t) in global ids; defaults to
            :func:`gnn.engine.nbfnet.default_train_triples` of ``pg.graph``.
        on_step: called as ``on_step(leaf_position, model)`` after each backward pass, before
            the optimiser step (gradients are readable there).

    Returns:
        :class:`gnn.engine.nbfnet.NBFNetResult` (``queries`` counts the queries trained on).
    """
    with torch_threads(cfg.threads):
        return _fit(pg, cfg, torch.device(device), log, train_triples, on_step)


def _fit(
    pg: PartitionedGraph,
    cfg: NBFNetTrainConfig,
    dev: torch.device,
    log: Callable[[str], Any],
    train_triples: Tensor | None,
    on_step: Callable[[int, NBFNet], Any] | None,
) -> NBFNetResult:
    cpu = pg if pg.graph.edge_index.device.type == "cpu" else pg.to("cpu")
    stepper, triples = QueryStepper.seeded(cpu.graph, cfg, dev, train_triples)
    model, gen, num_rel = stepper.model, stepper.gen, stepper.num_rel
    graphs = [leaf.graph.to(dev) for leaf in cpu.leaves]
    samplers = [NegativeSampler(leaf.graph, strict=cfg.strict_negative) for leaf in cpu.leaves]
    cores = [leaf.core.nonzero().squeeze(1) for leaf in cpu.leaves]
    tally = {"dropped": 0, "leaf": 0}

    def batches(state: LoopState) -> list[tuple[tuple[Tensor, Tensor, Tensor], int]]:
        """The epoch's leaf batches ``(queries, leaf)`` in a seeded random order."""
        flipped = flip_queries(triples, gen, task=cfg.task, inverse_offset=num_rel)
        per_leaf = leaf_queries(cpu, *flipped)
        tally["dropped"] += len(triples) - sum(len(q[0]) for q in per_leaf)
        split = [
            (i, b)
            for i, q in enumerate(per_leaf)
            for b in torch.randperm(len(q[0]), generator=gen).split(cfg.batch_size)
        ]
        order = torch.randperm(len(split), generator=gen).tolist()
        return [(tuple(x[split[j][1]] for x in per_leaf[split[j][0]]), split[j][0]) for j in order]

    def step(batch: tuple[tuple[Tensor, Tensor, Tensor], int]) -> float:
        queries, i = batch
        tally["leaf"] = i
        grad = None if on_step is None else (lambda: on_step(i, model))
        return stepper(graphs[i], samplers[i], queries, source_pool=cores[i], on_grad=grad)

    logger = stepper.logger(
        "nbfnet-part",
        log,
        mid=lambda: f" leaf {tally['leaf']}",
        tail=lambda s: f" (dropped {tally['dropped']} cross-leaf queries so far)",
    )
    run = run_loop(batches, step, stepper.limits(), on_step=logger)
    return stepper.result(run, [])


def leaf_training_queries(
    graph: RelationalGraph, core: Tensor, task: str
) -> tuple[Tensor, Tensor, Tensor]:
    """Every training query a leaf owns: ``(h, r, ?)`` for its triples with ``h`` in the core,
    ``(t, r^-1, ?)`` for those with ``t`` in the core (KG; ``link``: both directions of each
    undirected edge whose source is in the core).

    Shapes:
        graph: the leaf's subgraph in local ids (KG: inverse relations included); core ``[N]``
        bool -> ``(src, rel, ans)`` each ``[Q]``.
    """
    h, r, t = default_train_triples(graph, task).t()
    if task == "link":
        src, rel, ans = torch.cat([h, t]), torch.cat([r, r]), torch.cat([t, h])
    else:
        num_rel = graph.num_relations // 2
        src, rel, ans = torch.cat([h, t]), torch.cat([r, r + num_rel]), torch.cat([t, h])
    own = core[src]
    return src[own], rel[own], ans[own]


def train_leaf_steps(
    model: NBFNet,
    graph: RelationalGraph,
    core: Tensor,
    cfg: NBFNetTrainConfig,
    *,
    steps: int,
    seed: int,
    device: torch.device | str = "cpu",
) -> tuple[int, list[float]]:
    """``steps`` Adam steps of ``model`` on one leaf's queries (a fresh optimiser: one round of
    federated averaging, McMahan et al. 2017, whose server step is
    ``w <- sum_k n_k w_k / sum_k n_k`` over the leaves' results ``w_k``).

    Each step draws ``cfg.batch_size`` of the leaf's own queries
    (:func:`leaf_training_queries`) with a generator seeded by ``seed``, and takes the loss of
    :func:`gnn.engine.nbfnet.query_batch_loss` on the leaf's subgraph (negatives from the leaf).

    Returns:
        ``(queries the leaf owns, losses)``; ``model`` is updated in place. A leaf without
        queries is left unchanged.
    """
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    src, rel, ans = leaf_training_queries(graph, core, cfg.task)
    if len(src) == 0 or steps <= 0:
        return len(src), []
    sampler = NegativeSampler(graph, strict=cfg.strict_negative)
    num_rel = graph.num_relations // 2 if cfg.task == "kg" else 0
    g = graph.to(dev)
    pool = core.nonzero().squeeze(1)
    model.to(dev).train()
    stepper = QueryStepper(
        model, torch.optim.Adam(model.parameters(), lr=cfg.lr), cfg, num_rel, gen, dev
    )

    def step(_: int) -> float:
        b = torch.randint(len(src), (min(cfg.batch_size, len(src)),), generator=gen)
        return stepper(g, sampler, (src[b], rel[b], ans[b]), source_pool=pool)

    run_loop(lambda state: range(steps), step, LoopLimits(epochs=1))
    return len(src), stepper.losses
