"""R-MAT generator: determinism across task counts, exact counts, id range, skew, flags, job."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pyspark.sql import functions as F

from jobs.rmat import main as rmat_main
from pipelines.generate.rmat import (
    RmatSpec,
    default_scale,
    generate_rmat,
    rmat_numpy,
    scramble,
)


def _rows(df) -> list[tuple[int, int]]:
    return [(r.src, r.dst) for r in df.collect()]


def test_same_graph_for_any_partition_count(spark):
    kw = dict(num_edges=3000, seed=11, chunk_size=256)  # 12 chunks, the last one partial
    one = _rows(generate_rmat(spark, partitions=1, **kw))
    three = _rows(generate_rmat(spark, partitions=3, **kw))
    twelve = _rows(generate_rmat(spark, partitions=12, **kw))  # one chunk per task
    assert one == three == twelve
    src, dst = rmat_numpy(RmatSpec.create(**kw))
    assert one == list(zip(src.tolist(), dst.tolist(), strict=True))


def test_exact_count_and_id_range(spark):
    df = generate_rmat(spark, num_edges=4321, scale=9, seed=2, chunk_size=1000, partitions=2)
    row = df.agg(
        F.count("*").alias("n"),
        F.least(F.min("src"), F.min("dst")).alias("lo"),
        F.greatest(F.max("src"), F.max("dst")).alias("hi"),
    ).first()
    assert row.n == 4321
    assert row.lo >= 0 and row.hi < 2**9
    assert row.hi >= 2**8  # the top bit is used: ids span the whole range


def test_default_scale_is_graph500_edge_factor():
    assert default_scale(1_000_000) == 16  # ceil(log2(62500)) = 16
    assert default_scale(16 * 2**20) == 20
    assert default_scale(16 * 2**20 + 1) == 21
    assert default_scale(1) == 1
    assert RmatSpec.create(num_edges=20_000).scale == 11  # ceil(log2(1250)) = 11


def test_degree_skew_matches_rmat_and_differs_from_uniform(spark):
    def degrees(**kw):
        df = generate_rmat(spark, num_edges=20_000, scale=10, seed=5, chunk_size=4096, **kw)
        ends = df.select(F.col("src").alias("v")).unionAll(df.select(F.col("dst").alias("v")))
        return ends.groupBy("v").count().orderBy(F.desc("count"), "v").limit(10).collect()

    top = degrees()
    # Vertex 0 is the corner of quadrant a at every level: P(src = 0) = (a+b)^scale and
    # P(dst = 0) = (a+c)^scale, so its expected degree is 20000 * 2 * 0.76^10 = 2573.
    assert top[0].v == 0
    assert abs(top[0]["count"] - 2 * 20_000 * 0.76**10) < 0.1 * 2573
    share = sum(r["count"] for r in top) / 40_000
    assert share > 0.2  # the top 1% of ids hold over 20% of all endpoints
    uniform = degrees(a=0.25, b=0.25, c=0.25, d=0.25)
    assert sum(r["count"] for r in uniform) / 40_000 < 0.03  # uniform: about 1%


def test_different_seed_gives_different_graph(spark):
    kw = dict(num_edges=2000, scale=12, chunk_size=500, partitions=2)
    g1 = _rows(generate_rmat(spark, seed=1, **kw))
    g2 = _rows(generate_rmat(spark, seed=2, **kw))
    same_position = sum(x == y for x, y in zip(g1, g2, strict=True))
    assert same_position < 0.2 * len(g1)
    assert set(g1) != set(g2)


def test_noise_changes_levels_but_keeps_contract(spark):
    spec = RmatSpec.create(num_edges=1000, scale=8, seed=3, noise=0.1)
    thr = spec.level_thresholds()
    assert thr.shape == (8, 3)
    assert np.all(np.diff(thr, axis=1) >= 0) and np.all(thr[:, 2] <= 1.0 + 1e-6)
    assert len(np.unique(thr[:, 0])) == 8  # one perturbation per level
    plain = RmatSpec.create(num_edges=1000, scale=8, seed=3).level_thresholds()
    np.testing.assert_allclose(plain, np.tile([0.57, 0.76, 0.95], (8, 1)), rtol=1e-6)
    df = generate_rmat(spark, num_edges=1000, scale=8, seed=3, noise=0.1, partitions=2)
    assert df.count() == 1000
    assert _rows(df) != _rows(generate_rmat(spark, num_edges=1000, scale=8, seed=3))


def test_scramble_is_a_bijection_and_keeps_range():
    keys = RmatSpec.create(num_edges=10, seed=9).scramble_keys()
    for scale in (1, 2, 5, 11):
        out = scramble(np.arange(2**scale, dtype=np.int64), scale, keys)
        assert sorted(out.tolist()) == list(range(2**scale))
    ids = np.arange(2**11, dtype=np.int64)
    assert not np.array_equal(scramble(ids, 11, keys), ids)


def test_self_loop_and_dedupe_flags(spark):
    kw = dict(num_edges=5000, scale=6, seed=4, partitions=2)  # 64 ids: many repeats
    raw = generate_rmat(spark, **kw)
    loops = raw.filter("src = dst").count()
    distinct = raw.distinct().count()
    assert loops > 0 and distinct < 5000
    no_loops = generate_rmat(spark, drop_self_loops=True, **kw)
    assert no_loops.count() == 5000 - loops
    both = generate_rmat(spark, drop_self_loops=True, dedupe=True, **kw)
    assert both.count() == raw.filter("src != dst").distinct().count()
    assert both.count() == both.distinct().count()


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(num_edges=0), "num_edges"),
        (dict(num_edges=10, a=0.5), "a, b, c, d"),
        (dict(num_edges=10, d=-0.1, a=0.77), "d"),
        (dict(num_edges=10, scale=0), "scale"),
        (dict(num_edges=10, noise=0.2), "noise"),
        (dict(num_edges=10, chunk_size=0), "chunk_size"),
    ],
)
def test_invalid_parameters_name_the_field(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        RmatSpec.create(**kwargs)


def test_job_writes_parquet_through_main(spark, tmp_path, capsys):
    out = tmp_path / "rmat"
    rc = rmat_main(["--edges", "2.5e3", "--seed", "7", "--out", str(out), "--chunk-size", "1000"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["rows"] == 2500 and summary["scale"] == default_scale(2500)
    written = spark.read.parquet(str(out))
    expected = generate_rmat(spark, num_edges=2500, seed=7, chunk_size=1000)
    assert written.count() == 2500
    assert written.exceptAll(expected).count() == 0 and expected.exceptAll(written).count() == 0
    # Refuses to overwrite unless asked, and rejects bad arguments with exit code 2.
    capsys.readouterr()
    assert rmat_main(["--edges", "100", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert line.startswith(f"error: --out {out}: ") and "already exists" in line.lower()
    assert "Traceback" not in err
    assert rmat_main(["--edges", "100", "--out", str(out), "--overwrite"]) == 0
    assert spark.read.parquet(str(out)).count() == 100
    assert rmat_main(["--edges", "100", "--a", "0.9", "--out", str(tmp_path / "x")]) == 2
    capsys.readouterr()
    assert rmat_main(["--edges", "1.5", "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: argument --edges: must be a whole number >= 1: '1.5'"
