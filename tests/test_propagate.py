"""Push-based propagation: partial rows per (bucket, node) add up to D_out^-1/2 A D_in^-1/2 x."""

import numpy as np
import pytest

from pipelines.aggregate.propagate import bucket_edges, propagate_layer, push_partial_sums
from pipelines.core.vector_bytes import bytes_to_matrix, vectors_to_bytes


def _dense(edges, x, n):
    """y_v = sum over edges (u, v) of x_u / sqrt(out(u) in(v)); rows of x exist for u < len(x)."""
    out_deg, in_deg = np.zeros(n), np.zeros(n)
    for u, v in edges:
        out_deg[u] += 1
        in_deg[v] += 1
    y = np.zeros((n, x.shape[1]))
    for u, v in edges:
        if u < len(x):
            y[v] += x[u] / np.sqrt(out_deg[u] * in_deg[v])
    return y


@pytest.mark.parametrize("buckets", [1, 3, 8])
def test_layer_matches_the_dense_normalised_product(spark, buckets):
    rng = np.random.default_rng(4)
    n, dim = 40, 5
    # a hub (node 0) receives from everyone, plus random distinct edges; node 39 has no vector
    edges = [(u, 0) for u in range(1, n)]
    extra = {
        (int(u), int(v))
        for u, v in zip(rng.integers(0, n, 150), rng.integers(0, n, 150), strict=True)
    }
    edges += sorted(extra - set(edges))
    x = rng.normal(size=(n - 1, dim)).astype(np.float32)
    e_df = bucket_edges(spark.createDataFrame(edges, "u long, v long"), buckets=buckets)
    x_df = spark.createDataFrame(
        [(i, b) for i, b in enumerate(vectors_to_bytes(x))], "node_id long, vector binary"
    )
    parts = push_partial_sums(e_df, x_df, dim=dim, buckets=buckets, out_kind="node").toPandas()
    assert set(parts["kind"]) == {"node"}
    # one partial row per (bucket, destination): the hub arrives at most `buckets` times, and
    # the rows' edge counts add up to every node's in-degree
    assert (parts["node_id"] == 0).sum() <= buckets
    counts = parts.groupby("node_id")["w"].sum()
    assert counts.to_dict() == {v: float(sum(1 for _, t in edges if t == v)) for v in counts.index}
    out = propagate_layer(e_df, x_df, dim=dim, buckets=buckets, out_kind="node").toPandas()
    got = np.zeros((n, dim))
    got[out["node_id"].to_numpy()] = bytes_to_matrix(list(out["vector"]), dim)
    assert np.allclose(got, _dense(edges, x, n), atol=1e-5)
    assert set(out["node_id"]) == {v for _, v in edges}  # every node with an in-edge, once
    assert len(out) == out["node_id"].nunique()


def test_bucket_edges_rejects_zero_buckets(spark):
    e_df = spark.createDataFrame([(0, 1)], "u long, v long")
    with pytest.raises(ValueError, match="buckets"):
        bucket_edges(e_df, buckets=0)


def _vector_rows(spark, kinds_ids, matrix):
    return spark.createDataFrame(
        [(k, int(i), b) for (k, i), b in zip(kinds_ids, vectors_to_bytes(matrix), strict=True)],
        "kind string, node_id long, vector binary",
    )


def _by_key(df, dim):
    pdf = df.toPandas()
    vecs = bytes_to_matrix(list(pdf["vector"]), dim)
    return {(k, int(n)): v for k, n, v in zip(pdf["kind"], pdf["node_id"], vecs, strict=True)}


def test_spark_bipartite_propagation_equals_the_gnn_layer(spark):
    """Spark's LightGCN propagation (the scale path) = gnn.layers.lg_conv, same graph and egos."""
    import torch

    from gnn.layers.lg_conv import LGConv, build_norm_adj
    from pipelines.aggregate.stage import lightgcn_propagate

    rng = np.random.default_rng(7)
    n_users, n_items, dim, layers = 30, 20, 6, 3
    users, items = rng.integers(0, n_users, 120), rng.integers(0, n_items, 120)
    ego = rng.normal(size=(n_users + n_items, dim)).astype(np.float32)
    adj = build_norm_adj(users, items, n_users, n_items)
    want = LGConv(layers)(adj, torch.from_numpy(ego)).numpy()
    keys = [("user", u) for u in range(n_users)] + [("item", i) for i in range(n_items)]
    inter = spark.createDataFrame(
        [(int(u), int(i)) for u, i in zip(users, items, strict=True)], "user long, item long"
    )
    got = _by_key(
        lightgcn_propagate(
            inter, _vector_rows(spark, keys, ego), dim=dim, layers=layers, partitions=3
        ),
        dim,
    )
    assert set(got) == set(keys)  # isolated users and items too: ego / (K + 1)
    assert np.allclose(np.stack([got[k] for k in keys]), want, atol=1e-6)


def test_spark_homogeneous_propagation_equals_the_gnn_layer(spark):
    """The homogeneous Spark propagation and the one-task seam both equal the gnn layer."""
    import torch

    from gnn.layers.lg_conv import build_homogeneous_adj, lightgcn_propagate, undirected_pairs
    from pipelines.train.homogeneous import propagate_homogeneous
    from pipelines.train.seam_homogeneous import propagate_mean

    rng = np.random.default_rng(8)
    n, dim, layers = 45, 5, 2
    lo, hi = undirected_pairs(rng.integers(0, n, 160), rng.integers(0, n, 160))
    ego = rng.normal(size=(n, dim)).astype(np.float32)
    want = lightgcn_propagate(build_homogeneous_adj(lo, hi, n), torch.from_numpy(ego), layers)
    keys = [("node", i) for i in range(n)]
    pairs = spark.createDataFrame(
        [(int(a), int(b)) for a, b in zip(lo, hi, strict=True)], "src long, dst long"
    )
    out = propagate_homogeneous(
        pairs, _vector_rows(spark, keys, ego), dim=dim, layers=layers, partitions=3
    )
    got = _by_key(out, dim)
    assert set(got) == set(keys)
    assert np.allclose(np.stack([got[k] for k in keys]), want.numpy(), atol=1e-6)
    ids, one_task = propagate_mean(np.arange(n), ego, lo, hi, layers)
    assert ids.tolist() == list(range(n))
    assert np.array_equal(one_task, want.numpy())
