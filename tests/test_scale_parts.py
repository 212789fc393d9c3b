"""Pieces of bench/scale.py: homogeneous LightGCN, its Spark seam and the random-walk peer."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from gnn.engine.homogeneous import HomogeneousConfig, fit_homogeneous
from gnn.eval.metrics import auroc
from gnn.layers.lg_conv import build_homogeneous_adj, undirected_pairs
from pipelines.core.vector_bytes import bytes_to_matrix, vectors_to_bytes
from pipelines.train.seam import LEAF_LOG, LeafTrainSettings
from pipelines.train.seeded_init import KIND_CODES, seeded_normal

R = 1 / math.sqrt(2)


def test_undirected_pairs_drop_loops_duplicates_and_direction():
    lo, hi = undirected_pairs(np.array([3, 1, 0, 2, 2]), np.array([1, 3, 1, 2, 0]))
    assert lo.tolist() == [0, 0, 1]
    assert hi.tolist() == [1, 2, 3]
    big = 1 << 40  # ids past the 32-bit pair key take the row-sort path: same answer
    lo, hi = undirected_pairs(np.array([3, 1, 0, 2, 2]) + big, np.array([1, 3, 1, 2, 0]) + big)
    assert (lo - big).tolist() == [0, 0, 1]
    assert (hi - big).tolist() == [1, 2, 3]
    lo, hi = undirected_pairs(np.array([-1, 5]), np.array([4, -1]))
    assert lo.tolist() == [-1, -1] and hi.tolist() == [4, 5]


def test_build_homogeneous_adj_values():
    adj = build_homogeneous_adj(np.array([0, 1, 1, 2]), np.array([1, 0, 2, 2]), 4)
    expected = [[0, R, 0, 0], [R, 0, R, 0], [0, R, 0, 0], [0, 0, 0, 0]]
    assert torch.allclose(adj.to_dense(), torch.tensor(expected))
    with pytest.raises(ValueError, match="out of range"):
        build_homogeneous_adj(np.array([0]), np.array([4]), 4)


def _two_cliques() -> tuple[np.ndarray, np.ndarray]:
    pairs = [(u, v) for c in (range(6), range(6, 12)) for u in c for v in c if u < v]
    pairs.append((5, 6))
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def test_fit_homogeneous_separates_communities_and_is_deterministic():
    src, dst = _two_cliques()
    cfg = HomogeneousConfig(dim=8, layers=1, epochs=60, batch_size=16, lr=0.05, seed=3)
    first = fit_homogeneous(src, dst, 12, cfg)
    second = fit_homogeneous(src, dst, 12, cfg)
    assert torch.equal(first.ego, second.ego)
    assert first.epochs == 60 and first.losses[-1] < first.losses[0]
    emb = first.final
    same = [(u, v) for u in range(12) for v in range(u + 1, 12) if (u < 6) == (v < 6)]
    cross = [(u, v) for u in range(6) for v in range(6, 12) if (u, v) != (5, 6)]
    scores = torch.tensor([float(emb[u] @ emb[v]) for u, v in same + cross])
    labels = torch.tensor([1] * len(same) + [0] * len(cross))
    assert auroc(scores, labels) > 0.95


def test_fit_homogeneous_zero_epochs_propagates_the_init():
    init = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    cfg = HomogeneousConfig(dim=2, layers=1, epochs=0)
    out = fit_homogeneous(np.array([0, 1]), np.array([1, 2]), 3, cfg, init_embedding=init)
    expected = [[0.5, R / 2], [R, 0.5 + R / 2], [0.5, 0.5 + R / 2]]
    assert torch.allclose(out.final, torch.tensor(expected))
    assert torch.equal(out.ego, init)


def test_train_leaf_homogeneous_rows_weights_and_init():
    from pipelines.train.seam_homogeneous import train_leaf_homogeneous

    pdf = pd.DataFrame({"leaf_id": [7, 7, 7], "src": [10, 30, 20], "dst": [20, 10, 20]})
    settings = LeafTrainSettings(dim=4, layers=1, epochs=0, seed=5, threads=1, device="cpu")
    out = train_leaf_homogeneous(pdf, settings)
    assert out["node_id"].tolist() == [10, 20, 30]
    assert out["w"].tolist() == [2.0, 1.0, 1.0]  # distinct undirected edges, loop dropped
    assert set(out["kind"]) == {"node"} and set(out["leaf_id"]) == {7}
    init = seeded_normal(np.array([10, 20, 30]), KIND_CODES["node"], 4, 5, 0.1)
    assert np.array_equal(bytes_to_matrix(list(out["vector"]), 4), init)
    assert out[LEAF_LOG].notna().tolist() == [True, False, False]


def test_vector_bytes_float16_round_trip_and_mixed_rows_rejected():
    m = np.array([[0.1, -2.5, 3.0], [1e-3, 0.0, 65000.0]], dtype=np.float32)
    half = vectors_to_bytes(m, "float16")
    assert [len(b) for b in half] == [6, 6]
    back = bytes_to_matrix(half, 3)
    assert back.dtype == np.float32
    assert np.array_equal(back, m.astype(np.float16).astype(np.float32))
    assert np.allclose(back, m, rtol=2**-11, atol=0)
    assert np.array_equal(bytes_to_matrix(vectors_to_bytes(m), 3), m)  # float32 unchanged
    with pytest.raises(ValueError, match="18 bytes for 2 rows of dim 3"):
        bytes_to_matrix([half[0], vectors_to_bytes(m)[1]], 3)
    with pytest.raises(ValueError, match="vector dtype"):
        vectors_to_bytes(m, "int8")
    with pytest.raises(ValueError, match="vector_dtype"):
        LeafTrainSettings(vector_dtype="float64")


def test_train_leaf_homogeneous_float16_rows_are_the_float32_rows_rounded():
    from pipelines.train.seam_homogeneous import train_leaf_homogeneous

    src, dst = _two_cliques()
    pdf = pd.DataFrame({"leaf_id": 3, "src": src, "dst": dst})
    common = dict(dim=8, layers=1, epochs=3, batch_size=8, lr=0.05, seed=2, threads=1)
    full = train_leaf_homogeneous(pdf, LeafTrainSettings(**common, device="cpu"))
    half = train_leaf_homogeneous(
        pdf, LeafTrainSettings(**common, device="cpu", vector_dtype="float16")
    )
    assert half["node_id"].tolist() == full["node_id"].tolist()
    assert half["w"].tolist() == full["w"].tolist()
    assert {len(b) for b in half["vector"]} == {16}
    expected = bytes_to_matrix(list(full["vector"]), 8).astype(np.float16).astype(np.float32)
    assert np.array_equal(bytes_to_matrix(list(half["vector"]), 8), expected)


def test_propagate_homogeneous_matches_hand_computation(spark):
    from pipelines.train.homogeneous import propagate_homogeneous

    pairs = spark.createDataFrame([(0, 1), (1, 2)], "src long, dst long")
    ego_np = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    ego = spark.createDataFrame(
        [("node", i, v) for i, v in enumerate(vectors_to_bytes(ego_np))],
        "kind string, node_id long, vector binary",
    )
    expected = np.array([[0.5, R / 2], [R, 0.5 + R / 2], [0.5, 0.5 + R / 2]])
    for buckets in (None, 1, 3):  # None: as many edge buckets as partitions
        out = propagate_homogeneous(
            pairs, ego, dim=2, layers=1, partitions=2, buckets=buckets
        ).toPandas()
        out = out.sort_values("node_id")
        got = bytes_to_matrix(list(out["vector"]), 2)
        assert out["node_id"].tolist() == [0, 1, 2]
        assert np.allclose(got, expected, atol=1e-6)


def test_one_task_aggregation_equals_the_spark_shuffles(spark):
    """Replica mean + 2 propagation layers: one task and the Spark path agree to float32."""
    from pipelines.train.homogeneous import aggregate_homogeneous
    from pipelines.train.homogeneous_direct import aggregate_one_task

    rng = np.random.default_rng(5)
    lo, hi = undirected_pairs(rng.integers(0, 40, 150), rng.integers(0, 40, 150))
    pairs_pdf = pd.DataFrame({"src": lo, "dst": hi})
    ends = np.union1d(lo, hi)
    replicas = np.concatenate([ends, rng.choice(ends, 30)])  # 30 halo copies
    replicas = np.concatenate([replicas, [99]])  # a node with a vector and no pair
    vecs = rng.normal(size=(len(replicas), 4)).astype(np.float32)
    rows_pdf = pd.DataFrame(
        {
            "leaf_id": rng.integers(0, 3, len(replicas)),
            "kind": "node",
            "node_id": replicas,
            "w": rng.integers(1, 5, len(replicas)).astype(float),
            "vector": vectors_to_bytes(vecs),
            LEAF_LOG: None,
        }
    )
    rows = spark.createDataFrame(
        rows_pdf,
        "leaf_id long, kind string, node_id long, w double, vector binary, leaf_log string",
    )
    pairs = spark.createDataFrame(pairs_pdf, "src long, dst long")
    common = dict(dim=4, layers=2, partitions=3)
    shuffled = aggregate_homogeneous(rows, pairs, **common, max_direct_pairs=0).toPandas()
    one_task = aggregate_homogeneous(rows, pairs, **common, max_direct_pairs=len(lo)).toPandas()
    shuffled, one_task = shuffled.sort_values("node_id"), one_task.sort_values("node_id")
    assert one_task["node_id"].tolist() == shuffled["node_id"].tolist()
    assert 99 in one_task["node_id"].tolist()
    got = bytes_to_matrix(list(one_task["vector"]), 4)
    want = bytes_to_matrix(list(shuffled["vector"]), 4)
    assert np.allclose(got, want, atol=1e-6)
    assert not np.allclose(got, 0)
    # the Spark task runs the pandas function: the same bytes in-process
    local = aggregate_one_task(rows_pdf, pairs_pdf, dim=4, layers=2).sort_values("node_id")
    assert list(local["vector"]) == list(one_task["vector"])
    # by hand for the isolated node: its replica mean, scaled by 1 / (K + 1)
    mine = rows_pdf["node_id"] == 99
    by_hand = vecs[mine.to_numpy()][0] / 3
    at = one_task["node_id"].tolist().index(99)
    assert np.allclose(got[at], by_hand, atol=1e-7)
    with pytest.raises(ValueError, match="max_direct_pairs"):
        aggregate_homogeneous(rows, pairs, **common, max_direct_pairs=-1)


def test_leaf_edge_rows_internal_plus_halo(spark):
    from pipelines.train.homogeneous import leaf_edge_rows

    pairs = spark.createDataFrame([(0, 1), (1, 2), (2, 3)], "src long, dst long")
    assignment = spark.createDataFrame(
        [(0, 0), (1, 0), (2, 1), (3, 1)], "node_id long, leaf_id int"
    )
    halo = spark.createDataFrame([(0, 1, 2), (1, 1, 2)], "leaf_id int, src long, dst long")
    rows = sorted(tuple(r) for r in leaf_edge_rows(pairs, assignment, halo).collect())
    assert rows == [(0, 0, 1), (0, 1, 2), (1, 1, 2), (1, 2, 3)]


def test_split_oversized_leaves_deals_a_hub_leaf_over_sub_leaves(spark):
    from pipelines.train.homogeneous import split_oversized_leaves

    hub = [(3, 0, v) for v in range(1, 11)]  # leaf 3: a hub with 10 edges
    small = [(0, 20, 21), (0, 21, 22), (5, 30, 31)]
    edges = spark.createDataFrame(hub + small, "leaf_id long, src long, dst long")
    out, split, sizes = split_oversized_leaves(edges, max_edges=4)
    assert split == {3: 3}  # ceil(10 / 4) sub-leaves: id 3 kept, new ids 6 and 7
    rows = [tuple(r) for r in out.collect()]
    assert sorted((s, d) for _, s, d in rows) == sorted((s, d) for _, s, d in hub + small)
    by_leaf: dict[int, int] = {}
    for leaf, _, _ in rows:
        by_leaf[leaf] = by_leaf.get(leaf, 0) + 1
    assert by_leaf == {0: 2, 5: 1, 3: 4, 6: 3, 7: 3}
    assert sizes == by_leaf  # the counts after the split, computed without a Spark job
    again, _, _ = split_oversized_leaves(edges.repartition(3), max_edges=4)
    assert sorted(tuple(r) for r in again.collect()) == sorted(rows)  # deterministic
    same, none, unsplit = split_oversized_leaves(edges, max_edges=10)
    assert none == {} and same is edges and unsplit == {3: 10, 0: 2, 5: 1}
    with pytest.raises(ValueError, match="max_edges"):
        split_oversized_leaves(edges, max_edges=0)


def test_one_leaf_per_task_gives_every_leaf_its_own_partition(spark):
    from pyspark.sql import functions as F

    from pipelines.train.homogeneous import one_leaf_per_task, train_leaves_homogeneous

    # leaf ids 0..9 hashed onto 10 partitions collide (what repartition(10, leaf_id) does)
    sizes = {leaf: 3 + leaf for leaf in range(10)}
    rows = [
        (leaf, 100 * leaf + j, 100 * leaf + j + 1) for leaf, n in sizes.items() for j in range(n)
    ]
    edges = spark.createDataFrame(rows, "leaf_id long, src long, dst long")
    hashed = edges.repartition(10, "leaf_id").select(F.spark_partition_id().alias("p"), "leaf_id")
    assert hashed.select("p").distinct().count() < 10
    placed = one_leaf_per_task(edges, sizes)
    where = placed.select(F.spark_partition_id().alias("p"), "leaf_id").distinct().collect()
    assert sorted(r["leaf_id"] for r in where) == list(range(10))
    assert len({r["p"] for r in where}) == 10  # one partition per leaf
    by_size = {r["leaf_id"]: r["p"] for r in where}
    assert by_size[9] == 0 and by_size[0] == 9  # largest leaf first
    settings = LeafTrainSettings(dim=4, layers=1, epochs=1, batch_size=8, lr=0.05, seed=1,
                                 threads=1, device="cpu")  # fmt: skip
    out = train_leaves_homogeneous(placed, settings, group_key="slot_key")
    plain = train_leaves_homogeneous(edges, settings)
    key = ["leaf_id", "node_id"]
    a = out.select(*key, "vector").toPandas().sort_values(key).reset_index(drop=True)
    b = plain.select(*key, "vector").toPandas().sort_values(key).reset_index(drop=True)
    assert a.equals(b)  # same leaves, same rows: only the placement changed
    assert len(a) == sum(n + 1 for n in sizes.values())


def test_random_walks_follow_edges_or_restart(spark):
    from bench.random_walk_peer import random_walks, word2vec_vectors

    edges = [(0, 1), (1, 2), (2, 3), (3, 0), (0, 2), (4, 5)]
    pairs = spark.createDataFrame(edges, "src long, dst long")
    walks = [
        [int(x) for x in r.walk]
        for r in random_walks(
            pairs, walks_per_node=3, walk_length=6, restart_probability=0.3, seed=1
        ).collect()
    ]
    adjacent = {(u, v) for u, v in edges} | {(v, u) for u, v in edges}
    assert len(walks) == 18 and all(len(w) == 6 for w in walks)
    assert sorted(w[0] for w in walks) == sorted(list(range(6)) * 3)
    steps = [(w[0], a, b) for w in walks for a, b in zip(w, w[1:], strict=False)]
    assert all((a, b) in adjacent or b == start for start, a, b in steps)
    assert any(b == start and (a, b) not in adjacent for start, a, b in steps)  # restarts
    vectors = word2vec_vectors(random_walks(pairs, walks_per_node=2, walk_length=4), dim=3)
    rows = sorted((r.node_id, r.kind, len(r.vector)) for r in vectors.collect())
    assert rows == [(n, "node", 12) for n in range(6)]  # every node, 3 float32 each
