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
