import numpy as np
import pytest

from pipelines.bridge import bytes_to_matrix, vectors_to_bytes
from pipelines.recommend import recommend_topk, similar_items, topk_block


def brute_force_topk(users, items, item_ids, seen, k):
    out = []
    for u, s in zip(users, seen, strict=True):
        scores = {
            int(i): float(np.float32(u) @ np.float32(v))
            for i, v in zip(item_ids, items, strict=True)
        }
        cand = [(-sc, i) for i, sc in scores.items() if i not in set(np.asarray(s).tolist())]
        cand.sort()
        out.append([i for _, i in cand[:k]])
    return out


def vector_df(spark, ids, matrix, column):
    rows = [(int(i), bytearray(b)) for i, b in zip(ids, vectors_to_bytes(matrix), strict=True)]
    return spark.createDataFrame(rows, f"{column} long, vector binary")


def ranked_lists(rows, key, value):
    got = {}
    for row in sorted(rows, key=lambda r: (r[key], r["rank"])):
        got.setdefault(row[key], []).append(row[value])
    return got


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


@pytest.mark.parametrize(("block_size", "item_block_size"), [(2, 4), (1000, 1000)])
def test_recommend_topk_spark_equals_brute_force_with_ties(spark, block_size, item_block_size):
    rng = np.random.default_rng(1)
    n_users, n_items, dim, k = 12, 15, 3, 4
    users = rng.integers(-2, 3, size=(n_users, dim)).astype(np.float32)  # exact ties
    items = rng.integers(-2, 3, size=(n_items, dim)).astype(np.float32)
    seen_pairs = [
        (u, int(i)) for u in range(n_users) for i in rng.choice(n_items, 3, replace=False)
    ]
    udf = vector_df(spark, range(n_users), users, "user")
    idf = vector_df(spark, range(n_items), items, "item")
    sdf = spark.createDataFrame(seen_pairs, "user long, item long")
    recs = recommend_topk(
        spark, udf, idf, sdf, k=k, dim=dim, block_size=block_size,
        item_block_size=item_block_size,
    ).collect()
    got = ranked_lists(recs, "user", "item")
    seen = [np.array([i for uu, i in seen_pairs if uu == u]) for u in range(n_users)]
    expected = brute_force_topk(users, items, np.arange(n_items), seen, k)
    assert [got[u] for u in range(n_users)] == expected
    assert sorted({r["rank"] for r in recs}) == [1, 2, 3, 4]
    for r in recs:
        assert r["score"] == pytest.approx(float(users[r["user"]] @ items[r["item"]]))


def test_similar_items_equals_brute_force_self_excluded(spark):
    rng = np.random.default_rng(2)
    n_items, dim, k = 23, 3, 5
    items = rng.integers(-2, 3, size=(n_items, dim)).astype(np.float32)
    ids = np.arange(50, 50 + n_items)  # not 0-based: blocks are id // block size
    idf = vector_df(spark, ids, items, "item")
    rows = similar_items(idf, k=k, dim=dim, query_block_size=4, item_block_size=6).collect()
    got = ranked_lists(rows, "item", "similar")
    expected = brute_force_topk(items, items, ids, [np.array([i]) for i in ids], k)
    assert [got[int(i)] for i in ids] == expected
    assert all(r["item"] != r["similar"] for r in rows)


def test_similar_items_hand_computed(spark):
    # items 0..3 on axes: 0=(1,0), 1=(2,0), 2=(0,1), 3=(1,1)
    items = np.array([[1, 0], [2, 0], [0, 1], [1, 1]], dtype=np.float32)
    idf = vector_df(spark, range(4), items, "item")
    rows = similar_items(idf, k=2, dim=2, item_block_size=3).collect()
    got = {(r["item"], r["rank"]): (r["similar"], r["score"]) for r in rows}
    assert got == {
        (0, 1): (1, 2.0), (0, 2): (3, 1.0),
        (1, 1): (0, 2.0), (1, 2): (3, 2.0),  # tie at 2.0: the lower id first
        (2, 1): (3, 1.0), (2, 2): (0, 0.0),  # tie 0 vs 1 at 0.0
        (3, 1): (1, 2.0), (3, 2): (0, 1.0),  # tie 0 vs 2 at 1.0
    }
