"""Ranking and classification metrics, batched on the device.

Top-K recommendation (LightGCN / NGCF protocol, He et al. SIGIR 2020, Sec. 4.1): every user
with at least one test item scores *all* items, the user's training items are masked out, and
the top ``K`` are compared with the test items::

    Recall@K = |top-K ∩ test(u)| / |test(u)|
    NDCG@K   = sum_{r<K} [top_r ∈ test(u)] / log2(r + 2)  /  sum_{r<min(|test(u)|, K)} 1/log2(r + 2)

both averaged over those users. Ties in the score are broken by the lower item id, so results
do not depend on the kernel that ran ``topk``.

Link prediction helpers (used by NBFNet): MRR and Hits@K over 1-based ranks, AUROC (rank
statistic with average ranks for ties) and average precision (step-wise, as scikit-learn's
``average_precision_score``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "RankingEvaluator",
    "auroc",
    "average_precision",
    "hits_at",
    "mrr",
    "recall_ndcg_at_k",
    "topk_items",
    "topk_stable",
]


def _long(values: np.ndarray | Tensor, device: torch.device) -> Tensor:
    if isinstance(values, Tensor):
        return values.reshape(-1).to(device=device, dtype=torch.long)
    return torch.as_tensor(np.asarray(values, dtype=np.int64).reshape(-1), device=device)


def topk_stable(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Row-wise top-``k`` ordered by score descending, ties by lower column index first.

    ``torch.topk`` is used for the bulk of the work; only rows whose ``k``-th and ``k+1``-th
    values tie (the chosen set is then ambiguous) are resolved with a full pass.

    Args:
        scores: Score matrix (``-inf`` marks masked entries; they rank last, by index).
        k: How many per row, ``1 <= k <= scores.shape[1]``.

    Returns:
        ``(values, indices)``.

    Shapes:
        scores: ``[B, N]`` -> ``([B, k], [B, k])``.
    """
    n = scores.shape[1]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}], got {k}")
    m = min(k + 1, n)
    vals, idx = torch.topk(scores, m, dim=1, sorted=True)
    if m > k:
        ambiguous = (vals[:, k - 1] == vals[:, k]).nonzero().squeeze(1)
        vals, idx = vals[:, :k].contiguous(), idx[:, :k].contiguous()
        if ambiguous.numel():
            sub = scores[ambiguous]
            kth = vals[ambiguous, k - 1 : k]
            greater = sub > kth
            equal = sub == kth
            need = k - greater.sum(dim=1, keepdim=True)
            take = greater | (equal & (equal.cumsum(dim=1) <= need))
            chosen = take.nonzero()[:, 1].view(-1, k)  # ascending column ids, k per row
            idx[ambiguous] = chosen
            vals[ambiguous] = sub.gather(1, chosen)
    # Order: by value descending, equal values by ascending index (stable sort over sorted ids).
    idx, perm = idx.sort(dim=1)
    vals = vals.gather(1, perm)
    vals, perm = vals.sort(dim=1, descending=True, stable=True)
    return vals, idx.gather(1, perm)


class _RowIndex:
    """CSR view of ``(row, col)`` pairs for gathering the columns of a batch of rows."""

    def __init__(self, rows: Tensor, cols: Tensor, num_rows: int) -> None:
        order = torch.argsort(rows * (int(cols.max()) + 1 if cols.numel() else 1) + cols)
        self.cols = cols[order]
        counts = torch.bincount(rows, minlength=num_rows)
        self.indptr = torch.zeros(num_rows + 1, dtype=torch.long, device=rows.device)
        self.indptr[1:] = torch.cumsum(counts, 0)

    def counts(self, batch_rows: Tensor) -> Tensor:
        return self.indptr[batch_rows + 1] - self.indptr[batch_rows]

    def gather(self, batch_rows: Tensor) -> tuple[Tensor, Tensor]:
        """``(position in batch, column)`` of every stored pair whose row is in the batch."""
        counts = self.counts(batch_rows)
        total = int(counts.sum())
        pos = torch.repeat_interleave(
            torch.arange(batch_rows.numel(), device=counts.device), counts
        )
        starts = self.indptr[batch_rows] - (torch.cumsum(counts, 0) - counts)
        return pos, self.cols[starts[pos] + torch.arange(total, device=counts.device)]


class RankingEvaluator:
    """Full-ranking Recall@K / NDCG@K with training items masked (the LightGCN protocol).

    Builds the index structures once, so calling :meth:`evaluate` every few epochs is cheap.

    Args:
        train_users, train_items: Training interactions (masked out of the ranking).
        test_users, test_items: Held-out interactions; users with none are not evaluated.
        num_users, num_items: Id ranges.
        k: Cut-off.
        batch_size: Users scored per batch (``batch_size x num_items`` floats in memory).
        device: Where the scoring runs.
    """

    def __init__(
        self,
        train_users: np.ndarray | Tensor,
        train_items: np.ndarray | Tensor,
        test_users: np.ndarray | Tensor,
        test_items: np.ndarray | Tensor,
        *,
        num_users: int,
        num_items: int,
        k: int = 20,
        batch_size: int = 4096,
        device: torch.device | str = "cpu",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 1 <= k <= num_items:
            raise ValueError(f"k must be in [1, num_items={num_items}], got {k}")
        dev = torch.device(device)
        tr_u, tr_i = _long(train_users, dev), _long(train_items, dev)
        te_u, te_i = _long(test_users, dev), _long(test_items, dev)
        for name, ids, bound in (
            ("train_users", tr_u, num_users),
            ("test_users", te_u, num_users),
            ("train_items", tr_i, num_items),
            ("test_items", te_i, num_items),
        ):
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= bound):
                raise ValueError(f"{name}: id out of range [0, {bound})")
        if tr_u.shape != tr_i.shape or te_u.shape != te_i.shape:
            raise ValueError("user and item arrays must have equal lengths")
        self.device, self.k, self.batch_size = dev, k, batch_size
        self.num_users, self.num_items = num_users, num_items
        self._train = _RowIndex(tr_u, tr_i, num_users)
        self._test_keys = torch.unique(te_u * num_items + te_i)  # sorted, duplicates dropped
        test_u = self._test_keys // num_items
        self.n_test = torch.bincount(test_u, minlength=num_users)
        self.eval_users = torch.nonzero(self.n_test).squeeze(1)
        disc = 1.0 / torch.log2(torch.arange(k, device=dev, dtype=torch.float64) + 2.0)
        self._disc = disc
        self._idcg = torch.cumsum(disc, 0)

    def evaluate(self, user_emb: Tensor, item_emb: Tensor) -> dict[str, float]:
        """Recall@K and NDCG@K averaged over users with at least one test item.

        Shapes:
            user_emb: ``[num_users, d]``; item_emb: ``[num_items, d]``.
        """
        if user_emb.shape[0] != self.num_users or item_emb.shape[0] != self.num_items:
            raise ValueError(
                f"embeddings cover {user_emb.shape[0]} users / {item_emb.shape[0]} items, "
                f"expected {self.num_users} / {self.num_items}"
            )
        k = self.k
        n_eval = int(self.eval_users.numel())
        if n_eval == 0:
            return {f"recall@{k}": 0.0, f"ndcg@{k}": 0.0}
        items = item_emb.detach().to(self.device, torch.float32)
        users = user_emb.detach().to(self.device, torch.float32)
        recall_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        ndcg_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        for start in range(0, n_eval, self.batch_size):
            batch = self.eval_users[start : start + self.batch_size]
            _, top = self.topk(users[batch], items, batch)
            keys = batch[:, None] * self.num_items + top
            pos = torch.searchsorted(self._test_keys, keys).clamp_(max=self._test_keys.numel() - 1)
            hits = (self._test_keys[pos] == keys).to(torch.float64)
            n_test = self.n_test[batch]
            recall_sum += (hits.sum(dim=1) / n_test).sum()
            idcg = self._idcg[n_test.clamp(max=k) - 1]
            ndcg_sum += ((hits @ self._disc) / idcg).sum()
        return {f"recall@{k}": float(recall_sum) / n_eval, f"ndcg@{k}": float(ndcg_sum) / n_eval}

    def topk(self, user_rows: Tensor, items: Tensor, batch: Tensor) -> tuple[Tensor, Tensor]:
        """Top-K unseen items for one batch of users (training items masked).

        Shapes:
            user_rows: ``[B, d]``; items: ``[I, d]``; batch: ``[B]`` user ids
            -> ``([B, K], [B, K])``.
        """
        scores = user_rows @ items.T
        pos, cols = self._train.gather(batch)
        scores[pos, cols] = -math.inf
        return topk_stable(scores, self.k)


def recall_ndcg_at_k(
    user_emb: Tensor,
    item_emb: Tensor,
    train_users: np.ndarray | Tensor,
    train_items: np.ndarray | Tensor,
    test_users: np.ndarray | Tensor,
    test_items: np.ndarray | Tensor,
    *,
    k: int = 20,
    batch_size: int = 4096,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Recall@K and NDCG@K by full ranking with training items masked (LightGCN protocol).

    Args:
        user_emb, item_emb: Final embeddings; scores are inner products.
        train_users, train_items: Training interactions, masked from the ranking.
        test_users, test_items: Held-out interactions.
        k: Cut-off; the keys of the result use it (``recall@20``).
        batch_size: Users scored at once.
        device: Where to score (default: the device of ``user_emb``).

    Returns:
        ``{"recall@K": ..., "ndcg@K": ...}`` averaged over users with >= 1 test item.

    Shapes:
        user_emb: ``[U, d]``; item_emb: ``[I, d]``; interaction arrays ``[E]``.
    """
    evaluator = RankingEvaluator(
        train_users,
        train_items,
        test_users,
        test_items,
        num_users=user_emb.shape[0],
        num_items=item_emb.shape[0],
        k=k,
        batch_size=batch_size,
        device=device if device is not None else user_emb.device,
    )
    return evaluator.evaluate(user_emb, item_emb)


def topk_items(
    user_emb: Tensor,
    item_emb: Tensor,
    seen_users: np.ndarray | Tensor,
    seen_items: np.ndarray | Tensor,
    *,
    k: int,
    batch_size: int = 4096,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Top-``k`` items for every user, seen items excluded, ties to the lower item id.

    A user with fewer than ``k`` unseen items gets ``-inf`` scores in the tail (seen items, by
    ascending id).

    Args:
        user_emb, item_emb: Embeddings; scores are inner products.
        seen_users, seen_items: Interactions to mask.
        k: Items per user, ``1 <= k <= I``.
        batch_size: Users scored at once.
        device: Where to score (default: the device of ``user_emb``).

    Returns:
        ``(scores, items)`` on the device of ``user_emb``.

    Shapes:
        user_emb: ``[U, d]``; item_emb: ``[I, d]`` -> ``([U, k], [U, k])``.
    """
    num_users, num_items = user_emb.shape[0], item_emb.shape[0]
    dev = torch.device(device) if device is not None else user_emb.device
    empty = torch.zeros(0, dtype=torch.long)
    ranker = RankingEvaluator(
        seen_users,
        seen_items,
        empty,
        empty,
        num_users=num_users,
        num_items=num_items,
        k=k,
        batch_size=batch_size,
        device=dev,
    )
    users = user_emb.detach().to(dev, torch.float32)
    items = item_emb.detach().to(dev, torch.float32)
    out_scores, out_items = [], []
    for start in range(0, num_users, batch_size):
        batch = torch.arange(start, min(start + batch_size, num_users), device=dev)
        vals, idx = ranker.topk(users[batch], items, batch)
        out_scores.append(vals)
        out_items.append(idx)
    if not out_scores:
        return (
            torch.zeros(0, k, dtype=torch.float32, device=user_emb.device),
            torch.zeros(0, k, dtype=torch.long, device=user_emb.device),
        )
    return torch.cat(out_scores).to(user_emb.device), torch.cat(out_items).to(user_emb.device)


def mrr(ranks: Tensor) -> float:
    """Mean reciprocal rank of 1-based ranks.

    Shapes:
        ranks: ``[Q]`` -> float.
    """
    if ranks.numel() == 0:
        raise ValueError("mrr of an empty tensor")
    return float((1.0 / ranks.to(torch.float64)).mean())


def hits_at(ranks: Tensor, k: int) -> float:
    """Fraction of 1-based ranks ``<= k``.

    Shapes:
        ranks: ``[Q]`` -> float.
    """
    if ranks.numel() == 0:
        raise ValueError("hits_at of an empty tensor")
    return float((ranks <= k).to(torch.float64).mean())


def _binary(scores: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, int, int]:
    s = scores.reshape(-1).to(torch.float64)
    y = labels.reshape(-1).to(s.device).bool()
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in size: {s.numel()} != {y.numel()}")
    n_pos = int(y.sum())
    return s, y, n_pos, int(y.numel()) - n_pos


def auroc(scores: Tensor, labels: Tensor) -> float:
    """Area under the ROC curve (Mann-Whitney U; tied scores count one half).

    Shapes:
        scores, labels: ``[N]`` (labels 0/1 or bool) -> float.
    """
    s, y, n_pos, n_neg = _binary(scores, labels)
    if n_pos == 0 or n_neg == 0:
        raise ValueError("auroc needs both positive and negative labels")
    sorted_s, order = torch.sort(s)
    _, inverse, counts = torch.unique_consecutive(sorted_s, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).to(torch.float64)
    avg_rank = ends - (counts.to(torch.float64) - 1.0) / 2.0  # 1-based mean rank of each group
    pos_rank_sum = avg_rank[inverse][y[order]].sum()
    return float((pos_rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(scores: Tensor, labels: Tensor) -> float:
    """Average precision ``sum_n (R_n - R_{n-1}) P_n`` over distinct score thresholds.

    Shapes:
        scores, labels: ``[N]`` (labels 0/1 or bool) -> float.
    """
    s, y, n_pos, _ = _binary(scores, labels)
    if n_pos == 0:
        raise ValueError("average_precision needs at least one positive label")
    sorted_s, order = torch.sort(s, descending=True)
    tps_all = torch.cumsum(y[order].to(torch.float64), 0)
    _, counts = torch.unique_consecutive(sorted_s, return_counts=True)
    last = torch.cumsum(counts, 0) - 1  # last position of each tied group
    tps = tps_all[last]
    precision = tps / (last + 1).to(torch.float64)
    recall = tps / n_pos
    prev = torch.cat([recall.new_zeros(1), recall[:-1]])
    return float(((recall - prev) * precision).sum())
