"""A stage made with another config is never reused: refused naming the section, or rerun.

The first tests run :func:`pipelines.registry.run_one_stage` on a table of stand-in stages (no
Spark): each body writes what it read, so a reused stale input would show. The last ones run
the real stage jobs on a tiny two-leaf run, one of them after a forget job.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from jobs import aggregate, evaluate, export, forget, ingest, partition, pipeline, recommend, train
from pipelines.core.config import PipelineConfig, load_config
from pipelines.core.stages import (
    MissingStageError,
    StageKey,
    StaleStageError,
    read_marker,
    run_stage,
    scratch_dir,
)
from pipelines.core.versions import current_version
from pipelines.registry import Stage, fresh_stages, run_one_stage, stage_key
from tests.test_forget import _argv as forget_argv
from tests.test_forget import _data as forget_data
from tests.test_forget import _requests
from tests.test_pipeline_job import job_argv

CALLS: list[str] = []
NO_SPARK: Any = None  # the stand-in stages need no session


def _marker(run_dir: Path, name: str) -> dict[str, Any]:
    marker = read_marker(run_dir, name)
    assert marker is not None, name
    return marker


def _body(name: str, needs: tuple[str, ...]) -> Any:
    """A stage body writing ``value.json``: its ingest path and the values it read."""

    def body(spark: Any, cfg: PipelineConfig, run_dir: Path, out: Path) -> dict:
        CALLS.append(name)
        read = {u: json.loads((run_dir / u / "value.json").read_text()) for u in needs}
        if name == "train" and (run_dir / "partition").is_dir():
            read["partition"] = json.loads((run_dir / "partition" / "value.json").read_text())
        value = {"path": cfg.ingest.train_path, "hops": cfg.partition.halo_hops, "read": read}
        (out / "value.json").write_text(json.dumps(value))
        return {"rows": 1}

    return body


_TRAINED = ("ingest", "partition", "run", "model", "train")
FAKE = {
    s.name: s
    for s in (
        Stage("ingest", ("ingest",), _body("ingest", ())),
        Stage("partition", _TRAINED[:3], _body("partition", ("ingest",)), ("ingest",)),
        Stage("train", _TRAINED, _body("train", ("ingest",)), ("ingest",), reads_partition=True),
        Stage("aggregate", _TRAINED, _body("aggregate", ("train",)), ("train",)),
    )
}


def _cfg(*sets: str) -> PipelineConfig:
    return load_config(None, ["ingest.train_path=a.txt", "partition.num_leaves=2", *sets])


def _run(cfg: PipelineConfig, run_dir: Path, *names: str, rerun: bool = False) -> list[bool]:
    return [
        run_one_stage(NO_SPARK, cfg, run_dir, n, stages=FAKE, rerun_stale=rerun).skipped
        for n in names
    ]


def _value(run_dir: Path, name: str) -> dict:
    return json.loads((run_dir / name / "value.json").read_text())


def _stale(run_dir: Path, stage: str, why: str) -> str:
    return (
        f"stage {stage} was made with a different config ({why}); rerun it or pass "
        f"--rerun-stale ({run_dir / stage})"
    )


def test_stale_upstream_is_refused_naming_stage_and_section_or_rerun(tmp_path):
    CALLS.clear()
    run_dir = tmp_path / "run"
    assert _run(_cfg(), run_dir, "ingest", "partition", "train", "aggregate") == [False] * 4
    hashes = {n: _marker(run_dir, n)["config_hash"] for n in FAKE}
    new = _cfg("ingest.train_path=b.txt")
    for name in ("partition", "train", "aggregate"):  # the first stale stage upstream is named
        with pytest.raises(StaleStageError) as err:
            _run(new, run_dir, name)
        assert str(err.value) == _stale(run_dir, "ingest", "ingest differs")
    assert {n: _marker(run_dir, n)["config_hash"] for n in FAKE} == hashes
    assert _run(new, run_dir, "ingest") == [False]
    with pytest.raises(StaleStageError) as err:  # partition read the old ingest
        _run(new, run_dir, "aggregate")
    assert str(err.value) == _stale(run_dir, "partition", "ingest differs")
    assert CALLS == ["ingest", "partition", "train", "aggregate", "ingest"]
    assert _run(new, run_dir, "aggregate", rerun=True) == [False]
    assert CALLS[5:] == ["partition", "train", "aggregate"]  # in order, each once
    agg = _value(run_dir, "aggregate")
    assert agg["path"] == "b.txt" and agg["read"]["train"]["read"]["partition"]["path"] == "b.txt"
    assert _run(new, run_dir, "ingest", "partition", "train", "aggregate") == [True] * 4
    assert len(CALLS) == 8
    # A partition setting makes partition, train and aggregate stale, not ingest.
    hops = _cfg("ingest.train_path=b.txt", "partition.halo_hops=2")
    with pytest.raises(StaleStageError) as err:
        _run(hops, run_dir, "aggregate")
    assert str(err.value) == _stale(run_dir, "partition", "partition differs")
    assert _run(hops, run_dir, "train", rerun=True) == [False]
    assert CALLS[8:] == ["partition", "train"]
    # The stage a job runs is rerun when its own config differs (its inputs are fresh).
    assert _run(hops, run_dir, "aggregate") == [False]
    assert _value(run_dir, "aggregate")["read"]["train"]["read"]["partition"]["hops"] == 2


def test_train_depends_on_the_partition_of_a_partitioned_run(tmp_path):
    run_dir = tmp_path / "run"
    one_leaf = _cfg("partition.num_leaves=0")
    assert _run(one_leaf, run_dir, "ingest", "train", "aggregate") == [False] * 3
    assert _marker(run_dir, "train")["upstream"].keys() == {"ingest"}
    with pytest.raises(MissingStageError) as missing:  # two leaves asked for: partition read
        _run(_cfg(), run_dir, "train")
    assert f"{run_dir / 'partition'}: stage 'partition' has not finished" in str(missing.value)
    assert _run(one_leaf, run_dir, "partition") == [False]
    # The run now has a partition the train stage would read: the old train is stale.
    with pytest.raises(StaleStageError) as err:
        _run(one_leaf, run_dir, "aggregate")
    assert str(err.value) == _stale(run_dir, "train", "made without stage partition")
    assert _run(one_leaf, run_dir, "aggregate", rerun=True) == [False]
    assert _value(run_dir, "aggregate")["read"]["train"]["read"]["partition"]["hops"] == 1
    assert _marker(run_dir, "train")["upstream"].keys() == {"ingest", "partition"}


def test_a_job_outside_the_registry_keys_on_fresh_stages(tmp_path, monkeypatch):
    import pipelines.registry as registry

    monkeypatch.setattr(registry, "STAGES", FAKE)
    run_dir = tmp_path / "run"
    assert _run(_cfg(), run_dir, "ingest", "partition", "train", "aggregate") == [False] * 4
    keys = fresh_stages(NO_SPARK, _cfg(), run_dir, "serve", ("aggregate",))
    assert keys == {"aggregate": _marker(run_dir, "aggregate")["config_hash"]}
    with pytest.raises(StaleStageError) as err:
        fresh_stages(NO_SPARK, _cfg("model.dim=8"), run_dir, "serve", ("aggregate",))
    assert str(err.value) == _stale(run_dir, "train", "model differs")
    with pytest.raises(MissingStageError, match="run it before 'serve'"):
        fresh_stages(NO_SPARK, _cfg(), tmp_path / "empty", "serve", ("aggregate",))
    # A stand-in output keyed as made with the config is taken without the stages before it;
    # rerunning it needs them.
    stand_in = tmp_path / "stand-in"
    key = stage_key(_cfg(), stand_in, "aggregate")
    assert key.hash == keys["aggregate"]
    run_stage(stand_in, "aggregate", key.hash, lambda out: {"rows": 1}, record=key.record())
    assert fresh_stages(NO_SPARK, _cfg(), stand_in, "serve", ("aggregate",)) == keys
    with pytest.raises(MissingStageError, match="stage 'train' has not finished.*'aggregate'"):
        fresh_stages(NO_SPARK, _cfg("model.dim=8"), stand_in, "s", ("aggregate",), rerun_stale=True)


def test_missing_upstream_is_named_before_its_own_inputs(tmp_path):
    with pytest.raises(MissingStageError) as err:
        _run(_cfg(), tmp_path, "aggregate")
    assert not isinstance(err.value, StaleStageError)
    assert str(err.value) == (
        f"{tmp_path / 'train'}: stage 'train' has not finished in this run directory; "
        "run it before 'aggregate'"
    )


def test_stage_reads_and_writes_the_current_version(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "versions" / "v1").mkdir(parents=True)
    (run_dir / "CURRENT").write_text("versions/v1\n")
    assert _run(_cfg(), run_dir, "ingest", "partition") == [False, False]
    assert not (run_dir / "ingest").exists() and not (run_dir / "partition").exists()
    v1 = current_version(run_dir)
    assert _value(v1, "partition")["read"]["ingest"]["path"] == "a.txt"


def test_scratch_is_kept_until_the_marker_then_deleted(tmp_path):
    run_dir = tmp_path / "run"
    seen: list[bool] = []

    def resumable(spark: Any, cfg: PipelineConfig, rd: Path, out: Path) -> dict:
        work = scratch_dir(rd, "ingest", "k")
        seen.append((work / "round-1").is_file())  # resumed from the killed attempt's round
        work.mkdir(parents=True, exist_ok=True)
        (work / "round-1").write_text("1")
        if len(seen) == 1:
            raise RuntimeError("killed after round 1")
        return {"rows": 1}

    stages = {"ingest": Stage("ingest", ("ingest",), resumable)}
    scratch_dir(run_dir, "ingest", "other-config").mkdir(parents=True)
    with pytest.raises(RuntimeError):
        run_one_stage(NO_SPARK, _cfg(), run_dir, "ingest", stages=stages)
    assert (scratch_dir(run_dir, "ingest", "k") / "round-1").is_file()
    run_one_stage(NO_SPARK, _cfg(), run_dir, "ingest", stages=stages)
    assert seen == [False, True]
    assert read_marker(run_dir, "ingest") is not None and not (run_dir / "_work").exists()


def test_stage_key_of_a_stage_without_upstream_is_its_section_hash():
    key = StageKey("abc", {"ingest": "abc"}, {})
    assert key.hash == "abc"  # ingest markers of earlier runs stay valid
    with_up = StageKey("abc", {"ingest": "abc"}, {"ingest": "h1"})
    assert with_up.hash not in ("abc", StageKey("abc", {}, {"ingest": "h2"}).hash)
    assert len(with_up.hash) == 16
    assert with_up.matches({"config_hash": with_up.hash, "upstream": {"ingest": "h1"}})
    # A marker from before upstream keys were recorded: its hash covered the sections only.
    assert with_up.matches({"config_hash": "abc"})
    assert not with_up.matches({"config_hash": "abc", "upstream": {"ingest": "h1"}})
    assert not with_up.matches({"config_hash": "other"})


# --------------------------------------------------------------------------- real jobs


def _tiny(root: Path) -> Path:
    """24 users in two communities of 10 items; ``train_b.txt`` drops the last 4 users."""
    train_rows, test_rows = [], []
    for u in range(24):
        items = [(u + k) % 10 + 10 * (u % 2) for k in range(6)]
        train_rows.append(f"{u} " + " ".join(map(str, items[:4])))
        test_rows.append(f"{u} " + " ".join(map(str, items[4:])))
    (root / "train.txt").write_text("\n".join(train_rows) + "\n")
    (root / "train_b.txt").write_text("\n".join(train_rows[:20]) + "\n")
    (root / "test.txt").write_text("\n".join(test_rows) + "\n")
    return root


def _argv(root: Path, run_dir: Path, *extra: str) -> list[str]:
    sets = ["train.epochs=2", "train.rounds=1", "train.batch_size=64", "model.dim=8"]
    sets += ["model.layers=1", "export.top_k=3", "export.ann_index=flat", "train.threads=1"]
    sets += ["partition.num_leaves=2", "spark.shuffle_partitions=2"]
    return job_argv(root, run_dir, *sets, *extra)


def _hashes(run_dir: Path) -> dict[str, str]:
    names = ("ingest", "partition", "train", "aggregate", "recommend", "export", "evaluate")
    return {n: _marker(run_dir, n)["config_hash"] for n in names}


def test_every_stage_job_refuses_a_stale_upstream_or_reruns_it(spark, tmp_path, capsys):
    root = _tiny(tmp_path)
    run_dir = tmp_path / "run"
    assert pipeline.main(_argv(root, run_dir)) == 0
    assert not (run_dir / "_work").exists()  # the train stage's rounds are deleted
    before = _hashes(run_dir)
    capsys.readouterr()
    b = _argv(root, run_dir, f"ingest.train_path={root / 'train_b.txt'}")
    for job in (partition, train, aggregate, recommend, export, evaluate):
        assert job.main(b) == 2, job.__name__
        err = capsys.readouterr().err.splitlines()
        errors = [x for x in err if x.startswith("error:")]
        assert errors == [f"error: {_stale(run_dir, 'ingest', 'ingest differs')}"], job.__name__
        assert "Traceback" not in "\n".join(err)
    assert _hashes(run_dir) == before
    assert ingest.main(b) == 0 and "ingest done in" in capsys.readouterr().out
    for job in (train, evaluate):
        assert job.main(b) == 2
        assert _stale(run_dir, "partition", "ingest differs") in capsys.readouterr().err
    assert evaluate.main([*b, "--rerun-stale"]) == 0
    after = _hashes(run_dir)
    changed = {n for n in after if after[n] != before[n]}
    assert changed == {"ingest", "partition", "train", "aggregate", "recommend", "evaluate"}
    users = pd.read_parquet(run_dir / "partition" / "assignment").query("kind == 'user'")
    assert len(users) == 20  # partitioned from train_b.txt
    assert not (run_dir / "_work").exists()
    capsys.readouterr()
    assert export.main(b) == 0 and "export done in" in capsys.readouterr().out  # its own config
    assert pipeline.main(b) == 0
    statuses = [line.split()[2] for line in capsys.readouterr().out.splitlines() if "{" in line]
    assert statuses == ["skipped"] * 7


def test_partition_job_after_a_forget_reads_the_current_version(spark, tmp_path, capsys):
    forget_data(tmp_path)
    run_dir = tmp_path / "run"
    argv = forget_argv(tmp_path, run_dir)
    assert pipeline.main(argv) == 0
    req = _requests(tmp_path / "req.csv", [("r1", "user", "105", "")])
    assert forget.main([*argv, "--requests", str(req), "--steps", "2"]) == 0
    v1 = current_version(run_dir)
    assert v1.name == "v1" and not (run_dir / "ingest").exists()
    capsys.readouterr()
    assert partition.main(argv) == 0 and "skipped (already done)" in capsys.readouterr().out
    assert partition.main([*argv, "--set", "partition.halo_hops=2"]) == 0
    assert "partition done in" in capsys.readouterr().out
    assert not (run_dir / "partition").exists()
    dictionary = pd.read_parquet(v1 / "ingest" / "dictionary").query("kind == 'user'")
    users = pd.read_parquet(v1 / "partition" / "assignment").query("kind == 'user'")
    originals = set(dictionary.set_index("node_id").loc[users["node_id"], "original_id"])
    assert len(originals) == 39 and "105" not in originals
    # train reads that partition: made with halo_hops=2, so refused with the run's config
    assert train.main(argv) == 2
    assert _stale(v1, "partition", "partition differs") in capsys.readouterr().err
    assert partition.main([*argv, "--set", "ingest.train_path=/elsewhere.txt"]) == 2
    assert _stale(v1, "ingest", "ingest differs") in capsys.readouterr().err


def test_kg_stage_job_refuses_a_stale_upstream(spark, tmp_path, capsys):
    from jobs import kg
    from tests.test_kg_job import _argv as kg_argv

    ring = [(f"e{i}", "next", f"e{(i + 1) % 12}") for i in range(12)]
    (tmp_path / "train.txt").write_text("".join("\t".join(t) + "\n" for t in ring[2:]))
    (tmp_path / "test.txt").write_text("".join("\t".join(t) + "\n" for t in ring[:2]))
    run_dir = tmp_path / "kg"
    argv = kg_argv(tmp_path, run_dir)
    for stage in ("ingest", "partition"):
        assert kg.main([*argv, "--stage", stage]) == 0
    capsys.readouterr()
    (tmp_path / "test2.txt").write_text("".join("\t".join(t) + "\n" for t in ring[:1]))
    other_test = [*argv, "--set", f"ingest.test_path={tmp_path / 'test2.txt'}"]
    assert kg.main([*other_test, "--stage", "nbfnet-train"]) == 2
    assert _stale(run_dir, "ingest", "ingest differs") in capsys.readouterr().err
    assert kg.main([*argv, "--stage", "partition", "--set", "partition.halo_hops=2"]) == 0
    capsys.readouterr()
    assert kg.main([*argv, "--stage", "nbfnet-evaluate"]) == 2  # nbfnet-train missing first
    assert "stage 'nbfnet-train' has not finished" in capsys.readouterr().err
    assert kg.main([*argv, "--stage", "nbfnet-train"]) == 2
    assert _stale(run_dir, "partition", "partition differs") in capsys.readouterr().err
    assert not (run_dir / "nbfnet-train").exists()
