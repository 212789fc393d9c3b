"""The Airflow DAGs (deploy/airflow): spec parsing, a DagBag without import errors inside the
Airflow venv, and one real ``airflow dags test graphpipe_daily`` against local Spark.

The Airflow venv (.venv-airflow) is built by ``scripts/airflow_env.sh`` on first use (about
1-1.5 minutes, then a no-op). The DAG run uses a metadata DB of its own under tmp.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines.core.packaging import build_pyfiles_zip
from pipelines.evaluate.report import build_report

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_ENV = ROOT / "scripts" / "airflow_env.sh"
SPECS = ROOT / "deploy" / "airflow" / "dags.yaml"
DAILY = ("ingest", "partition", "train", "aggregate", "recommend", "export", "evaluate")
KG = ("ingest", "partition", "nbfnet-train", "nbfnet-evaluate")


def _specs_module():
    path = ROOT / "deploy" / "airflow" / "dags" / "graphpipe_airflow" / "specs.py"
    spec = importlib.util.spec_from_file_location("graphpipe_airflow_specs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def _airflow(args: list[str], env: dict[str, str], timeout: float, **kw):
    return subprocess.run(
        ["bash", str(AIRFLOW_ENV), *args],
        env=env, capture_output=True, text=True, timeout=timeout, **kw,
    )  # fmt: skip


def _base_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK_", "AIRFLOW"))}
    env.update(AIRFLOW_HOME=str(tmp / "airflow-home"), GRAPHPIPE_PYTHON=sys.executable)
    env.update(SPARK_LOCAL_IP="127.0.0.1")
    return env


def test_specs_merge_defaults_and_stage_overrides():
    specs = _specs_module()
    parsed = specs.parse_specs(yaml.safe_load(SPECS.read_text()))
    daily = parsed["graphpipe_daily"]
    assert tuple(s.name for s in daily.stages) == DAILY
    assert daily.schedule == "@daily"
    train = daily.stages[2]
    assert (train.driver_memory, train.executor_memory, train.retries) == ("4g", "4g", 2)
    assert daily.stages[0].driver_memory == "2g"
    assert train.application(Path("/r")) == Path("/r/jobs/train.py")
    forget = parsed["graphpipe_forget"]
    assert [s.name for s in forget.stages] == ["forget"]
    assert forget.schedule is None
    assert forget.params == {"requests": ""}
    assert forget.stages[0].args == ("--requests", "{{ params.requests }}")
    assert daily.params == {} and daily.stages[0].args == ()


BASE_DEFAULTS = yaml.safe_load(SPECS.read_text())["defaults"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"defaults": BASE_DEFAULTS, "dags": {"d": {"stages": ["a", "a"]}}},
            "dags.d: duplicate stage names ['a', 'a']",
        ),
        ({"defaults": BASE_DEFAULTS, "dags": {"d": {"stages": []}}}, "dags.d: no stages"),
        (
            {"defaults": BASE_DEFAULTS, "dags": {"d": {"stages": [{"name": "a", "mem": 1}]}}},
            "dags.d.a: unknown keys ['mem']",
        ),
        ({"defaults": {"retriez": 1}, "dags": {}}, "defaults: unknown keys ['retriez']"),
        (
            {"dags": {"d": {"stages": ["a"]}}},
            "dags.d.a: missing ['driver_memory', 'execution_timeout_minutes'",
        ),
        ({"dags": {"d": {"stages": [3]}}}, "dags.d: a stage is a name or a mapping"),
        (
            {"defaults": BASE_DEFAULTS, "dags": {"d": {"stages": ["a"], "params": [1]}}},
            "dags.d.params: expected a mapping",
        ),
        ({"dag": {}}, "spec: top level needs a 'dags' mapping"),
    ],
)
def test_bad_specs_name_the_key(data, message):
    specs = _specs_module()
    with pytest.raises(specs.SpecError) as info:
        specs.parse_specs(data)
    assert str(info.value).startswith(message)


def test_stage_overrides_and_args():
    specs = _specs_module()
    base = yaml.safe_load(SPECS.read_text())["defaults"]
    parsed = specs.parse_specs(
        {
            "defaults": base,
            "dags": {"d": {"stages": [
                {"name": "x", "job": "pipeline", "args": ["--flag", 3], "retries": 0,
                 "conf": {"spark.a": 1}},
            ]}},
        }
    )  # fmt: skip
    (x,) = parsed["d"].stages
    assert (x.job, x.args, x.retries, x.retry_delay_minutes) == ("pipeline", ("--flag", "3"), 0, 5)
    assert x.conf == {"spark.ui.showConsoleProgress": "false", "spark.a": "1"}


DAGBAG_PROBE = r"""
import json, os
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
out = {"errors": {k: str(v)[-300:] for k, v in bag.import_errors.items()}, "dags": {}}
for dag_id, dag in sorted(bag.dags.items()):
    out["dags"][dag_id] = {
        "schedule": str(dag.schedule),
        "params": sorted(dag.params.keys()),
        "config": dag.params.dump()["config"],
        "tasks": [
            {"id": t.task_id, "type": type(t).__name__, "up": sorted(t.upstream_task_ids),
             "app": t.application, "args": t.application_args, "retries": t.retries,
             "py_files": t.py_files, "conn": t._conn_id, "env": t.env_vars,
             "python_conf": t.conf["spark.pyspark.python"]}
            for t in dag.topological_sort()
        ],
    }
print(json.dumps(out))
"""


def test_dagbag_has_no_import_errors(tmp_path):
    proc = _airflow(["python", "-c", DAGBAG_PROBE], _base_env(tmp_path), timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    bag = json.loads(proc.stdout.strip().splitlines()[-1])
    assert bag["errors"] == {}
    assert sorted(bag["dags"]) == ["graphpipe_daily", "graphpipe_forget", "graphpipe_kg"]
    for dag_id, stages in (
        ("graphpipe_daily", DAILY), ("graphpipe_forget", ("forget",)), ("graphpipe_kg", KG),
    ):  # fmt: skip
        dag = bag["dags"][dag_id]
        extra = ["requests"] if dag_id == "graphpipe_forget" else []
        assert dag["params"] == sorted(["config", "pyfiles", "python", "run_root", *extra])
        assert [t["id"] for t in dag["tasks"]] == list(stages)
        assert [t["up"] for t in dag["tasks"]] == [[]] + [[s] for s in stages[:-1]]
        for t in dag["tasks"]:
            assert t["type"] == "SparkSubmitOperator" and t["conn"] == "graphpipe_spark"
            job = "kg" if dag_id == "graphpipe_kg" else t["id"]
            assert t["app"] == str(ROOT / "jobs" / f"{job}.py")
            job_args = {"forget": ["--requests", "{{ params.requests }}"]}.get(t["id"], [])
            if dag_id == "graphpipe_kg":
                job_args = ["--stage", t["id"]]
            assert t["args"] == [
                "--config", "{{ params.config }}", "--run-dir", "{{ params.run_root }}/{{ ds }}",
                "--set", "ingest.tombstones_dir={{ params.run_root }}/tombstones", *job_args,
            ]  # fmt: skip
            assert t["retries"] == 2 and t["py_files"] == "{{ params.pyfiles }}"
            assert t["env"]["PYSPARK_PYTHON"] == t["python_conf"] == "{{ params.python }}"
            assert t["env"]["GRAPHPIPE_BASE_DIR"] == str(ROOT)  # relative config paths
    # the KG DAG's own config, read from the repository; the others take the default
    assert bag["dags"]["graphpipe_kg"]["config"] == str(ROOT / "deploy/configs/kg_local.yaml")
    assert bag["dags"]["graphpipe_daily"]["config"] == str(ROOT / "deploy/configs/local.yaml")
    assert bag["dags"]["graphpipe_daily"]["schedule"] == "@daily"


def _tiny_graph(folder: Path) -> tuple[Path, Path]:
    """40 users x 10 distinct items out of 50 (LightGCN lines): 8 train and 2 test each."""
    rng = random.Random(0)
    train, test = [], []
    for user in range(40):
        items = rng.sample(range(50), 10)
        train.append(" ".join(map(str, [user, *items[:8]])))
        test.append(" ".join(map(str, [user, *items[8:]])))
    (folder / "train.txt").write_text("\n".join(train) + "\n")
    (folder / "test.txt").write_text("\n".join(test) + "\n")
    return folder / "train.txt", folder / "test.txt"


def _run_dag(tmp_path: Path, dag_id: str, config: Path) -> tuple[dict, list, str]:
    """``airflow dags test dag_id 2026-11-27`` with the real DAG spec (no retries: a failure
    fails the test now, not after 5 minutes; 1g drivers) and ``config``; returns the task
    states and DAG-run states from the run's metadata DB (``dags test`` exits 0 on task
    failures too) and the log."""
    specs = yaml.safe_load(SPECS.read_text())
    specs["defaults"]["retries"] = 0
    for dag in specs["dags"].values():
        for stage in dag["stages"]:
            if isinstance(stage, dict):
                stage.pop("retries", None)
                stage.update(driver_memory="1g", executor_memory="1g")
    if "config" in specs["dags"][dag_id].get("params", {}):
        specs["dags"][dag_id]["params"]["config"] = str(config)
    (tmp_path / "dags.yaml").write_text(yaml.safe_dump(specs))
    env = _base_env(tmp_path)
    env.update(
        GRAPHPIPE_AIRFLOW_SPECS=str(tmp_path / "dags.yaml"),
        GRAPHPIPE_CONFIG=str(config),
        GRAPHPIPE_RUN_ROOT=str(tmp_path / "runs"),
        GRAPHPIPE_PYFILES=str(build_pyfiles_zip(tmp_path / "dist")),
    )
    proc = _airflow(
        ["airflow", "dags", "test", dag_id, "2026-11-27"], env, timeout=1200, cwd=tmp_path
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    with sqlite3.connect(tmp_path / "airflow-home" / "airflow.db") as db:
        states = dict(
            db.execute(
                "select task_id, state from task_instance where dag_id = ?", (dag_id,)
            ).fetchall()
        )
        runs = db.execute("select state from dag_run where dag_id = ?", (dag_id,)).fetchall()
    return states, runs, log


@pytest.mark.slow  # 5-10 minutes on 2 cores: run by `make test-dag`, which .ci/run calls
def test_daily_dag_runs_on_local_spark(tmp_path):
    train, test = _tiny_graph(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "run": {"name": "gp-airflow", "seed": 0},
                "spark": {"shuffle_partitions": 2, "conf": {"spark.ui.enabled": "false"}},
                "ingest": {"train_path": str(train), "test_path": str(test)},
                "partition": {"num_leaves": 2},
                "model": {"dim": 8, "layers": 2},
                "train": {
                    "epochs": 2,
                    "rounds": 2,
                    "batch_size": 128,
                    "lr": 0.01,
                    "threads": 1,
                    "device": "cpu",
                },  # fmt: skip
                "export": {"top_k": 5, "similar_k": 3, "user_block_size": 16},
            }
        )
    )
    states, runs, log = _run_dag(tmp_path, "graphpipe_daily", config)
    assert states == {stage: "success" for stage in DAILY}, log[-6000:]
    assert runs == [("success",)]

    run_dir = tmp_path / "runs" / "2026-11-27"
    markers = {s: json.loads((run_dir / s / "_STAGE.json").read_text()) for s in DAILY}
    ingest = markers["ingest"]["counts"]
    assert (ingest["accepted_train"], ingest["accepted_test"], ingest["users"]) == (320, 80, 40)
    assert ingest["items"] == len(
        {
            int(x)
            for line in train.read_text().splitlines() + test.read_text().splitlines()
            for x in line.split()[1:]
        }
    )
    assert markers["partition"]["counts"]["leaves"] == 2
    assert markers["aggregate"]["counts"]["user_vectors"] == 40
    # Every user has 42 unseen items, so exactly top_k = 5 recommendations each.
    assert markers["recommend"]["counts"]["recommendations"] == 200
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    assert metrics["users"] == 40
    assert 0.0 <= metrics["recall@5"] <= 1.0 and 0.0 <= metrics["ndcg@5"] <= 1.0

    # The run report over this real run directory: every section present.
    page = build_report(run_dir).read_text()
    assert "not run" not in page and page.count("data:image/png;base64,") == 4


@pytest.mark.slow  # 2-4 minutes: four spark-submits of jobs/kg.py, one per stage
def test_kg_dag_runs_one_task_per_stage(tmp_path):
    n = 16
    triples = [(f"e{i}", "next", f"e{(i + 1) % n}") for i in range(n)]
    triples += [(f"e{i}", "skip", f"e{(i + 2) % n}") for i in range(n)]
    test = [triples[3], triples[n + 7]]
    (tmp_path / "train.txt").write_text(
        "".join("\t".join(t) + "\n" for t in triples if t not in test)
    )
    (tmp_path / "test.txt").write_text("".join("\t".join(t) + "\n" for t in test))
    config = tmp_path / "kg.yaml"
    cfg = yaml.safe_load((ROOT / "deploy" / "configs" / "kg_local.yaml").read_text())
    cfg["spark"] = {"shuffle_partitions": 2, "conf": {"spark.ui.enabled": "false"}}
    # relative data paths, as in the repository's configs: read from the repository
    # (GRAPHPIPE_BASE_DIR), not from Airflow's working directory (tmp_path)
    train_rel = os.path.relpath(tmp_path / "train.txt", ROOT)
    cfg["ingest"].update(train_path=train_rel,
                         test_path=os.path.relpath(tmp_path / "test.txt", ROOT))  # fmt: skip
    cfg["partition"] = {"num_leaves": 2}
    cfg["nbfnet"] = {"dim": 8, "layers": 2, "rounds": 2, "steps_per_round": 2, "batch_size": 2,
                     "num_negative": 4, "device": "cpu", "threads": 1}  # fmt: skip
    config.write_text(yaml.safe_dump(cfg))
    states, runs, log = _run_dag(tmp_path, "graphpipe_kg", config)
    assert states == {stage: "success" for stage in KG}, log[-6000:]
    assert runs == [("success",)]
    run_dir = tmp_path / "runs" / "2026-11-27"
    markers = {s: json.loads((run_dir / s / "_STAGE.json").read_text()) for s in KG}
    assert markers["nbfnet-train"]["counts"]["entities"] == n
    recorded = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert recorded["ingest"]["train_path"] == str(ROOT / train_rel)
    # 30 training triples, each a tail and a head query
    history = json.loads((run_dir / "nbfnet-train" / "history.json").read_text())
    assert [h["queries"] for h in history] == [60.0, 60.0]
    metrics = json.loads((run_dir / "nbfnet-evaluate" / "metrics.json").read_text())
    assert metrics["queries"] == 4  # the 2 test triples, as tail and head queries
    assert 0.0 < metrics["mrr"] <= 1.0
