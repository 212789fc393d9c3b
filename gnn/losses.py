"""Training losses: BPR and LightGCN's objective (recommendation), NBFNet's self-adversarial BCE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["bpr_loss", "embedding_l2", "lightgcn_bpr_loss", "nbfnet_loss"]


def bpr_loss(pos_scores: Tensor, neg_scores: Tensor) -> Tensor:
    """Bayesian Personalised Ranking loss, mean over the batch.

    Rendle, Freudenthaler, Gantner, Schmidt-Thieme. "BPR: Bayesian Personalized Ranking from
    Implicit Feedback", UAI 2009, Eq. (4) without the prior term:
    ``-mean(ln sigma(y_ui - y_uj)) = mean(softplus(y_uj - y_ui))``.

    Shapes:
        pos_scores, neg_scores: ``[B]`` -> scalar.
    """
    return F.softplus(neg_scores - pos_scores).mean()


def embedding_l2(*embeddings: Tensor, batch_size: int) -> Tensor:
    """``1/2 * sum ||e||^2`` over the given rows, divided by the batch size.

    This is the ``lambda ||E^(0)||^2`` term of LightGCN Eq. (15) restricted to the batch, with
    the scaling of the authors' code (``0.5 * (|e_u|^2 + |e_i|^2 + |e_j|^2) / B``).

    Shapes:
        each embedding: ``[B, d]`` -> scalar.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    total = torch.stack([e.pow(2).sum() for e in embeddings]).sum()
    return 0.5 * total / batch_size


def lightgcn_bpr_loss(
    user_final: Tensor,
    pos_final: Tensor,
    neg_final: Tensor,
    user_ego: Tensor,
    pos_ego: Tensor,
    neg_ego: Tensor,
    *,
    reg: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """LightGCN training objective, Eq. (15): BPR on final embeddings + L2 on ego embeddings.

    Args:
        user_final, pos_final, neg_final: Propagated embeddings of the batch's users, positive
            items and negative items; scores are inner products (Eq. 5).
        user_ego, pos_ego, neg_ego: The same rows of the layer-0 embeddings ``E^(0)``.
        reg: The weight ``lambda``.

    Returns:
        ``(total, bpr, l2)`` where ``total = bpr + reg * l2``.

    Shapes:
        all embeddings: ``[B, d]`` -> three scalars.
    """
    pos = (user_final * pos_final).sum(dim=1)
    neg = (user_final * neg_final).sum(dim=1)
    bpr = bpr_loss(pos, neg)
    l2 = embedding_l2(user_ego, pos_ego, neg_ego, batch_size=user_final.shape[0])
    return bpr + reg * l2, bpr, l2


def nbfnet_loss(logits: Tensor, temperature: float) -> Tensor:
    """Binary cross-entropy, positive in column 0, self-adversarial weights on negatives.

    NBFNet's loss (Zhu et al., NeurIPS 2021, Sec. 3.3, Eq. 7-8) with the self-adversarial
    negative weights of Sun et al., ICLR 2019, Eq. 5:
    ``L = -log s(x_+) - sum_i p_i log(1 - s(x_i))``, ``p = softmax(x_neg / T)`` (no gradient;
    uniform ``1 / K`` when ``T = 0``), normalised by ``1 + sum_i p_i`` as in the reference.

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
