import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from pipelines.aggregate.stage import (
    PRIMARY,
    WEIGHT_COL,
    average_replicas_per_leaf,
    initial_vectors,
    lightgcn_propagate,
    replica_means,
    weighted_mean_by_node,
)
from pipelines.core.vector_bytes import bytes_to_matrix, vectors_to_bytes
from pipelines.train.seeded_init import seeded_normal


def _table(df, dim):
    pdf = df.toPandas().sort_values(["kind", "node_id"])
    return {
        (k, int(n)): v
        for k, n, v in zip(
            pdf["kind"], pdf["node_id"], bytes_to_matrix(list(pdf["vector"]), dim), strict=True
        )
    }


def test_seeded_normal_is_deterministic_per_node():
    a = seeded_normal(np.array([5, 9, 11]), 1, 8, 3, 0.1)
    b = seeded_normal(np.array([11, 5]), 1, 8, 3, 0.1)
    assert np.array_equal(a[[2, 0]], b)
    assert not np.array_equal(a, seeded_normal(np.array([5, 9, 11]), 1, 8, 4, 0.1))
    assert not np.array_equal(a, seeded_normal(np.array([5, 9, 11]), 2, 8, 3, 0.1))


def test_initial_vectors_independent_of_partitioning(spark):
    nodes = spark.createDataFrame([("user", i) for i in range(50)], "kind string, node_id long")
    one = _table(initial_vectors(nodes.coalesce(1), dim=4, seed=1), 4)
    many = _table(initial_vectors(nodes.repartition(7), dim=4, seed=1), 4)
    assert one.keys() == many.keys()
    assert all(np.array_equal(one[k], many[k]) for k in one)


def test_weighted_mean_by_node(spark):
    rows = [
        ("item", 1, 1.0, vectors_to_bytes(np.array([[1.0, 0.0]]))[0]),
        ("item", 1, 3.0, vectors_to_bytes(np.array([[0.0, 4.0]]))[0]),
        ("user", 1, 2.0, vectors_to_bytes(np.array([[2.0, 2.0]]))[0]),
    ]
    df = spark.createDataFrame(
        [(k, n, w, bytearray(v)) for k, n, w, v in rows],
        f"kind string, node_id long, {WEIGHT_COL} double, vector binary",
    )
    mean = _table(weighted_mean_by_node(df, dim=2, partitions=3), 2)
    assert np.allclose(mean[("item", 1)], [0.25, 3.0])
    assert np.allclose(mean[("user", 1)], [2.0, 2.0])
    total = _table(weighted_mean_by_node(df, dim=2, partitions=1, normalise=False), 2)
    assert np.allclose(total[("item", 1)], [1.0, 12.0])


def _replica_rows():
    # item 1 lives in leaves 2 (w 1) and 0 (w 3); user 1 only in leaf 0; item 7 in leaves 0 and 1
    return pd.DataFrame(
        {
            "leaf_id": [2, 0, 0, 1, 0],
            "kind": ["item", "item", "user", "item", "item"],
            "node_id": [1, 1, 1, 7, 7],
            WEIGHT_COL: [1.0, 3.0, 2.0, 1.0, 1.0],
            "vector": vectors_to_bytes(
                np.array([[1.0, 0.0], [0.0, 4.0], [2.0, 2.0], [5.0, 5.0], [1.0, -1.0]])
            ),
            "leaf_log": [None, '{"leaf_id": 0}', None, '{"leaf_id": 1}', None],
        }
    )


def _means(rows):
    return replica_means(pa.Table.from_pandas(rows, preserve_index=False), 2).to_pandas()


def test_replica_means_writes_the_weighted_mean_back_onto_every_replica():
    out = _means(_replica_rows())
    got = {
        (r.kind, r.node_id, r.leaf_id): (v, r.primary, r.leaf_log)
        for r, v in zip(
            out.itertuples(index=False), bytes_to_matrix(list(out["vector"]), 2), strict=True
        )
    }
    # (1*[1,0] + 3*[0,4]) / 4 on both replicas of item 1; the lowest leaf holds the primary row
    assert np.allclose(got[("item", 1, 0)][0], [0.25, 3.0])
    assert np.allclose(got[("item", 1, 2)][0], [0.25, 3.0])
    assert np.allclose(got[("item", 7, 0)][0], [3.0, 2.0])
    assert np.allclose(got[("item", 7, 1)][0], [3.0, 2.0])
    assert np.allclose(got[("user", 1, 0)][0], [2.0, 2.0])
    assert [k for k, v in got.items() if v[1]] == [("item", 1, 0), ("item", 7, 0), ("user", 1, 0)]
    # every row counts its node's replicas: the items are shared by two leaves, the user is not
    replicas = {(r.kind, r.node_id, r.leaf_id): r.replicas for r in out.itertuples(index=False)}
    assert replicas == {
        ("item", 1, 0): 2,
        ("item", 1, 2): 2,
        ("item", 7, 0): 2,
        ("item", 7, 1): 2,
        ("user", 1, 0): 1,
    }
    # the leaves' logs stay on the row they came with
    assert got[("item", 1, 0)][2] == '{"leaf_id": 0}' and got[("item", 7, 1)][2] == '{"leaf_id": 1}'
    # the same rows in another order give the same bytes (sums ordered by kind, node, leaf)
    shuffled = _means(_replica_rows().iloc[[4, 2, 0, 3, 1]])
    assert shuffled.equals(out)
    # float16 rows are read as such; mixed row lengths are rejected with the lengths found
    half = _replica_rows().assign(
        vector=vectors_to_bytes(bytes_to_matrix(list(_replica_rows()["vector"]), 2), "float16")
    )
    assert _means(half).equals(out)  # these values are exact in float16
    mixed = _replica_rows()
    mixed.loc[0, "vector"] = half.loc[0, "vector"]
    with pytest.raises(ValueError, match=r"row lengths \[4, 8\]"):
        _means(mixed)


def test_average_replicas_per_leaf_in_spark_equals_pandas(spark):
    rows = _replica_rows()
    df = spark.createDataFrame(
        rows.assign(vector=[bytearray(v) for v in rows["vector"]]),
        f"leaf_id long, kind string, node_id long, {WEIGHT_COL} double, vector binary, "
        "leaf_log string",
    )
    got = average_replicas_per_leaf(df, dim=2, partitions=3).toPandas()
    got = got.sort_values(["kind", "node_id", "leaf_id"]).reset_index(drop=True)
    expected = _means(rows)
    assert got[["leaf_id", "kind", "node_id", PRIMARY, "replicas"]].equals(
        expected[["leaf_id", "kind", "node_id", PRIMARY, "replicas"]]
    )
    assert [bytes(v) for v in got["vector"]] == list(expected["vector"])


def test_lightgcn_propagate_matches_dense_reference(spark):
    rng = np.random.default_rng(0)
    n_users, n_items, dim, layers = 5, 4, 3, 2
    pairs = sorted({(int(u), int(i)) for u, i in rng.integers(0, [n_users, n_items], (12, 2))})
    users_used = sorted({u for u, _ in pairs})
    items_used = sorted({i for _, i in pairs})
    eu = rng.normal(size=(n_users, dim)).astype(np.float32)
    ei = rng.normal(size=(n_items, dim)).astype(np.float32)
    # Dense reference: A = [[0, R], [R^T, 0]], D^{-1/2} A D^{-1/2}, mean of layers 0..L.
    r = np.zeros((n_users, n_items))
    for u, i in pairs:
        r[u, i] = 1.0
    a = np.block([[np.zeros((n_users, n_users)), r], [r.T, np.zeros((n_items, n_items))]])
    deg = a.sum(1)
    dinv = np.where(deg > 0, 1 / np.sqrt(np.maximum(deg, 1e-12)), 0.0)
    norm = dinv[:, None] * a * dinv[None, :]
    e = np.vstack([eu, ei]).astype(np.float64)
    out, cur = e.copy(), e.copy()
    for _ in range(layers):
        cur = norm @ cur
        out += cur
    out /= layers + 1
    ego_rows = [("user", u, bytearray(eu[u].tobytes())) for u in users_used] + [
        ("item", i, bytearray(ei[i].tobytes())) for i in items_used
    ]
    ego = spark.createDataFrame(ego_rows, "kind string, node_id long, vector binary")
    inter = spark.createDataFrame(pairs + pairs[:2], "user long, item long")  # duplicates ignored
    got = _table(lightgcn_propagate(inter, ego, dim=dim, layers=layers, partitions=3), dim)
    for u in users_used:
        assert np.allclose(got[("user", u)], out[u], atol=1e-5)
    for i in items_used:
        assert np.allclose(got[("item", i)], out[n_users + i], atol=1e-5)


def test_round_zero_rows_count_replicas_and_carry_no_vectors(spark):
    from pipelines.aggregate.stage import round_zero_rows

    members = spark.createDataFrame(
        [(2, "item", 1), (0, "item", 1), (0, "user", 1), (1, "item", 7), (0, "item", 7),
         (3, "item", 7)],
        "leaf_id int, kind string, node_id long",
    )  # fmt: skip
    got = round_zero_rows(members).toPandas().sort_values(["kind", "node_id", "leaf_id"])
    assert got[["leaf_id", "kind", "node_id", PRIMARY, "replicas"]].values.tolist() == [
        [0, "item", 1, True, 2],
        [2, "item", 1, False, 2],
        [0, "item", 7, True, 3],
        [1, "item", 7, False, 3],
        [3, "item", 7, False, 3],
        [0, "user", 1, True, 1],
    ]
    assert all(len(v) == 0 for v in got["vector"]) and got["leaf_log"].isna().all()
