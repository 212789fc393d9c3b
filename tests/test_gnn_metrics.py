"""Ranking metrics (Recall/NDCG@K with masking, deterministic top-K) and link-prediction metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gnn.eval.metrics import (
    RankingEvaluator,
    auroc,
    average_precision,
    hits_at,
    mrr,
    recall_ndcg_at_k,
    topk_items,
    topk_stable,
)

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.mark.parametrize("device", DEVICES)
def test_recall_ndcg_hand_computed_with_masking(device: str) -> None:
    # 1-d embeddings: user 0 scores items 0..4 as 5,4,3,2,1; user 1 as -5..-1; user 2 like user 0.
    user_emb = torch.tensor([[1.0], [-1.0], [1.0]], device=device)
    item_emb = torch.tensor([[5.0], [4.0], [3.0], [2.0], [1.0]], device=device)
    train_u, train_i = np.array([0, 2]), np.array([0, 1])  # user 0 has seen item 0
    test_u, test_i = np.array([0, 0, 1]), np.array([1, 4, 0])  # user 2 has no test items
    got = recall_ndcg_at_k(user_emb, item_emb, train_u, train_i, test_u, test_i, k=2)
    # user 0: item 0 masked -> top-2 = [1, 2]; hits [1, 0]; recall 1/2;
    #         NDCG = (1/log2 2) / (1/log2 2 + 1/log2 3).
    # user 1: top-2 = [4, 3]; test {0}; recall 0, NDCG 0. User 2 is not evaluated.
    ndcg_u0 = 1.0 / (1.0 + 1.0 / math.log2(3))
    assert set(got) == {"recall@2", "ndcg@2"}
    assert got["recall@2"] == pytest.approx((0.5 + 0.0) / 2)
    assert got["ndcg@2"] == pytest.approx((ndcg_u0 + 0.0) / 2)
    # Without the mask item 0 would take rank 1 and NDCG would differ.
    unmasked = recall_ndcg_at_k(user_emb, item_emb, [], [], test_u, test_i, k=2)
    assert unmasked["recall@2"] == pytest.approx((0.5 + 0.0) / 2)
    assert unmasked["ndcg@2"] == pytest.approx((1.0 / math.log2(3)) / (1 + 1 / math.log2(3)) / 2)
    # IDCG uses min(|test|, k): k = 1 -> user 0 top-1 = [1], hit, NDCG 1, recall 1/2.
    one = recall_ndcg_at_k(user_emb, item_emb, train_u, train_i, test_u, test_i, k=1)
    assert one == pytest.approx({"recall@1": 0.25, "ndcg@1": 0.5})


def brute_force(user_emb, item_emb, train, test, k):
    scores = (user_emb @ item_emb.T).double().numpy()
    recalls, ndcgs = [], []
    for u, items in test.items():
        s = scores[u].copy()
        s[list(train.get(u, ()))] = -np.inf
        order = sorted(range(len(s)), key=lambda j: (-s[j], j))[:k]
        hits = [1.0 if j in items else 0.0 for j in order]
        recalls.append(sum(hits) / len(items))
        dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
        idcg = sum(1 / math.log2(r + 2) for r in range(min(len(items), k)))
        ndcgs.append(dcg / idcg)
    return float(np.mean(recalls)), float(np.mean(ndcgs))


@pytest.mark.parametrize("batch_size", [1, 7, 4096])
def test_recall_ndcg_matches_brute_force(batch_size: int) -> None:
    gen = torch.Generator().manual_seed(0)
    user_emb = torch.randn(30, 4, generator=gen)
    item_emb = torch.randn(25, 4, generator=gen)
    item_emb[5] = item_emb[6]  # a tie
    rng = np.random.default_rng(1)
    train = {u: set(rng.choice(25, size=rng.integers(0, 8), replace=False)) for u in range(30)}
    test = {}
    for u in range(0, 30, 2):
        cand = [j for j in range(25) if j not in train[u]]
        test[u] = set(rng.choice(cand, size=rng.integers(1, 6), replace=False).tolist())
    tr = [(u, j) for u, s in train.items() for j in s]
    te = [(u, j) for u, s in test.items() for j in s]
    got = recall_ndcg_at_k(
        user_emb,
        item_emb,
        [a for a, _ in tr],
        [b for _, b in tr],
        [a for a, _ in te],
        [b for _, b in te],
        k=5,
        batch_size=batch_size,
    )
    recall, ndcg = brute_force(user_emb, item_emb, train, test, 5)
    assert got["recall@5"] == pytest.approx(recall, abs=1e-12)
    assert got["ndcg@5"] == pytest.approx(ndcg, abs=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_topk_stable_breaks_ties_by_lower_index(device: str) -> None:
    scores = torch.tensor(
        [
            [1.0, 3.0, 3.0, 3.0, 0.0],  # boundary tie: k=2 picks ids 1, 2
            [2.0, 2.0, 2.0, 2.0, 2.0],  # all equal
            [0.0, 5.0, -math.inf, 5.0, 1.0],  # tie inside the top-k
        ],
        device=device,
    )
    vals, idx = topk_stable(scores, 2)
    assert idx.tolist() == [[1, 2], [0, 1], [1, 3]]
    assert vals.tolist() == [[3.0, 3.0], [2.0, 2.0], [5.0, 5.0]]
    vals, idx = topk_stable(scores, 5)
    assert idx.tolist() == [[1, 2, 3, 0, 4], [0, 1, 2, 3, 4], [1, 3, 4, 0, 2]]
    with pytest.raises(ValueError):
        topk_stable(scores, 6)


@pytest.mark.parametrize("device", DEVICES)
def test_topk_items_masks_seen_and_orders_ties(device: str) -> None:
    user_emb = torch.tensor([[0.0], [1.0], [0.0]], device=device)
    item_emb = torch.tensor([[1.0], [3.0], [3.0], [2.0]], device=device)
    seen_u, seen_i = np.array([0, 1, 2, 2, 2]), np.array([0, 1, 0, 1, 2])
    scores, items = topk_items(user_emb, item_emb, seen_u, seen_i, k=2, batch_size=2)
    # user 0: all scores 0, item 0 seen -> [1, 2]; user 1: item 1 seen -> [2 (3.0), 3 (2.0)];
    # user 2: only item 3 unseen -> [3, then the lowest seen id 0 at -inf].
    assert items.tolist() == [[1, 2], [2, 3], [3, 0]]
    assert scores[:2].tolist() == [[0.0, 0.0], [3.0, 2.0]]
    assert scores[2, 0].item() == 0.0 and scores[2, 1].item() == -math.inf
    assert items.device == user_emb.device


def test_evaluator_validation_and_reuse() -> None:
    with pytest.raises(ValueError, match="test_items"):
        RankingEvaluator([0], [0], [0], [9], num_users=1, num_items=3, k=1)
    with pytest.raises(ValueError, match="k must be"):
        RankingEvaluator([0], [0], [0], [1], num_users=1, num_items=3, k=4)
    ev = RankingEvaluator([0], [0], [0, 0], [1, 1], num_users=1, num_items=3, k=1)
    assert int(ev.n_test[0]) == 1  # duplicate test interactions count once
    good = ev.evaluate(torch.tensor([[1.0]]), torch.tensor([[9.0], [2.0], [1.0]]))
    bad = ev.evaluate(torch.tensor([[1.0]]), torch.tensor([[9.0], [1.0], [2.0]]))
    assert good == {"recall@1": 1.0, "ndcg@1": 1.0}
    assert bad == {"recall@1": 0.0, "ndcg@1": 0.0}


def test_mrr_and_hits() -> None:
    ranks = torch.tensor([1, 2, 4, 10])
    assert mrr(ranks) == pytest.approx((1 + 1 / 2 + 1 / 4 + 1 / 10) / 4)
    assert hits_at(ranks, 1) == pytest.approx(0.25)
    assert hits_at(ranks, 4) == pytest.approx(0.75)
    assert hits_at(ranks, 10) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        mrr(torch.tensor([]))


def test_auroc_and_average_precision() -> None:
    s = torch.tensor([0.9, 0.8, 0.7, 0.6])
    y = torch.tensor([0, 1, 0, 1])
    # positive 0.8 beats negative 0.7 only: 1 of 4 pairs
    assert auroc(s, y) == pytest.approx(0.25)
    # thresholds 0.8 (P 1/2, R 1/2) and 0.6 (P 2/4, R 1): 0.5 * 0.5 + 0.5 * 0.5
    assert average_precision(s, y) == pytest.approx(0.5)
    # ties: (0.9 vs 0.5) 1, (0.9 vs 0.1) 1, (0.5 vs 0.5) 1/2, (0.5 vs 0.1) 1 -> 3.5 / 4
    tied = torch.tensor([0.9, 0.5, 0.5, 0.1])
    labels = torch.tensor([True, True, False, False])
    assert auroc(tied, labels) == pytest.approx(0.875)
    # thresholds 0.9 (P 1, R 1/2), 0.5 (P 2/3, R 1) -> 0.5 + 0.5 * 2/3
    assert average_precision(tied, labels) == pytest.approx(0.5 + 1 / 3)
    assert auroc(torch.tensor([2.0, 1.0]), torch.tensor([1, 0])) == 1.0
    with pytest.raises(ValueError, match="both"):
        auroc(s, torch.ones(4))
    with pytest.raises(ValueError, match="positive"):
        average_precision(s, torch.zeros(4))
