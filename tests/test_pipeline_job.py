"""End to end through jobs.pipeline.main(argv) on a small LightGCN-format data set."""

import json

import numpy as np
import pytest

from jobs import aggregate, evaluate, pipeline, train


@pytest.fixture(scope="module")
def small_lightgcn(tmp_path_factory):
    rng = np.random.default_rng(3)
    root = tmp_path_factory.mktemp("lgcn")
    train, test = [], []
    for u in range(40):
        # Two communities of users and items, so that a trained model beats chance clearly.
        pool = np.arange(0, 30) if u % 2 == 0 else np.arange(30, 60)
        items = rng.choice(pool, size=12, replace=False)
        train.append(f"{u + 100} " + " ".join(str(i + 500) for i in items[:9]))
        test.append(f"{u + 100} " + " ".join(str(i + 500) for i in items[9:]))
    (root / "train.txt").write_text("\n".join(train) + "\n")
    (root / "test.txt").write_text("\n".join(test) + "\n")
    return root


def test_pipeline_end_to_end_and_resume(spark, small_lightgcn, tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = [
        "--run-dir",
        str(run_dir),
        "--set",
        f"ingest.train_path={small_lightgcn / 'train.txt'}",
        "--set",
        f"ingest.test_path={small_lightgcn / 'test.txt'}",
        "--set",
        "train.epochs=40",
        "--set",
        "train.batch_size=64",
        "--set",
        "train.lr=0.02",
        "--set",
        "model.dim=16",
        "--set",
        "model.layers=2",
        "--set",
        "export.top_k=5",
        "--set",
        "train.threads=1",
    ]
    assert pipeline.main(argv) == 0
    out = capsys.readouterr().out
    assert "Recall@5" in out and "NDCG@5" in out and str(run_dir) in out
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    assert metrics["users"] == 40
    # Random ranking of 51 unseen items gives recall@5 ~ 5/51 ~ 0.1; a trained model doubles it.
    assert metrics["recall@5"] > 0.2
    assert 0 < metrics["ndcg@5"] <= 1
    for stage in ("ingest", "train", "aggregate", "recommend", "export", "evaluate"):
        assert (run_dir / stage / "_STAGE.json").is_file()
    # 160 training interactions need one leaf: no partition stage. No scratch is left.
    assert not (run_dir / "partition").exists() and not (run_dir / "_work").exists()
    # The export stage wrote a faiss index another process can load.
    meta = json.loads((run_dir / "export" / "ann" / "meta.json").read_text())
    assert meta["kind"] == "ivf" and (run_dir / "export" / "ann" / "index.faiss").is_file()
    assert (run_dir / "config.yaml").is_file()

    from pyspark.sql import SparkSession

    s = SparkSession.getActiveSession() or spark
    recs = s.read.parquet(str(run_dir / "recommend" / "recommendations")).toPandas()
    assert len(recs) == 40 * 5
    assert set(recs["rank"]) == {1, 2, 3, 4, 5}
    # Original ids restored, and no training item is ever recommended back.
    train_pairs = set()
    for line in (small_lightgcn / "train.txt").read_text().split("\n"):
        if line:
            u, *items = line.split()
            train_pairs |= {(u, i) for i in items}
    assert set(recs["user_id"]) == {str(u + 100) for u in range(40)}
    assert not {(u, i) for u, i in zip(recs["user_id"], recs["item_id"], strict=True)} & train_pairs

    # A rerun skips every stage and reports the same figures.
    assert pipeline.main(argv) == 0
    again = capsys.readouterr().out
    statuses = {line.split()[0]: line.split()[2] for line in again.splitlines() if "{" in line}
    stages = ("ingest", "train", "aggregate", "recommend", "export", "evaluate")
    assert statuses == dict.fromkeys(stages, "skipped")
    assert json.loads((run_dir / "evaluate" / "metrics.json").read_text()) == metrics


def test_pipeline_bad_config_and_missing_input(tmp_path, capsys):
    assert pipeline.main(["--run-dir", str(tmp_path / "r"), "--set", "train.lr=-1"]) == 2
    assert "train.lr" in capsys.readouterr().err


def test_pipeline_reports_too_many_leaves_as_one_error_line(
    spark, small_lightgcn, tmp_path, capsys
):
    # The leaf count is checked against the graph when the partition stage starts, after ingest:
    # the job ends with one error line and exit code 2, and the finished ingest stage is kept.
    run_dir = tmp_path / "run"
    assert pipeline.main(_small_argv(small_lightgcn, run_dir, "partition.num_leaves=500")) == 2
    err = capsys.readouterr().err
    assert "error: partition.num_leaves: asks for 500 leaves but the graph has only" in err
    assert (run_dir / "ingest" / "_STAGE.json").is_file()
    assert not (run_dir / "partition" / "_STAGE.json").exists()


def job_argv(data, run_dir, *sets: str) -> list[str]:
    """A job's arguments: ``--run-dir`` and one ``--set`` per item of ``sets``, after the ingest
    paths of ``data``'s ``train.txt`` and ``test.txt``."""
    paths = [f"ingest.train_path={data / 'train.txt'}", f"ingest.test_path={data / 'test.txt'}"]
    return ["--run-dir", str(run_dir)] + [x for s in [*paths, *sets] for x in ("--set", s)]


def _small_argv(data, run_dir, *extra: str) -> list[str]:
    sets = ["train.epochs=20", "train.batch_size=64", "train.lr=0.02", "model.dim=16"]
    sets += ["model.layers=2", "export.top_k=5", "train.threads=1"]
    return job_argv(data, run_dir, *sets, *extra)


@pytest.fixture(scope="module")
def four_communities(tmp_path_factory):
    """80 users, 4 communities of 15 items: each of 2 leaves holds 2 communities, so a leaf's
    negative samples include the other community's items (as in any real leaf)."""
    rng = np.random.default_rng(5)
    root = tmp_path_factory.mktemp("lgcn4")
    train, test = [], []
    for u in range(80):
        pool = np.arange(15) + 15 * (u % 4)
        items = rng.choice(pool, size=12, replace=False)
        train.append(f"{u} " + " ".join(str(i) for i in items[:9]))
        test.append(f"{u} " + " ".join(str(i) for i in items[9:]))
    (root / "train.txt").write_text("\n".join(train) + "\n")
    (root / "test.txt").write_text("\n".join(test) + "\n")
    return root


def test_partitioned_run_trains_every_leaf_and_aggregates(
    spark, four_communities, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    argv = _small_argv(four_communities, run_dir, "partition.num_leaves=2", "train.rounds=2")
    assert pipeline.main(argv) == 0
    capsys.readouterr()
    assert (run_dir / "partition" / "_STAGE.json").is_file()
    from pyspark.sql import SparkSession

    s = SparkSession.getActiveSession() or spark
    logs = s.read.parquet(str(run_dir / "train" / "leaf_logs")).toPandas()
    # Two leaves, two rounds: one loss curve per leaf and round.
    assert sorted(zip(logs["leaf_id"], logs["round"], strict=True)) == [
        (0, 1),
        (0, 2),
        (1, 1),
        (1, 2),
    ]
    emb = s.read.parquet(str(run_dir / "aggregate" / "embeddings")).toPandas()
    assert (emb["kind"] == "user").sum() == 80 and (emb["kind"] == "item").sum() == 60
    assert emb.groupby(["kind", "node_id"]).size().max() == 1
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    # Chance: 3 test items among 51 unseen, recall@5 ~ 0.1; the community model far above it.
    assert metrics["users"] == 80 and metrics["recall@5"] > 0.25

    # Another leaf bound: the partition, made with the old one, is refused; with --rerun-stale
    # it is remade, and a leaf over the bound is rejected with a clear error. The finished train
    # stage stays.
    marker = (run_dir / "train" / "_STAGE.json").read_text()
    bound = argv + ["--set", "partition.max_edges_per_leaf=100"]
    assert train.main(bound) == 2
    errors = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert errors == [
        "error: stage partition was made with a different config (partition differs); rerun it "
        f"or pass --rerun-stale ({run_dir / 'partition'})"
    ]
    assert train.main([*bound, "--rerun-stale"]) == 2
    err = capsys.readouterr().err
    assert "partition.max_edges_per_leaf: leaf 0 holds 360 training edges" in err
    assert "2 of 2 leaves" in err
    assert (run_dir / "train" / "_STAGE.json").read_text() == marker


def test_stage_jobs_refuse_a_missing_upstream_stage(small_lightgcn, tmp_path, capsys):
    run_dir = tmp_path / "empty-run"
    for job, upstream in ((train, "ingest"), (aggregate, "train"), (evaluate, "recommend")):
        assert job.main(_small_argv(small_lightgcn, run_dir)) == 2
        err = capsys.readouterr().err
        assert f"stage '{upstream}' has not finished" in err and str(run_dir) in err
        assert not (run_dir / job.__name__.split(".")[-1]).exists()
