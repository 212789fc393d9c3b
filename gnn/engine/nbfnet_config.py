"""NBFNet settings, result and model construction (Zhu et al., NeurIPS 2021, App. B).

Shared by full-graph training (:mod:`gnn.engine.nbfnet`), leaf-by-leaf training
(:mod:`gnn.engine.nbfnet_partitioned`) and the Spark seam (:mod:`pipelines.kg.seam`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gnn.data.kg import RelationalGraph
from gnn.engine.settings import field_check
from gnn.engine.settings import help_field as _f
from gnn.models.nbfnet import NBFNet

__all__ = ["NBFNetResult", "NBFNetTrainConfig", "build_model", "default_train_triples"]


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
        require = field_check(self)

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
    """Outcome of :func:`gnn.engine.nbfnet.fit_nbfnet` and of partitioned training.

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


def default_train_triples(graph: RelationalGraph, task: str) -> Tensor:
    """Training triples implied by a graph: the first half of the edges for a KG built with
    :func:`gnn.data.kg.add_inverse_relations`; each undirected non-loop edge once for ``link``."""
    src, dst = graph.edge_index
    if task == "link":
        sel = src < dst
        return torch.stack([src[sel], graph.edge_type[sel], dst[sel]], dim=1)
    e = graph.num_edges // 2
    return torch.stack([src[:e], graph.edge_type[:e], dst[:e]], dim=1)
