"""End to end through jobs.kg.main(argv): triples -> partition -> NBFNet in Spark -> ranks."""

import json
import re

import pandas as pd
import pytest

from jobs import kg

N = 24


@pytest.fixture(scope="module")
def ring_kg(tmp_path_factory):
    """A 24-ring of named entities with 'next' and 'skip' relations; 4 triples held out."""
    root = tmp_path_factory.mktemp("kg")
    triples = [(f"e{i}", "next", f"e{(i + 1) % N}") for i in range(N)]
    triples += [(f"e{i}", "skip", f"e{(i + 2) % N}") for i in range(N)]
    test = [triples[3], triples[15], triples[N + 7], triples[N + 20]]
    train = [t for t in triples if t not in test]
    (root / "train.txt").write_text("".join("\t".join(t) + "\n" for t in train))
    (root / "test.txt").write_text("".join("\t".join(t) + "\n" for t in test))
    return root


def _argv(root, run_dir, *extra):
    sets = {
        "ingest.train_path": root / "train.txt",
        "ingest.test_path": root / "test.txt",
        "ingest.format": "triples",
        "ingest.numeric_ids": "false",
        "partition.num_leaves": 2,
        "nbfnet.dim": 8,
        "nbfnet.layers": 2,
        "nbfnet.rounds": 2,
        "nbfnet.steps_per_round": 3,
        "nbfnet.batch_size": 2,
        "nbfnet.num_negative": 4,
        "nbfnet.device": "cpu",
        "nbfnet.threads": 1,
    }
    argv = ["--config", "deploy/configs/kg_local.yaml", "--run-dir", str(run_dir)]
    for key, value in sets.items():
        argv += ["--set", f"{key}={value}"]
    for item in extra:
        argv += ["--set", item]
    return argv


def _skipped(out: str) -> set[str]:
    """Stages the job's table reports as skipped."""
    return {m.group(1) for m in re.finditer(r"^(\S+)\s+[\d.]+\s+skipped", out, re.M)}


def test_kg_job_end_to_end_and_resume(spark, ring_kg, tmp_path, capsys):
    import torch

    from gnn.engine.nbfnet import build_model
    from pipelines.core.config import load_config
    from pipelines.kg.run import MODEL_FILE
    from pipelines.kg.seam import load_model, model_bytes, train_config

    run_dir = tmp_path / "run"
    assert kg.main(_argv(ring_kg, run_dir)) == 0
    out = capsys.readouterr().out
    assert "MRR" in out and "Hits@10" in out
    stages = ("ingest", "partition", "nbfnet-train", "nbfnet-evaluate")
    for stage in stages:
        assert (run_dir / stage / "_STAGE.json").is_file()

    train_marker = json.loads((run_dir / "nbfnet-train" / "_STAGE.json").read_text())
    assert train_marker["counts"]["entities"] == N and train_marker["counts"]["relations"] == 2
    history = json.loads((run_dir / "nbfnet-train" / "history.json").read_text())
    assert [h["round"] for h in history] == [1, 2]
    assert history[0]["queries"] == 88  # each of 44 training triples: a tail and a head query
    assert f"final loss {history[-1]['loss']:.4f} over 88 queries" in out

    cfg = load_config("deploy/configs/kg_local.yaml", [f"run.seed={0}", "nbfnet.dim=8",
                                                       "nbfnet.layers=2"])  # fmt: skip
    trained = (run_dir / "nbfnet-train" / MODEL_FILE).read_bytes()
    torch.manual_seed(0)
    seeded = model_bytes(build_model(4, train_config(cfg)))
    assert trained != seeded  # the rounds moved the parameters
    load_model(trained, train_config(cfg), 2)  # and they load into the configured model

    ranks = pd.read_parquet(run_dir / "nbfnet-evaluate" / "ranks")
    ids = ranks["query_id"].to_numpy()
    assert len(ranks) == 8 and len(set(ids)) == 8  # 4 test triples, tail + head each
    assert sorted(ids % 2) == [0, 0, 0, 0, 1, 1, 1, 1]  # even: tail query, odd: head query
    assert ranks["rank"].between(1, N).all()
    metrics = json.loads((run_dir / "nbfnet-evaluate" / "metrics.json").read_text())
    assert metrics["queries"] == 8
    assert metrics["mrr"] == pytest.approx((1.0 / ranks["rank"]).mean())
    assert metrics["hits@10"] == pytest.approx((ranks["rank"] <= 10).mean())
    assert metrics["coverage"] == pytest.approx(ranks["inside"].mean())

    # resume: every stage is skipped, the same metrics come back
    assert kg.main(_argv(ring_kg, run_dir)) == 0
    assert json.loads((run_dir / "nbfnet-evaluate" / "metrics.json").read_text()) == metrics
    for stage in stages:
        marker = json.loads((run_dir / stage / "_STAGE.json").read_text())
        assert marker["config_hash"]
    out = capsys.readouterr().out
    assert _skipped(out) == set(stages)

    # a changed nbfnet key reruns training and evaluation only, deterministically per seed
    again = kg.main(_argv(ring_kg, run_dir, "nbfnet.test_queries=2"))
    assert again == 0
    out = capsys.readouterr().out
    assert _skipped(out) == {"ingest", "partition"}
    fewer = pd.read_parquet(run_dir / "nbfnet-evaluate" / "ranks")
    assert len(fewer) == 4
    assert (run_dir / "nbfnet-train" / MODEL_FILE).read_bytes() == trained


def test_kg_job_rejects_a_non_triples_config(spark, ring_kg, tmp_path, capsys):
    code = kg.main(_argv(ring_kg, tmp_path / "bad", "ingest.format=edges"))
    assert code == 2
    assert "ingest.format" in capsys.readouterr().err


def test_kg_job_runs_one_stage_when_asked(spark, ring_kg, tmp_path, capsys):
    run_dir = tmp_path / "staged"
    # a stage whose input stage has not run fails with exit 2 naming it, and writes nothing
    assert kg.main([*_argv(ring_kg, run_dir), "--stage", "partition"]) == 2
    assert "stage 'ingest' has not finished" in capsys.readouterr().err
    assert not (run_dir / "partition").exists()

    assert kg.main([*_argv(ring_kg, run_dir), "--stage", "ingest"]) == 0
    out = capsys.readouterr().out
    assert "no metrics yet" in out
    assert [p.name for p in sorted(run_dir.iterdir()) if p.is_dir()] == ["ingest"]
    for stage in ("partition", "nbfnet-train", "nbfnet-evaluate"):
        assert kg.main([*_argv(ring_kg, run_dir), "--stage", stage]) == 0
    out = capsys.readouterr().out
    assert "MRR" in out  # the last one ranked the 8 test queries
    metrics = json.loads((run_dir / "nbfnet-evaluate" / "metrics.json").read_text())
    assert metrics["queries"] == 8
    # the whole job on top skips all four stages
    assert kg.main(_argv(ring_kg, run_dir)) == 0
    assert _skipped(capsys.readouterr().out) == {
        "ingest",
        "partition",
        "nbfnet-train",
        "nbfnet-evaluate",
    }
