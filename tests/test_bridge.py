"""The Spark-to-torch seam, called on plain pandas DataFrames (no Spark)."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines.core.vector_bytes import bytes_to_matrix
from pipelines.train.seam import LEAF_LOG, LeafTrainSettings, task_device, task_threads, train_leaf


def _leaf(leaf_id):
    rng = np.random.default_rng(leaf_id)
    users = rng.integers(1000, 1010, size=60)
    items = rng.integers(5000, 5020, size=60)
    return pd.DataFrame({"leaf_id": leaf_id, "user": users, "item": items}).drop_duplicates()


def _leaf_nodes(edges, sort=False):
    """Every (kind, node_id) of a leaf's edges: users first, in first-seen (or sorted) order."""
    order = np.sort if sort else (lambda x: x)
    return pd.concat(
        [
            pd.DataFrame({"kind": "user", "node_id": order(edges["user"].unique())}),
            pd.DataFrame({"kind": "item", "node_id": order(edges["item"].unique())}),
        ],
        ignore_index=True,
    )


def _arrow_leaf(edges, init, settings, round_index):
    """train_leaf_from_arrow on pandas frames, as Spark's Arrow batches hand them over."""
    from pipelines.train.seam import train_leaf_from_arrow

    return train_leaf_from_arrow(
        pa.Table.from_pandas(edges, preserve_index=False),
        pa.Table.from_pandas(init, preserve_index=False),
        settings,
        round_index=round_index,
    )


SETTINGS = LeafTrainSettings(dim=8, layers=2, epochs=3, batch_size=16, lr=0.01, seed=5, threads=1)


def test_train_leaf_rows_and_log():
    pdf = _leaf(3)
    out = train_leaf(pdf, SETTINGS)
    users = sorted(pdf["user"].unique())
    items = sorted(pdf["item"].unique())
    assert list(out.columns) == ["leaf_id", "kind", "node_id", "role", "vector", LEAF_LOG]
    assert out[out.kind == "user"].node_id.tolist() == users  # global ids, sorted
    assert out[out.kind == "item"].node_id.tolist() == items
    assert set(out.leaf_id) == {3} and set(out.role) == {"core"}
    vecs = bytes_to_matrix(list(out.vector), 8)
    assert vecs.shape == (len(users) + len(items), 8) and np.isfinite(vecs).all()
    logs = out[LEAF_LOG].dropna().tolist()
    assert len(logs) == 1
    log = json.loads(logs[0])
    assert log["epochs"] == 3 and len(log["losses"]) == 3 and log["device"] == "cpu"
    assert log["interactions"] == len(pdf)


def test_train_leaf_is_deterministic_and_seeded_per_leaf():
    a = train_leaf(_leaf(3), SETTINGS)
    b = train_leaf(_leaf(3), SETTINGS)
    assert a.vector.tolist() == b.vector.tolist()  # a retried task returns identical rows
    other = _leaf(3).assign(leaf_id=4)
    c = train_leaf(other, SETTINGS)
    assert c.vector.tolist() != a.vector.tolist()


def test_empty_leaf_and_device_outside_spark():
    empty = train_leaf(pd.DataFrame({"leaf_id": [], "user": [], "item": []}), SETTINGS)
    assert empty.empty
    assert task_device("cpu") == "cpu"
    assert task_device("auto") in ("cpu", "cuda")
    assert task_threads(3) == 3 and task_threads(0) >= 1


def test_train_leaf_from_arrow_equals_the_pandas_seam():
    import pyarrow as pa

    from pipelines.core.vector_bytes import vectors_to_bytes
    from pipelines.train.seam import train_leaf_from, train_leaf_from_arrow
    from pipelines.train.seeded_init import seeded_vectors

    edges = _leaf(3)
    nodes = _leaf_nodes(edges).sample(frac=1.0, random_state=0)  # start rows in any order
    init = nodes.assign(leaf_id=3, vector=vectors_to_bytes(seeded_vectors(nodes, dim=8, seed=1)))[
        ["leaf_id", "kind", "node_id", "vector"]
    ]
    want = train_leaf_from(edges, init, SETTINGS, round_index=2)
    got = _arrow_leaf(edges, init, SETTINGS, 2).to_pandas()
    assert list(got.columns) == list(want.columns)
    assert got.drop(columns=[LEAF_LOG]).equals(want.drop(columns=[LEAF_LOG]))
    # the start vectors were used: a zero start trains to other vectors
    zero = init.assign(vector=vectors_to_bytes(np.zeros((len(init), 8))))
    other = train_leaf_from(edges, zero, SETTINGS, round_index=2)
    assert other.vector.tolist() != want.vector.tolist()
    empty = pa.table({"leaf_id": pa.array([], pa.int64()), "user": pa.array([], pa.int64()),
                      "item": pa.array([], pa.int64())})  # fmt: skip
    assert train_leaf_from_arrow(empty, pa.Table.from_pandas(init), SETTINGS).num_rows == 0


def test_shared_step_moves_shared_nodes_by_eta_times_their_change():
    import dataclasses

    import pytest

    from pipelines.core.vector_bytes import vectors_to_bytes
    from pipelines.train.seam import train_leaf_from
    from pipelines.train.seeded_init import seeded_vectors

    edges = _leaf(3)
    nodes = _leaf_nodes(edges, sort=True)
    start = seeded_vectors(nodes, dim=8, seed=1)
    # the first three items are held by other leaves too
    replicas = np.where((nodes.kind == "item") & (nodes.index < nodes.kind.eq("user").sum() + 3),
                        4, 1)  # fmt: skip
    init = nodes.assign(leaf_id=3, vector=vectors_to_bytes(start), replicas=replicas)
    plain = bytes_to_matrix(list(train_leaf_from(edges, init, SETTINGS).vector), 8)
    stepped = dataclasses.replace(SETTINGS, shared_step=2.5)
    got = bytes_to_matrix(list(train_leaf_from(edges, init, stepped).vector), 8)
    shared = replicas > 1
    assert shared.sum() == 3
    np.testing.assert_allclose(got[shared], start[shared] + 2.5 * (plain[shared] - start[shared]),
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    assert np.array_equal(got[~shared], plain[~shared])  # a node of one leaf: plain averaging
    # without replica counts (or with the default step) the rows are plain averaging's
    no_counts = bytes_to_matrix(
        list(train_leaf_from(edges, init.drop(columns=["replicas"]), stepped).vector), 8
    )
    assert np.array_equal(no_counts, plain)
    arrow = _arrow_leaf(edges, init, stepped, 0)
    assert np.array_equal(bytes_to_matrix(arrow.column("vector").to_pylist(), 8), got)
    with pytest.raises(ValueError, match="shared_step"):
        LeafTrainSettings(shared_step=0.0)


def test_empty_start_vectors_mean_the_seeded_start():

    from pipelines.core.vector_bytes import vectors_to_bytes
    from pipelines.train.seam import train_leaf_from
    from pipelines.train.seeded_init import seeded_vectors

    edges = _leaf(3)
    nodes = pd.DataFrame(
        {
            "kind": ["user"] * 3 + ["item"] * 2,
            "node_id": list(edges["user"].unique()[:3]) + list(edges["item"].unique()[:2]),
        }
    )  # fmt: skip — the start rows name only some nodes; all of a leaf's nodes are seeded
    seeded = _leaf_nodes(edges)
    explicit = seeded.assign(
        leaf_id=3, vector=vectors_to_bytes(seeded_vectors(seeded, dim=8, seed=SETTINGS.seed))
    )
    want = train_leaf_from(edges, explicit, SETTINGS, round_index=1)
    empty = nodes.assign(leaf_id=3, vector=[b""] * len(nodes))
    got = train_leaf_from(edges, empty, SETTINGS, round_index=1)
    assert got.drop(columns=[LEAF_LOG]).equals(want.drop(columns=[LEAF_LOG]))
    arrow = _arrow_leaf(edges, empty, SETTINGS, 1).to_pandas()
    assert arrow.drop(columns=[LEAF_LOG]).equals(want.drop(columns=[LEAF_LOG]))
    # no start rows at all: seeded too, on both seams (the Arrow one once read it as zeros)
    none = empty.iloc[:0]
    got = train_leaf_from(edges, none, SETTINGS, round_index=1)
    assert got.drop(columns=[LEAF_LOG]).equals(want.drop(columns=[LEAF_LOG]))
    arrow = _arrow_leaf(edges, none, SETTINGS, 1).to_pandas()
    assert arrow.drop(columns=[LEAF_LOG]).equals(want.drop(columns=[LEAF_LOG]))
