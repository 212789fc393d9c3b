import numpy as np
import pytest

from pipelines.core.vector_bytes import bytes_to_matrix, vectors_to_bytes
from pipelines.serve.recommend import recommend_topk, similar_items, topk_block


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
        spark,
        udf,
        idf,
        sdf,
        k=k,
        dim=dim,
        block_size=block_size,
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
        (0, 1): (1, 2.0),
        (0, 2): (3, 1.0),
        (1, 1): (0, 2.0),
        (1, 2): (3, 2.0),  # tie at 2.0: the lower id first
        (2, 1): (3, 1.0),
        (2, 2): (0, 0.0),  # tie 0 vs 1 at 0.0
        (3, 1): (1, 2.0),
        (3, 2): (0, 1.0),  # tie 0 vs 2 at 1.0
    }


def test_recommend_and_export_jobs_round_trip_original_ids(spark, tmp_path):
    """ingest -> fixed vectors as aggregate output -> jobs.recommend + jobs.export -> ann_query."""
    import json
    import subprocess
    import sys

    from jobs import export, ingest
    from jobs import recommend as recommend_job
    from pipelines.core.config import load_config
    from pipelines.core.stages import run_stage
    from pipelines.registry import stage_key

    rng = np.random.default_rng(5)
    lines = []
    for u in range(8):  # original ids 100.. and 500.. (dense ids 0.. differ from them)
        items = rng.choice(12, size=4, replace=False)
        lines.append(f"{100 + u} " + " ".join(str(500 + 7 * i) for i in items))
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "test.txt").write_text("100 507\n101 514\n")
    run = tmp_path / "run"
    argv = [
        "--run-dir",
        str(run),
        "--set",
        f"ingest.train_path={tmp_path / 'train.txt'}",
        "--set",
        f"ingest.test_path={tmp_path / 'test.txt'}",
        "--set",
        "model.dim=3",
        "--set",
        "export.top_k=3",
        "--set",
        "export.similar_k=2",
        "--set",
        "export.ann_index=flat",
        "--set",
        "export.item_block_size=5",
        "--set",
        "spark.shuffle_partitions=4",
    ]  # as the shared test session
    assert ingest.main(argv) == 0
    dictionary = spark.read.parquet(str(run / "ingest" / "dictionary")).collect()
    orig = {(r["kind"], r["node_id"]): r["original_id"] for r in dictionary}
    n_users = sum(k == "user" for k, _ in orig)
    n_items = sum(k == "item" for k, _ in orig)
    users = rng.normal(size=(n_users, 3)).astype(np.float32)
    items = rng.normal(size=(n_items, 3)).astype(np.float32)
    rows = [("user", u, 0, bytearray(b)) for u, b in enumerate(vectors_to_bytes(users))]
    rows += [("item", i, 0, bytearray(b)) for i, b in enumerate(vectors_to_bytes(items))]
    emb = spark.createDataFrame(rows, "kind string, node_id long, leaf_id long, vector binary")
    # Fixed vectors stand in for a finished aggregate stage (global embeddings), keyed as one
    # made with this config (else the jobs would refuse it as made with another config).
    key = stage_key(load_config(None, argv[3::2]), run, "aggregate")
    run_stage(
        run,
        "aggregate",
        key.hash,
        lambda out: emb.write.parquet(str(out / "embeddings")) or {},
        record=key.record(),
    )
    assert recommend_job.main(argv) == 0
    assert export.main(argv) == 0

    train_pairs = {(ln.split()[0], i) for ln in lines for i in ln.split()[1:]}
    dense_item = {v: k[1] for k, v in orig.items() if k[0] == "item"}
    recs = spark.read.parquet(str(run / "recommend" / "recommendations")).collect()
    got = ranked_lists(recs, "user_id", "item_id")
    for u in range(n_users):
        uid = orig[("user", u)]
        seen = np.array([dense_item[i] for uu, i in train_pairs if uu == uid])
        exp = brute_force_topk(users[u : u + 1], items, np.arange(n_items), [seen], 3)[0]
        assert got[uid] == [orig[("item", i)] for i in exp]
        assert not {(uid, i) for i in got[uid]} & train_pairs
    sims = spark.read.parquet(str(run / "recommend" / "similar_items")).collect()
    got_sims = ranked_lists(sims, "item_id", "similar_id")
    exp_sims = brute_force_topk(items, items, np.arange(n_items), [[i] for i in range(n_items)], 2)
    assert got_sims == {
        orig[("item", i)]: [orig[("item", j)] for j in exp_sims[i]] for i in range(n_items)
    }
    # the exported index, queried from another process, agrees with the Spark top-K
    cmd = [
        sys.executable,
        "-m",
        "pipelines.serve.ann_query",
        "--run-dir",
        str(run),
        "--user",
        "103",
        "--k",
        "3",
        "--json",
    ]
    answer = json.loads(
        subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
    )
    assert [x["item_id"] for x in answer["items"]] == got["103"]
    # reruns are skipped (resumable stages)
    marker = (run / "recommend" / "_STAGE.json").read_text()
    assert recommend_job.main(argv) == 0
    assert (run / "recommend" / "_STAGE.json").read_text() == marker
