"""Unlearning evaluation: deletion requests and deleted-edge AUROC against random non-edges.

The forgetting measure of graph unlearning (GNNDelete, Cheng et al., ICLR 2023; D2DGN, Sinha
et al., 2023): how well a model still separates the deleted edges from non-edges. Each deleted
edge ``(u, v)`` is compared with ``num_negative`` non-edges ``(u, j)`` that share its source,
``j`` uniform over the nodes that are not known neighbours of ``u``; AUROC is the
Mann-Whitney statistic of :func:`gnn.eval.metrics.auroc`. A model that never saw the deleted edges
scores them like unseen true edges (AUROC of held-out links); a model that forgot a deleted
*user* entirely scores its edges like noise (AUROC near 0.5).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from gnn.data.kg import RelationalGraph
from gnn.data.sampling import BPRSampler, NegativeSampler
from gnn.eval.metrics import auroc
from gnn.models.nbfnet import NBFNet

__all__ = [
    "deleted_auroc_lightgcn",
    "deleted_auroc_nbfnet",
    "sample_deleted_edges",
    "sample_deleted_users",
]


def sample_deleted_edges(num_edges: int, fraction: float, *, seed: int = 0) -> np.ndarray:
    """``round(fraction * num_edges)`` distinct edge positions (at least 1), sorted.

    Shapes:
        -> ``[D]`` int64.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    count = max(1, round(fraction * num_edges))
    perm = torch.randperm(num_edges, generator=torch.Generator().manual_seed(seed))
    return np.sort(perm[:count].numpy())


def sample_deleted_users(users: np.ndarray, fraction: float, *, seed: int = 0) -> np.ndarray:
    """``round(fraction * #active users)`` distinct users with >= 1 interaction (at least 1).

    Shapes:
        users: ``[E]`` -> ``[Q]`` int64, sorted.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    active = np.unique(np.asarray(users, dtype=np.int64))
    count = max(1, round(fraction * len(active)))
    perm = torch.randperm(len(active), generator=torch.Generator().manual_seed(seed))
    return np.sort(active[perm[:count].numpy()])


def deleted_auroc_lightgcn(
    user_emb: Tensor,
    item_emb: Tensor,
    deleted_users: np.ndarray,
    deleted_items: np.ndarray,
    known_users: np.ndarray,
    known_items: np.ndarray,
    *,
    num_negative: int = 5,
    seed: int = 0,
) -> float:
    """AUROC of deleted interactions vs non-interactions of the same users (LightGCN Eq. 5).

    Args:
        user_emb, item_emb: Final embeddings; scores are inner products.
        deleted_users, deleted_items: The deleted interactions.
        known_users, known_items: Every known interaction (train and test, deleted included):
            non-edges are drawn outside them, uniformly, by :class:`gnn.data.sampling.BPRSampler`.
        num_negative: Non-edges per deleted edge.
        seed: Sampling seed.

    Shapes:
        user_emb: ``[U, d]``; item_emb: ``[I, d]``; deleted: ``[D]``; known: ``[E]`` -> float.
    """
    dev = user_emb.device
    du = torch.as_tensor(np.asarray(deleted_users, dtype=np.int64), device=dev)
    di = torch.as_tensor(np.asarray(deleted_items, dtype=np.int64), device=dev)
    sampler = BPRSampler(known_users, known_items, item_emb.shape[0], device=dev)
    gen = torch.Generator(device=dev).manual_seed(seed)
    nu = du.repeat(num_negative)
    nj = sampler.negatives(nu, generator=gen)
    pos = (user_emb[du] * item_emb[di]).sum(dim=1)
    neg = (user_emb[nu] * item_emb[nj]).sum(dim=1)
    labels = torch.cat([torch.ones_like(pos), torch.zeros_like(neg)])
    return auroc(torch.cat([pos, neg]).cpu(), labels.cpu())


@torch.no_grad()
def deleted_auroc_nbfnet(
    model: NBFNet,
    graph: RelationalGraph,
    deleted: Tensor,
    known: RelationalGraph,
    *,
    num_negative: int = 5,
    seed: int = 0,
    batch_size: int = 64,
) -> float:
    """AUROC of deleted triples ``(h, r, t)`` vs ``(h, r, j)`` with ``j`` not a known answer.

    One Bellman-Ford pass from each ``h`` on ``graph`` (the graph the model runs on) scores the
    deleted answer and its non-edges together (NBFNet Eq. 1-3 and its MLP scorer).

    Args:
        model: The model to score with.
        graph: The graph it propagates on (retained graph for unlearned / retrained models).
        deleted: ``[D, 3]`` deleted triples (for homogeneous graphs ``r = 0``).
        known: Every known edge (train, valid, test): non-edges avoid them (strict sampling of
            :class:`gnn.data.sampling.NegativeSampler`).
        num_negative: Non-edges per deleted triple.
        seed: Sampling seed.
        batch_size: Queries per pass.

    Shapes:
        deleted: ``[D, 3]`` -> float.
    """
    was_training = model.training
    model.eval()
    dev = graph.edge_index.device
    h, r, t = deleted.cpu().t()
    neg = NegativeSampler(known, strict=True).sample(
        h, r, t, num_negative, generator=torch.Generator().manual_seed(seed)
    )
    cand = torch.cat([t.unsqueeze(1), neg], dim=1)
    scores = []
    for a in range(0, len(h), batch_size):
        sl = slice(a, a + batch_size)
        scores.append(model(graph, h[sl].to(dev), cand[sl].to(dev), r[sl].to(dev)).cpu())
    model.train(was_training)
    s = torch.cat(scores)
    labels = torch.zeros_like(s)
    labels[:, 0] = 1.0
    return auroc(s.reshape(-1), labels.reshape(-1))
