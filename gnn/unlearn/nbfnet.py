"""Distill-to-delete for NBFNet: edge deletion on homogeneous graphs, triple deletion on KGs.

Sinha, Mandal, Kankanhalli, "Distill to Delete: Unlearning in Graph Networks with Knowledge
Distillation", arXiv:2309.16173, 2023, applied to NBFNet (Zhu et al., NeurIPS 2021). The
objective ``L = alpha * L_r + (1 - alpha) * L_f`` and its terms are those of
:mod:`gnn.unlearn.d2dgn`; here the logits are NBFNet's MLP scores of ``(h, r, t)`` and the
embeddings its pair representations ``h_q(h, t)`` (final Bellman-Ford states).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from gnn.data.kg import RelationalGraph
from gnn.engine.device import torch_threads
from gnn.engine.nbfnet_batch import flip_queries
from gnn.models.nbfnet import NBFNet, remove_easy_edges
from gnn.unlearn.d2dgn import (
    LossTerms,
    UnlearnConfig,
    UnlearnResult,
    bernoulli_kl,
    d2d_objective,
    distill_steps,
    embedding_distance,
    log_distill,
    pick_rows,
)

__all__ = ["delete_triples", "nbfnet_unlearn_loss", "unlearn_nbfnet"]


def delete_triples(
    graph: RelationalGraph, triples: Tensor, *, inverse_offset: int
) -> RelationalGraph:
    """The graph without the given ``(h, r, t)`` edges and their inverses ``(t, r + off, h)``.

    For a homogeneous undirected graph (one relation, its own inverse) use
    ``inverse_offset=0``: both directions of ``(h, 0, t)`` go. For a KG built with
    :func:`gnn.data.kg.add_inverse_relations` use ``inverse_offset = num_relations // 2``.

    Shapes:
        triples: ``[D, 3]`` -> a graph with ``E - (edges matched)`` edges.
    """
    keep = remove_easy_edges(
        graph,
        triples[:, 0].to(graph.edge_index.device),
        triples[:, 2].to(graph.edge_index.device),
        r_index=triples[:, 1].to(graph.edge_index.device),
        inverse_offset=inverse_offset,
    )
    return RelationalGraph(
        graph.edge_index[:, keep].contiguous(),
        graph.edge_type[keep].clone(),
        graph.num_nodes,
        graph.num_relations,
    )


def _pair_states(
    model: NBFNet, graph: RelationalGraph, src: Tensor, rel: Tensor, cand: Tensor
) -> tuple[Tensor, Tensor]:
    """Logits ``[B, C]`` and pair representations ``[B, C, d]`` of candidates ``cand``."""
    states = model.bellman_ford(graph, src, rel)
    ar = torch.arange(src.shape[0], device=src.device).unsqueeze(1)
    return model.score_states(states, cand, rel), states[cand, ar]


def nbfnet_unlearn_loss(
    student: NBFNet,
    teacher: NBFNet,
    destroyer: NBFNet,
    graph: RelationalGraph,
    retained: tuple[Tensor, Tensor, Tensor],
    deleted: tuple[Tensor, Tensor, Tensor],
    *,
    alpha: float,
    beta: float,
    temperature: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """The D2DGN objective for one NBFNet batch (Zhu et al., 2021 for the model).

    Retained queries ``(src_b, rel_b)`` score candidates ``cand_b`` (the answer and sampled
    non-answers); ``L_r`` distils the teacher's logits and pair representations
    ``h_q(src_b, cand_bk)``. Deleted queries score only their deleted answer; ``L_f`` pulls
    that logit to the destroyer's. Retained and deleted queries share one student
    Bellman-Ford pass.

    Args:
        student, teacher, destroyer: Models of the same architecture.
        graph: The retained graph.
        retained: ``(src [B], rel [B], cand [B, C])``.
        deleted: ``(src [D], rel [D], answer [D])``.
        alpha, beta, temperature: See :class:`UnlearnConfig`.

    Returns:
        ``(total, L_r, L_f)``.
    """
    src, rel, cand = retained
    dsrc, drel, dans = deleted
    b = src.shape[0]
    dcand = dans.unsqueeze(1).expand(-1, cand.shape[1]) if b else dans.unsqueeze(1)
    all_logits, all_feat = _pair_states(
        student, graph, torch.cat([src, dsrc]), torch.cat([rel, drel]), torch.cat([cand, dcand])
    )
    with torch.no_grad():
        t_logits, t_feat = (
            _pair_states(teacher, graph, src, rel, cand) if b else (all_logits[:0], all_feat[:0])
        )
        d_logits = (
            destroyer(graph, dsrc, dans.unsqueeze(1), drel)[:, 0]
            if dsrc.numel()
            else all_logits[:0, 0]
        )
    l_r = bernoulli_kl(t_logits, all_logits[:b], temperature=temperature)
    l_r = l_r + beta * embedding_distance(all_feat[:b], t_feat)
    l_f = bernoulli_kl(d_logits, all_logits[b:, 0], temperature=temperature)
    return d2d_objective(l_r, l_f, alpha=alpha), l_r, l_f


def unlearn_nbfnet(
    teacher: NBFNet,
    graph: RelationalGraph,
    train_triples: Tensor,
    deleted: Tensor,
    cfg: UnlearnConfig,
    *,
    task: str = "link",
    device: torch.device | str = "cpu",
    make_model: Callable[[], NBFNet] | None = None,
    log: Callable[[str], Any] = print,
) -> UnlearnResult:
    """Distill-to-delete for a trained NBFNet: edge deletion (``link``) or triples (``kg``).

    The retained graph is ``graph`` without the deleted triples and their inverses. Each step
    draws ``batch_size`` retained triples as queries (a coin picks the direction) with
    ``num_negative`` uniform non-answer candidates, plus up to ``deleted_batch_size`` deleted
    triples, and takes one Adam step on :func:`nbfnet_unlearn_loss`.

    Args:
        teacher: The trained model (not modified).
        graph: The graph it was trained on (KG: with inverse relations).
        train_triples: ``[M, 3]`` (h, r, t) training triples (original relations).
        deleted: ``[M]`` bool mask over ``train_triples``, or ``[D]`` positions.
        cfg: Settings.
        task: ``link`` (homogeneous, relation 0 is its own inverse) or ``kg``.
        device: Where to run.
        make_model: Builds a fresh model of the teacher's architecture (the destroyer, seeded
            with ``cfg.seed + 1``) and the student (loaded from the teacher). Default:
            ``copy.deepcopy(teacher)`` with ``reset_parameters`` of every submodule.
        log: Receives a progress line.

    Returns:
        :class:`UnlearnResult` with ``model`` (the student) and ``graph`` (retained graph).
    """
    if task not in ("link", "kg"):
        raise ValueError(f"task must be 'link' or 'kg', got {task!r}")
    with torch_threads(cfg.threads):
        return _unlearn_nbfnet(
            teacher, graph, train_triples, deleted, cfg, task, torch.device(device), make_model, log
        )


def _fresh_copy(teacher: NBFNet, seed: int) -> NBFNet:
    model = copy.deepcopy(teacher)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in model.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    return model


def _unlearn_nbfnet(
    teacher: NBFNet,
    graph: RelationalGraph,
    train_triples: Tensor,
    deleted: Tensor,
    cfg: UnlearnConfig,
    task: str,
    dev: torch.device,
    make_model: Callable[[], NBFNet] | None,
    log: Callable[[str], Any],
) -> UnlearnResult:
    t0 = time.perf_counter()
    triples = train_triples.to(dev)
    mask = torch.zeros(len(triples), dtype=torch.bool, device=dev)
    mask[deleted.to(dev)] = True  # bool masks index themselves, positions set their entries
    off = 0 if task == "link" else graph.num_relations // 2
    g = delete_triples(graph.to(dev), triples[mask], inverse_offset=off)
    retained, gone = triples[~mask], triples[mask]
    if make_model is None:
        destroyer = _fresh_copy(teacher, cfg.seed + 1).to(dev)
        student = _fresh_copy(teacher, cfg.seed + 1).to(dev)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed + 1)
            destroyer = make_model().to(dev)
        student = make_model().to(dev)
    student.load_state_dict(teacher.state_dict())
    teacher_dev = copy.deepcopy(teacher).to(dev)
    for m in (teacher_dev, destroyer):
        m.eval()
        m.requires_grad_(False)
    student.train()
    opt = torch.optim.Adam(student.parameters(), lr=cfg.lr)
    gen = torch.Generator(device=dev).manual_seed(cfg.seed)
    n = g.num_nodes

    def step_loss() -> LossTerms:
        pick = pick_rows(len(retained), cfg.batch_size, gen, dev)
        src, rel, ans = flip_queries(retained[pick], gen, task=task, inverse_offset=off)
        neg = torch.randint(n, (len(pick), cfg.num_negative), generator=gen, device=dev)
        cand = torch.cat([ans.unsqueeze(1), neg], dim=1)
        dpick = pick_rows(len(gone), cfg.deleted_batch_size, gen, dev)
        dsrc, drel, dans = flip_queries(gone[dpick], gen, task=task, inverse_offset=off)
        return nbfnet_unlearn_loss(
            student,
            teacher_dev,
            destroyer,
            g,
            (src, rel, cand),
            (dsrc, drel, dans),
            alpha=cfg.alpha,
            beta=cfg.beta,
            temperature=cfg.temperature,
        )

    step, losses = distill_steps(cfg, opt, step_loss, t0)
    student.eval()
    seconds = time.perf_counter() - t0
    log_distill("nbfnet", step, seconds, losses, log)
    return UnlearnResult(seconds=seconds, steps=step, losses=losses, model=student, graph=g)
