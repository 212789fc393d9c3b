"""faiss index over item vectors: exactness of flat/IVF, HNSW recall, loader in a subprocess."""

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.serve.ann import (
    AnnIndex,
    AnnSettings,
    build_index,
    lift_items,
    lift_queries,
    save_index,
)
from pipelines.serve.seam import topk_block


def random_table(n_items=400, n_users=60, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(n_items, dim)).astype(np.float32)
    items *= rng.uniform(0.2, 2.0, size=(n_items, 1)).astype(np.float32)  # varied norms
    users = rng.normal(size=(n_users, dim)).astype(np.float32)
    seen = [rng.choice(n_items, size=rng.integers(0, 30), replace=False) for _ in range(n_users)]
    return items, users, seen


def in_memory(items, settings):
    index, meta = build_index(items, settings)
    ann = AnnIndex(index, meta, items, np.arange(len(items)), [str(i) for i in range(len(items))])
    ann.set_search_params(ef_search=settings.hnsw_ef_search, nprobe=settings.ivf_probe)
    return ann


def test_lift_turns_inner_product_order_into_distance_order():
    items = np.array([[3.0, 4.0], [1.0, 0.0]], np.float32)  # norms 5 and 1: M = 5
    lifted = lift_items(items, 5.0)
    assert np.allclose(lifted, [[3, 4, 0], [1, 0, np.sqrt(24)]])
    q = lift_queries(np.array([[1.0, 1.0]], np.float32))
    # |q' - x'|^2 = |q|^2 + M^2 - 2 q.x : 2 + 25 - 14 = 13 and 2 + 25 - 2 = 25
    assert np.allclose(((q - lifted) ** 2).sum(1), [13.0, 25.0])


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_flat_and_full_probe_ivf_equal_brute_force(kind):
    items, users, seen = random_table()
    ann = in_memory(items, AnnSettings(kind=kind, ivf_lists=8, ivf_probe=8))  # probe every list
    pos, scores = ann.search(users, 10, exclude=seen)
    expected, exp_scores = topk_block(users, items, np.arange(len(items)), seen, 10)
    assert pos.tolist() == expected.tolist()
    assert np.allclose(scores, exp_scores, atol=1e-5)
    assert not any(set(p) & set(s) for p, s in zip(pos.tolist(), seen, strict=True))


def test_hnsw_recall_against_exact_top20():
    items, users, seen = random_table(n_items=3000, n_users=200, dim=16, seed=1)
    ann = in_memory(items, AnnSettings(kind="hnsw", hnsw_m=16, hnsw_ef_search=256))
    got, _ = ann.search(users, 20, exclude=seen)
    exact, _ = ann.exact(users, 20, exclude=seen)
    recall = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(got, exact, strict=True)])
    assert recall >= 0.95
    assert not any(set(p) & set(s) for p, s in zip(got.tolist(), seen, strict=True))


def test_ties_break_to_lower_position_and_short_rows():
    items = np.array([[1, 0], [1, 0], [0, 1]], np.float32)  # items 0 and 1 tie
    ann = in_memory(items, AnnSettings(kind="flat"))
    pos, scores = ann.search(np.array([[1, 0]], np.float32), 3, exclude=[np.array([2])])
    assert pos.tolist() == [[0, 1, -1]]
    assert scores[0, :2].tolist() == [1.0, 1.0] and scores[0, 2] == -np.inf


def write_export(root, items, users, seen, settings):
    """An export folder as jobs.export writes it, with non-dense original ids."""
    export = root / "export"
    (export / "embeddings").mkdir(parents=True)
    (export / "seen").mkdir()
    item_nodes = np.arange(len(items)) * 3 + 1  # dense ids need not be 0..n-1 for the loader
    rows = {
        "kind": ["item"] * len(items) + ["user"] * len(users),
        "node_id": list(item_nodes) + list(range(len(users))),
        "original_id": [f"i{n}" for n in item_nodes] + [f"u{u}" for u in range(len(users))],
        "vector": [r.tobytes() for r in items] + [r.tobytes() for r in users],
    }
    pq.write_table(pa.table(rows), export / "embeddings" / "part-0.parquet")
    su = np.concatenate([np.full(len(s), u) for u, s in enumerate(seen)])
    si = item_nodes[np.concatenate(seen)]
    pq.write_table(pa.table({"user": su, "item": si}), export / "seen" / "part-0.parquet")
    index, meta = build_index(items, settings)
    save_index(export / "ann", index, meta, item_nodes, [f"i{n}" for n in item_nodes])
    return item_nodes


@pytest.mark.parametrize("keep_seen", [False, True])
def test_loader_in_a_separate_process_answers_top_k(tmp_path, keep_seen):
    items, users, seen = random_table(n_items=120, n_users=10, dim=4, seed=2)
    item_nodes = write_export(tmp_path, items, users, seen, AnnSettings(kind="flat"))
    cmd = [sys.executable, "-m", "pipelines.serve.ann_query", "--run-dir", str(tmp_path)]
    cmd += ["--user", "u7", "--k", "5", "--json"] + (["--keep-seen"] if keep_seen else [])
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    answer = json.loads(done.stdout)
    mask = [] if keep_seen else seen[7]
    expected, exp_scores = topk_block(users[7:8], items, np.arange(120), [mask], 5)
    assert [x["item_id"] for x in answer["items"]] == [f"i{item_nodes[p]}" for p in expected[0]]
    assert [x["rank"] for x in answer["items"]] == [1, 2, 3, 4, 5]
    assert np.allclose([x["score"] for x in answer["items"]], exp_scores[0], atol=1e-5)


def test_loader_unknown_user_exits_2(tmp_path):
    items, users, seen = random_table(n_items=20, n_users=2, dim=4)
    write_export(tmp_path, items, users, seen, AnnSettings(kind="hnsw", hnsw_m=4))
    cmd = [sys.executable, "-m", "pipelines.serve.ann_query", "--run-dir", str(tmp_path)]
    done = subprocess.run(cmd + ["--user", "nobody"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown user" in done.stderr
    ann = AnnIndex.load(tmp_path / "export")
    assert ann.kind == "hnsw" and len(ann.recommend("u1", 3)) == 3
