import numpy as np
import pytest

from pipelines.bridge import bytes_to_matrix, vectors_to_bytes
from pipelines.recommend import recommend_topk, topk_block


def brute_force_topk(users, items, item_ids, seen, k):
    out = []
    for u, s in zip(users, seen, strict=True):
        scores = {
            int(i): float(np.float32(u) @ np.float32(v))
            for i, v in zip(item_ids, items, strict=True)
        }
        cand = [(-sc, i) for i, sc in scores.items() if i not in set(s.tolist())]
        cand.sort()
        out.append([i for _, i in cand[:k]])
    return out


def test_topk_block_matches_brute_force_with_masking_and_ties():
    rng = np.random.default_rng(0)
    users = rng.integers(-2, 3, size=(30, 4)).astype(np.float32)  # small ints: many exact ties
    items = rng.integers(-2, 3, size=(25, 4)).astype(np.float32)
    item_ids = np.arange(100, 125, dtype=np.int64)
    seen = [rng.choice(item_ids, size=rng.integers(0, 6), replace=False) for _ in range(30)]
    top_items, top_scores = topk_block(users, items, item_ids, seen, 7)
    expected = brute_force_topk(users, items, item_ids, seen, 7)
    assert top_items.tolist() == expected
    assert np.all(np.diff(top_scores, axis=1) <= 0)


def test_topk_block_user_who_saw_almost_everything():
    items = np.eye(3, dtype=np.float32)
    ids = np.array([0, 1, 2])
    top_items, _ = topk_block(np.ones((1, 3), np.float32), items, ids, [np.array([0, 2])], 2)
    assert top_items.tolist() == [[1, -1]]


def test_bytes_round_trip():
    m = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert np.array_equal(bytes_to_matrix(vectors_to_bytes(m), 4), m)


@pytest.mark.parametrize("block_size", [2, 1000])
def test_recommend_topk_spark_equals_brute_force(spark, block_size):
    rng = np.random.default_rng(1)
    n_users, n_items, dim, k = 12, 15, 3, 4
    users = rng.normal(size=(n_users, dim)).astype(np.float32)
    items = rng.normal(size=(n_items, dim)).astype(np.float32)
    seen_pairs = [
        (u, int(i)) for u in range(n_users) for i in rng.choice(n_items, 3, replace=False)
    ]
    udf = spark.createDataFrame(
        [(u, bytearray(b)) for u, b in enumerate(vectors_to_bytes(users))],
        "user long, vector binary",
    )
    idf = spark.createDataFrame(
        [(i, bytearray(b)) for i, b in enumerate(vectors_to_bytes(items))],
        "item long, vector binary",
    )
    sdf = spark.createDataFrame(seen_pairs, "user long, item long")
    recs = recommend_topk(spark, udf, idf, sdf, k=k, dim=dim, block_size=block_size)
    got = {}
    for row in recs.orderBy("user", "rank").collect():
        got.setdefault(row.user, []).append(row.item)
    seen = [np.array([i for uu, i in seen_pairs if uu == u]) for u in range(n_users)]
    expected = brute_force_topk(users, items, np.arange(n_items), seen, k)
    assert [got[u] for u in range(n_users)] == expected
