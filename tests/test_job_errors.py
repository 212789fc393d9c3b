"""Every job, given a broken input, prints exactly one ``error:`` line and exits 2, no traceback.

Each job of ``jobs/`` runs through its ``main(argv)``. Config, argument and run-dir errors are
refused before Spark starts; the cases that need an upstream stage or an input file use the
session's SparkSession (``spark`` fixture) and fail before any Spark job runs.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

#: Every job module; ``rmat`` takes no config (its own cases below).
CONFIG_JOBS = (
    "ingest",
    "partition",
    "train",
    "aggregate",
    "recommend",
    "export",
    "evaluate",
    "report",
    "serve_load",
    "forget",
    "kg",
    "pipeline",
)
ALL_JOBS = (*CONFIG_JOBS, "rmat")


def test_every_job_module_is_covered():
    jobs_dir = Path(__file__).resolve().parents[1] / "jobs"
    found = {p.stem for p in jobs_dir.glob("*.py")} - {"__init__", "common"}
    assert found == set(ALL_JOBS)


def refused(capsys: pytest.CaptureFixture[str], job: str, argv: list[str]) -> str:
    """Run ``jobs.<job>.main(argv)``: assert exit 2, one ``error:`` line and no traceback."""
    capsys.readouterr()
    code = importlib.import_module(f"jobs.{job}").main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def requests_csv(tmp_path: Path) -> Path:
    """A valid forget request file (the forget job reads it before its config)."""
    path = tmp_path / "requests.csv"
    path.write_text("request_id,kind,id,other_id,timestamp\nr1,user,5,,2026-11-27\n")
    return path


def _extra(job: str, requests_csv: Path) -> list[str]:
    return ["--requests", str(requests_csv)] if job == "forget" else []


#: (--set value or None, the error line's start) of the config cases every job must refuse.
BAD_SETS = [
    ("train.lrr=1", "error: train.lrr: unknown key"),
    ("train.epochs=.inf", "error: train.epochs: must be a finite number, got inf"),
    ("run.seed=.nan", "error: run.seed: must be a finite number, got nan"),
    ("train.lr=nan", "error: train.lr: must be a finite number, got nan"),
    ("ingest.format=xml", "error: ingest.format: must be one of"),
    ("train.epochs", "error: --set 'train.epochs': expected KEY=VALUE"),
    (
        "train.lr=!!python/object/apply:os.system ['true']",
        "error: train.lr: YAML tag !!python/object/apply:os.system is not allowed",
    ),
]


@pytest.mark.parametrize("job", CONFIG_JOBS)
@pytest.mark.parametrize("override, start", BAD_SETS)
def test_bad_set_is_one_line_and_nothing_is_written(
    capsys, tmp_path, requests_csv, job, override, start
):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("the record of a finished run\n")
    argv = ["--run-dir", str(run_dir), "--set", override, *_extra(job, requests_csv)]
    assert refused(capsys, job, argv).startswith(start)
    assert (run_dir / "config.yaml").read_text() == "the record of a finished run\n"
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml"]


@pytest.mark.parametrize("job", CONFIG_JOBS)
def test_bad_config_file_is_one_line(capsys, tmp_path, requests_csv, job):
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("train: !!python/object/apply:os.system ['true']\n")
    inf = tmp_path / "inf.yaml"
    inf.write_text("train:\n  epochs: .inf\n")
    run = ["--run-dir", str(tmp_path / "run"), *_extra(job, requests_csv)]
    line = refused(capsys, job, ["--config", str(unsafe), *run])
    assert line == (
        f"error: config file {unsafe}: invalid YAML: line 1, column 8: YAML tag "
        "!!python/object/apply:os.system is not allowed (plain values only)"
    )
    line = refused(capsys, job, ["--config", str(inf), *run])
    assert line == "error: train.epochs: must be a finite number, got inf"
    missing = tmp_path / "missing.yaml"
    line = refused(capsys, job, ["--config", str(missing), *run])
    assert line == f"error: config file {missing}: not found"
    assert not (tmp_path / "run" / "config.yaml").exists()


@pytest.mark.parametrize("job", CONFIG_JOBS)
def test_bad_command_line_and_run_dir_are_one_line(capsys, tmp_path, requests_csv, job):
    extra = _extra(job, requests_csv)
    a_file = tmp_path / "finished.txt"
    a_file.write_text("not a folder\n")
    line = refused(capsys, job, ["--run-dir", str(a_file), *extra])
    assert line == f"error: argument --run-dir: {a_file} is a file, not a folder"
    line = refused(capsys, job, ["--run-dir", str(a_file / "run"), *extra])
    assert (
        line == f"error: argument --run-dir: {a_file} (in {a_file / 'run'}) is a file, not a folder"
    )
    assert a_file.read_text() == "not a folder\n"
    line = refused(capsys, job, ["--run-dir", "", *extra])
    assert line == "error: argument --run-dir: empty value: name the run's folder"
    line = refused(capsys, job, ["--run-dir", " ", *extra])
    assert line == "error: argument --run-dir: empty value: name the run's folder"
    line = refused(capsys, job, extra)
    assert line.startswith("error: the following arguments are required: --run-dir")
    line = refused(capsys, job, ["--run-dir", str(tmp_path / "r"), "--bogus", *extra])
    assert line == "error: unrecognized arguments: --bogus"


def test_debug_adds_the_traceback(capsys, tmp_path):
    from jobs import train

    capsys.readouterr()
    assert train.main(["--run-dir", str(tmp_path), "--set", "train.epochs=.inf", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert [ln for ln in err.splitlines() if ln.startswith("error:")] == [
        "error: train.epochs: must be a finite number, got inf"
    ]


def test_an_unexpected_failure_is_one_line_naming_the_job(capsys, tmp_path, monkeypatch):
    import jobs.common
    from jobs import aggregate

    def broken(args, job_name):
        raise RuntimeError(
            "An error occurred while calling o42.parquet.\n: org.apache.spark.SparkException: "
            "Job aborted\n\tat org.apache.Foo(Foo.java:1)\nCaused by: java.io.EOFException: "
            "Unexpected end of input stream\n\tat x.y(Z.java:2)"
        )

    monkeypatch.setattr(jobs.common, "start_job", broken)
    line = refused(capsys, "aggregate", ["--run-dir", str(tmp_path)])
    assert line == (
        "error: aggregate failed: RuntimeError: java.io.EOFException: Unexpected end of input "
        "stream (--debug shows the traceback)"
    )
    capsys.readouterr()
    assert aggregate.main(["--run-dir", str(tmp_path), "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


# ---- job-specific inputs: a missing upstream stage or file (the session's Spark, no Spark job)


@pytest.mark.parametrize(
    "job, upstream",
    [
        ("train", "ingest"),
        ("aggregate", "train"),
        ("recommend", "aggregate"),
        ("export", "aggregate"),
        ("evaluate", "recommend"),
    ],
)
def test_missing_upstream_stage_keeps_the_run_record(spark, capsys, tmp_path, job, upstream):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("the record of a finished run\n")
    line = refused(capsys, job, ["--run-dir", str(run_dir)])
    assert line.startswith(f"error: {run_dir / upstream}: stage '{upstream}' has not finished")
    assert (run_dir / "config.yaml").read_text() == "the record of a finished run\n"


def test_ingest_missing_file(spark, capsys, tmp_path):
    missing = tmp_path / "nope.txt"
    run_dir = tmp_path / "run"
    line = refused(
        capsys, "ingest", ["--run-dir", str(run_dir), "--set", f"ingest.train_path={missing}"]
    )
    assert str(missing) in line
    assert not (run_dir / "config.yaml").exists()


def test_partition_without_ingest(spark, capsys, tmp_path):
    line = refused(capsys, "partition", ["--run-dir", str(tmp_path / "empty")])
    assert line == (
        f"error: {tmp_path / 'empty' / 'ingest'}: stage 'ingest' has not finished in this run "
        "directory; run it before 'partition'"
    )


def test_pipeline_without_train_path(spark, capsys, tmp_path):
    line = refused(capsys, "pipeline", ["--run-dir", str(tmp_path / "run")])
    assert line == "error: ingest.train_path: not set (the input file or folder to ingest)"


def test_kg_stage_without_upstream_and_bad_stage(spark, capsys, tmp_path):
    run_dir = tmp_path / "run"
    sets = ["--set", "ingest.format=triples", "--set", f"ingest.test_path={tmp_path / 't.txt'}"]
    line = refused(capsys, "kg", ["--run-dir", str(run_dir), "--stage", "nbfnet-train", *sets])
    assert line == (
        f"error: {run_dir / 'partition'}: stage 'partition' has not finished in this run "
        "directory; run it before 'nbfnet-train'"
    )
    line = refused(capsys, "kg", ["--run-dir", str(run_dir), "--stage", "nope"])
    assert line.startswith("error: argument --stage: invalid choice: 'nope'")


def test_forget_bad_request_file_and_unfinished_run(spark, capsys, tmp_path, requests_csv):
    bad = tmp_path / "bad.csv"
    bad.write_text("request_id,kind,id,timestamp\nr1,user,5,2026-11-27\n")
    run_dir = tmp_path / "run"
    line = refused(capsys, "forget", ["--run-dir", str(run_dir), "--requests", str(bad)])
    expected = "(expected request_id, kind, id, other_id, timestamp)"
    assert line == f"error: {bad}: missing column(s) other_id {expected}"
    missing = tmp_path / "missing.csv"
    line = refused(capsys, "forget", ["--run-dir", str(run_dir), "--requests", str(missing)])
    assert line == f"error: {missing}: no such request file"
    line = refused(capsys, "forget", ["--run-dir", str(run_dir), "--requests", str(requests_csv)])
    assert line == (
        f"error: {run_dir / 'ingest'}: stage 'ingest' has not finished; forget needs a finished run"
    )


def test_report_and_serve_load_without_a_run(capsys, tmp_path):
    missing = tmp_path / "nope"
    assert refused(capsys, "report", ["--run-dir", str(missing)]) == (
        f"error: run directory {missing} does not exist"
    )
    line = refused(capsys, "serve_load", ["--run-dir", str(missing)])
    assert line == (
        f"error: missing input {missing / 'export' / 'embeddings'}: "
        "run jobs.recommend and jobs.export first"
    )


@pytest.mark.parametrize(
    "argv, start",
    [
        (["--edges", "0", "--out", "x"], "error: argument --edges: must be a whole number >= 1"),
        (["--edges", "ten", "--out", "x"], "error: argument --edges: not a number: 'ten'"),
        (["--out", "x"], "error: the following arguments are required: --edges"),
        (
            ["--edges", "10", "--out", "x", "--a", "0.9"],
            "error: a, b, c, d: must sum to 1, got 1.33",
        ),
    ],
)
def test_rmat_bad_arguments(capsys, argv, start):
    assert refused(capsys, "rmat", argv).startswith(start)


def test_config_is_recorded_only_by_a_job_that_did_its_work(tmp_path, monkeypatch):
    """A job that reused finished work keeps the run's record; one that did work replaces it."""
    import jobs.common
    from pipelines.core.config import PipelineConfig, load_config

    cfg = load_config(overrides=["train.epochs=7"])
    ctx = jobs.common.JobContext(cfg=cfg, spark=None, run_dir=tmp_path, owns_session=False)
    monkeypatch.setattr(jobs.common, "start_job", lambda args, name: ctx)
    record = tmp_path / "config.yaml"
    assert jobs.common.run_job(None, "t", lambda c: 1, did_work=lambda r: False) == 1
    assert load_config(record) == cfg  # no record yet: written
    record.write_text("the record of a finished run\n")
    jobs.common.run_job(None, "t", lambda c: 1, did_work=lambda r: False)
    assert record.read_text() == "the record of a finished run\n"
    jobs.common.run_job(None, "t", lambda c: 1, did_work=lambda r: True)
    assert load_config(record) == cfg and cfg != PipelineConfig()
