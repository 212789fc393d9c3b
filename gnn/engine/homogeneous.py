"""LightGCN-style link prediction on a homogeneous (one node type, undirected) graph.

The bipartite model of :mod:`gnn.models.lightgcn` has one table for users and one for items;
here every node has one ego embedding and the propagation matrix is the symmetric-normalised
adjacency of the undirected simple graph, ``A_hat = D^-1/2 A D^-1/2`` (LightGCN, He et al.,
SIGIR 2020, Eq. 7, with ``A`` the node-node adjacency instead of ``[[0, R], [R^T, 0]]``).
Final embeddings are ``E = 1/(K+1) sum_k A_hat^k E^(0)`` (Eq. 4) via
:func:`gnn.layers.lg_conv.lightgcn_propagate`; the score of a pair is ``e_u . e_v`` (Eq. 5).

Training is BPR (Rendle et al., UAI 2009, Eq. 4) on triples ``(u, v, v')``: ``(u, v)`` runs
over both directions of every training edge once per epoch (shuffled), ``v'`` is uniform over
all nodes; the loss is LightGCN Eq. (15), :func:`gnn.losses.lightgcn_bpr_loss`, with Adam,
driven by :func:`gnn.engine.loop.run_loop` (an epoch the time budget cuts short does not count).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from gnn.engine.loop import LoopLimits, LoopState, run_loop
from gnn.engine.settings import field_check
from gnn.engine.settings import help_field as _f
from gnn.layers.lg_conv import (
    build_homogeneous_adj,
    lightgcn_propagate,
    symmetric_norm_adj,
    undirected_pairs,
)
from gnn.losses import lightgcn_bpr_loss

__all__ = [
    "HomogeneousConfig",
    "HomogeneousResult",
    "build_homogeneous_adj",
    "fit_homogeneous",
    "undirected_pairs",
]


@dataclass(frozen=True)
class HomogeneousConfig:
    """Settings of :func:`fit_homogeneous`; invalid values raise ``ValueError``."""

    dim: int = _f(64, "Embedding size.")
    layers: int = _f(2, "Propagation layers K.")
    epochs: int = _f(10, "Passes over both directions of every edge.")
    batch_size: int = _f(16384, "BPR triples per Adam step.")
    lr: float = _f(0.01, "Adam learning rate.")
    reg: float = _f(1e-4, "L2 weight on the batch's ego rows (Eq. 15).")
    seed: int = _f(0, "Seed of sampling (and of the init when none is given).")
    init_std: float = _f(0.1, "Std of the normal init.")
    time_budget_seconds: float = _f(0.0, "Stop after this long (0: no limit).")

    def __post_init__(self) -> None:
        checks = [
            (self.dim >= 1, "dim"),
            (self.layers >= 0, "layers"),
            (self.epochs >= 0, "epochs"),
            (self.batch_size >= 1, "batch_size"),
            (math.isfinite(self.lr) and self.lr > 0, "lr"),
            (self.reg >= 0, "reg"),
            (self.seed >= 0, "seed"),
            (self.init_std > 0, "init_std"),
            (self.time_budget_seconds >= 0, "time_budget_seconds"),
        ]
        require = field_check(self)
        for ok, name in checks:
            require(ok, name, "invalid value")


@dataclass
class HomogeneousResult:
    """Output of :func:`fit_homogeneous`: trained ego and final embeddings (CPU float32)."""

    ego: Tensor
    final: Tensor
    losses: list[float]
    epochs: int
    seconds: float


def fit_homogeneous(
    src: np.ndarray,
    dst: np.ndarray,
    num_nodes: int,
    cfg: HomogeneousConfig,
    *,
    init_embedding: Tensor | None = None,
    device: torch.device | str = "cpu",
) -> HomogeneousResult:
    """Train the homogeneous LightGCN with BPR on ``(u, v, random v')`` triples.

    Args:
        src, dst: Training edges (either direction; duplicates and self-loops ignored).
        num_nodes: Ids are in ``[0, num_nodes)``.
        cfg: Settings.
        init_embedding: Starting ego table (copied); default ``N(0, init_std^2)`` from the seed.
        device: Training device.

    Shapes:
        src, dst: ``[E]``; init_embedding: ``[N, dim]``; result ego/final: ``[N, dim]``.
    """
    dev = torch.device(device)
    started = time.perf_counter()
    lo, hi = undirected_pairs(src, dst)
    adj = symmetric_norm_adj(lo, hi, num_nodes, device=dev)
    heads = torch.from_numpy(np.concatenate([lo, hi])).to(dev)
    tails = torch.from_numpy(np.concatenate([hi, lo])).to(dev)
    gen = torch.Generator(device=dev).manual_seed(cfg.seed)
    ego = torch.nn.Parameter(_initial_ego(num_nodes, cfg, init_embedding).to(dev))
    opt = torch.optim.Adam([ego], lr=cfg.lr)
    n = heads.numel()

    def batches(state: LoopState) -> Iterator[Tensor]:
        order = torch.randperm(n, generator=gen, device=dev)
        return (order[start : start + cfg.batch_size] for start in range(0, n, cfg.batch_size))

    def step(idx: Tensor) -> float:
        u, v = heads[idx], tails[idx]
        neg = torch.randint(num_nodes, (idx.numel(),), generator=gen, device=dev)
        final = lightgcn_propagate(adj, ego, cfg.layers)
        # index_select, not final[u]: its backward is an index_add (~1.6x faster on CPU
        # than advanced indexing's accumulating index_put)
        rows = [t.index_select(0, i) for t in (final, ego) for i in (u, v, neg)]
        loss, _, _ = lightgcn_bpr_loss(*rows, reg=cfg.reg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    limits = LoopLimits(
        epochs=cfg.epochs if n else 0,
        budget_seconds=cfg.time_budget_seconds or None,
        spent=time.perf_counter() - started,  # the budget counts setup too
    )
    run = run_loop(batches, step, limits)
    with torch.no_grad():
        final = lightgcn_propagate(adj, ego.detach(), cfg.layers)
    return HomogeneousResult(
        ego=ego.detach().cpu(),
        final=final.cpu(),
        losses=[record.loss for record in run.records],
        epochs=run.epochs,
        seconds=time.perf_counter() - started,
    )


def _initial_ego(num_nodes: int, cfg: HomogeneousConfig, init: Tensor | None) -> Tensor:
    """``init`` (checked, copied) or ``N(0, init_std^2)`` from a CPU generator seeded by
    ``cfg.seed``.

    Shapes:
        init: ``[N, dim]`` -> ``[N, dim]`` float32 (CPU unless ``init`` is elsewhere).
    """
    if init is None:
        cpu_gen = torch.Generator().manual_seed(cfg.seed)
        return torch.randn(num_nodes, cfg.dim, generator=cpu_gen) * cfg.init_std
    if tuple(init.shape) != (num_nodes, cfg.dim):
        raise ValueError(
            f"init_embedding: expected shape {(num_nodes, cfg.dim)}, got {tuple(init.shape)}"
        )
    return init.detach().to(torch.float32).clone()
