"""Push-based sparse propagation: partial sums per (bucket, node) add up to y = A^T x."""

import numpy as np
import pytest

from pipelines.aggregate import weighted_mean_by_node
from pipelines.bridge import bytes_to_matrix, vectors_to_bytes
from pipelines.propagate import bucket_edges, push_partial_sums


def _dense(edges, x, n):
    """y_v = sum of w * x_u over edges whose source has a vector (rows 0 .. len(x) - 1)."""
    y = np.zeros((n, x.shape[1]))
    for u, v, w in edges:
        if u < len(x):
            y[v] += w * x[u]
    return y


@pytest.mark.parametrize("buckets", [1, 3, 8])
def test_partial_sums_add_up_to_the_dense_product(spark, buckets):
    rng = np.random.default_rng(4)
    n, dim = 40, 5
    # a hub (node 0) receives from everyone, plus random edges; node 39 has no vector
    edges = [(u, 0, float(rng.uniform(0.1, 1.0))) for u in range(1, n)]
    edges += [
        (int(u), int(v), float(w))
        for u, v, w in zip(
            rng.integers(0, n, 120), rng.integers(0, n, 120), rng.uniform(0.1, 1.0, 120),
            strict=True,
        )
    ]
    x = rng.normal(size=(n - 1, dim)).astype(np.float32)
    e_df = spark.createDataFrame(edges, "u long, v long, w double")
    x_df = spark.createDataFrame(
        [(i, b) for i, b in enumerate(vectors_to_bytes(x))], "node_id long, vector binary"
    )
    parts = push_partial_sums(
        bucket_edges(e_df, buckets=buckets), x_df, dim=dim, buckets=buckets, out_kind="node"
    ).toPandas()
    assert set(parts["kind"]) == {"node"} and set(parts["w"]) == {1.0}
    # at most one partial row per (bucket, destination): the hub arrives <= buckets times
    assert (parts["node_id"] == 0).sum() <= buckets
    assert len(parts) <= buckets * n
    summed = weighted_mean_by_node(
        spark.createDataFrame(parts), dim=dim, partitions=2, normalise=False
    ).toPandas()
    got = np.zeros((n, dim))
    got[summed["node_id"].to_numpy()] = bytes_to_matrix(list(summed["vector"]), dim)
    expected = _dense(edges, x, n)
    assert np.allclose(got, expected, atol=1e-5)
    # destinations reached only from node 39 (no vector) get no row at all
    reached = {v for u, v, _ in edges if u != n - 1}
    assert set(summed["node_id"]) == reached


def test_bucket_edges_rejects_zero_buckets(spark):
    e_df = spark.createDataFrame([(0, 1, 1.0)], "u long, v long, w double")
    with pytest.raises(ValueError, match="buckets"):
        bucket_edges(e_df, buckets=0)
