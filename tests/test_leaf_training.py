"""Partitioned LightGCN: rounds of leaf training in Spark tasks + federated averaging."""

import numpy as np
import pandas as pd

from pipelines.core.vector_bytes import bytes_to_matrix
from pipelines.train.rounds import iter_rounds, round_table, train_partitioned
from pipelines.train.seam import LeafTrainSettings
from pipelines.train.seeded_init import seeded_vectors

SETTINGS = LeafTrainSettings(dim=8, layers=2, epochs=2, batch_size=32, lr=0.01, seed=1, threads=1)


def _edges(spark):
    rng = np.random.default_rng(0)
    rows = sorted({(int(u) % 2, int(u), int(i)) for u, i in rng.integers(0, 30, (200, 2))})
    return spark.createDataFrame(rows, "leaf_id long, user long, item long")


def _table(df):
    pdf = df.toPandas().sort_values(["kind", "node_id"]).reset_index(drop=True)
    return pdf[["kind", "node_id"]].values.tolist(), bytes_to_matrix(list(pdf["vector"]), 8)


def test_rounds_cover_every_node_and_resume(spark, tmp_path):
    edges = _edges(spark)
    result = train_partitioned(
        spark, edges, settings=SETTINGS, rounds=2, partitions=3, work_dir=tmp_path
    )
    keys, vecs = _table(result.ego)
    pdf = edges.toPandas()
    expected = sorted(
        [["item", int(i)] for i in pdf.item.unique()]
        + [["user", int(u)] for u in pdf.user.unique()]
    )
    assert keys == expected
    assert np.isfinite(vecs).all()
    assert len(result.leaf_logs) == 2 * 2  # two leaves, two rounds
    assert sorted({x["round"] for x in result.leaf_logs}) == [1, 2]
    # Items trained in both leaves were averaged: an item's vector differs from its round-0 init.
    # Round 0 stores no vectors (round 1's leaves seed their nodes), one row per (leaf, node).
    zero = spark.read.parquet(str(tmp_path / "rounds" / "0")).toPandas()
    assert all(len(v) == 0 for v in zero["vector"]) and len(zero) == (
        len(pdf[["leaf_id", "item"]].drop_duplicates()) + len(pdf.user.unique())
    )
    init_vecs = seeded_vectors(pd.DataFrame(keys, columns=["kind", "node_id"]), dim=8, seed=1)
    assert not np.allclose(init_vecs, vecs)

    # Rerun: both rounds are found on disk and skipped; the same table comes back.
    again = train_partitioned(
        spark, edges, settings=SETTINGS, rounds=2, partitions=5, work_dir=tmp_path
    )
    keys2, vecs2 = _table(again.ego)
    assert keys2 == keys and np.array_equal(vecs2, vecs)

    # Deterministic whatever the partitioning and the leaf id's integer type (int here: the
    # rounds' start rows key leaves by long): a fresh one-round run equals round 1 above.
    other = train_partitioned(
        spark,
        edges.withColumn("leaf_id", edges["leaf_id"].cast("int")).repartition(7),
        settings=SETTINGS,
        rounds=1,
        partitions=4,
        work_dir=tmp_path / "other",
    )
    k1, v1 = _table(round_table(spark, tmp_path / "rounds" / "1"))
    ko, vo = _table(other.ego)
    assert ko == k1 and np.allclose(vo, v1, atol=1e-6)


def test_iter_rounds_yields_each_round_and_stops_when_the_caller_does(spark, tmp_path):
    edges = _edges(spark)
    steps = iter_rounds(
        spark, edges, settings=SETTINGS, rounds=None, partitions=3, work_dir=tmp_path / "open"
    )
    seen = []
    for done in steps:
        seen.append(done)
        if done.index == 2:
            steps.close()
            break
    assert [d.index for d in seen] == [1, 2]
    assert all(not d.resumed and d.seconds > 0 for d in seen)
    assert [sorted(x["leaf_id"] for x in d.leaf_logs) for d in seen] == [[0, 1], [0, 1]]
    assert not (tmp_path / "open" / "rounds" / "3").exists()
    # The same two rounds as a bounded run: identical tables.
    bounded = train_partitioned(
        spark, edges, settings=SETTINGS, rounds=2, partitions=3, work_dir=tmp_path / "bounded"
    )
    keys, vecs = _table(bounded.ego)
    keys_open, vecs_open = _table(seen[-1].ego(spark))
    assert keys_open == keys and np.array_equal(vecs_open, vecs)
    # Resumed: finished rounds come back from disk with no time charged, then training goes on.
    again = iter_rounds(
        spark, edges, settings=SETTINGS, rounds=3, partitions=3, work_dir=tmp_path / "open"
    )
    flags = [(d.index, d.resumed, d.seconds == 0.0) for d in again]
    assert flags == [(1, True, True), (2, True, True), (3, False, False)]
