"""Cluster packaging: scripts/package.sh (wheel, --py-files zip, GraphFrames JARs), the GPU
discovery script, the spark-submit commands of deploy/spark-submit (YARN and Kubernetes as dry
runs), and the standalone command for real on the local standalone cluster of
tests/test_cluster.py."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pyspark
import pytest
import yaml

from tests.test_cluster import cluster  # noqa: F401 - the module-scoped standalone cluster

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_SH = ROOT / "scripts" / "package.sh"
SUBMIT = ROOT / "deploy" / "spark-submit" / "submit.sh"
DISCOVERY = ROOT / "deploy" / "spark-submit" / "getGpusResources.sh"
SPARK_BIN = Path(pyspark.__file__).parent / "bin"
JARS = ["graphframes-graphx-spark4_2.13-0.11.0.jar", "graphframes-spark4_2.13-0.11.0.jar"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK_", "SPARK_"))}
    env.update(GRAPHPIPE_PYTHON=sys.executable, **extra)
    return env


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        ["bash", str(PACKAGE_SH), str(folder)],
        env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    listed = [Path(line).name for line in proc.stdout.split()]
    assert listed == [*JARS, "graphpipe-0.1.0-py3-none-any.whl", "graphpipe-pyfiles.zip"]
    return folder


def test_package_builds_the_wheel_and_the_pyfiles_zip(dist):
    wheel = zipfile.ZipFile(dist / "graphpipe-0.1.0-py3-none-any.whl")
    names = set(wheel.namelist())
    assert {"pipelines/evaluate/report.py", "jobs/ingest.py", "gnn/__init__.py"} <= names
    entry_points = wheel.read("graphpipe-0.1.0.dist-info/entry_points.txt").decode()
    assert "graphpipe-ingest = jobs.ingest:run" in entry_points
    metadata = wheel.read("graphpipe-0.1.0.dist-info/METADATA").decode()
    assert "Requires-Dist: pyspark==4.1.4" in metadata
    pyfiles = set(zipfile.ZipFile(dist / "graphpipe-pyfiles.zip").namelist())
    assert {"pipelines/evaluate/report.py", "jobs/ingest.py"} <= pyfiles
    # The zip holds exactly the wheel's Python modules of the three packages.
    assert pyfiles == {n for n in names if n.endswith(".py") and n.split("/")[0] in
                       ("pipelines", "jobs", "gnn")}  # fmt: skip


def _discover(tmp_path: Path, gpus: str | None, visible: str | None = None) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "nvidia-smi"
    fake.unlink(missing_ok=True)
    if gpus is not None:
        fake.write_text(f"#!/bin/sh\nprintf '{gpus}'\n")
        fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    proc = subprocess.run(["bash", str(DISCOVERY)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_gpu_discovery_script(tmp_path):
    assert _discover(tmp_path, None) == {"name": "gpu", "addresses": []}  # no nvidia-smi
    assert _discover(tmp_path, "") == {"name": "gpu", "addresses": []}  # no GPU
    assert _discover(tmp_path, "0\\n1\\n 2\\n") == {"name": "gpu", "addresses": ["0", "1", "2"]}
    assert _discover(tmp_path, "0\\n1\\n2\\n", "2,0")["addresses"] == ["0", "2"]
    assert _discover(tmp_path, "0\\n1\\n", "GPU-5f0e")["addresses"] == ["0", "1"]  # UUIDs
    assert _discover(tmp_path, "No devices were found\\n") == {"name": "gpu", "addresses": []}


def _dry_run(mode: str, master: str, **extra: str) -> list[str]:
    proc = subprocess.run(
        ["bash", str(SUBMIT), mode, master, "train", "--config", "c.yaml", "--run-dir", "r"],
        env=_env(DRY_RUN="1", **extra), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def _confs(argv: list[str]) -> dict[str, str]:
    pairs = [argv[i + 1] for i, a in enumerate(argv) if a == "--conf"]
    return dict(p.split("=", 1) for p in pairs)


def test_yarn_command_with_gpus(dist):
    argv = _dry_run(
        "yarn", "yarn", DIST=str(dist), GPUS_PER_EXECUTOR="1", EXECUTOR_CORES="4", FILES="/a/c.yaml"
    )
    conf = _confs(argv)
    assert conf["spark.executor.resource.gpu.amount"] == "1"
    assert conf["spark.task.resource.gpu.amount"] == "0.25"
    assert conf["spark.executor.resource.gpu.discoveryScript"] == "./getGpusResources.sh"
    assert conf["spark.executorEnv.PYSPARK_PYTHON"] == "./environment/bin/python"
    assert argv[argv.index("--files") + 1] == f"/a/c.yaml,{DISCOVERY}"
    assert argv[argv.index("--archives") + 1] == f"{dist}/graphpipe-env.tar.gz#environment"
    assert argv[argv.index("--jars") + 1] == ",".join(f"{dist}/{jar}" for jar in JARS)
    assert argv[argv.index("--deploy-mode") + 1] == "cluster"
    assert argv[-5:] == [f"{ROOT}/jobs/train.py", "--config", "c.yaml", "--run-dir", "r"]


def test_k8s_command_with_gpus_and_without():
    conf = _confs(_dry_run("k8s", "k8s://https://h:6443", GPUS_PER_EXECUTOR="2", IMAGE="gp:1"))
    assert conf["spark.executor.resource.gpu.amount"] == "2"
    assert conf["spark.task.resource.gpu.amount"] == "1"
    assert conf["spark.executor.resource.gpu.vendor"] == "nvidia.com"
    assert conf["spark.kubernetes.container.image"] == "gp:1"
    argv = _dry_run("k8s", "k8s://https://h:6443")
    assert "local:///opt/graphpipe/jobs/train.py" in argv
    assert not any("resource.gpu" in a for a in argv)
    assert "--jars" not in argv  # the image has the GraphFrames JARs in $SPARK_HOME/jars


def _submit_standalone(
    cluster,  # noqa: F811
    dist: Path,
    cwd: Path,
    job: str,
    config: Path,
    run_dir: Path,
) -> subprocess.CompletedProcess[str]:
    """``deploy/spark-submit/submit.sh standalone <master> <job>``: two 1-core executors."""
    env = _env(
        DIST=str(dist),
        SPARK_SUBMIT=str(SPARK_BIN / "spark-submit"),
        SPARK_LOCAL_IP="127.0.0.1",
        DRIVER_MEMORY="1g",
        EXECUTOR_MEMORY="1g",
        EXECUTOR_CORES="1",
        TOTAL_EXECUTOR_CORES="2",
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
    )
    return subprocess.run(
        ["bash", str(SUBMIT), "standalone", cluster.master_url, job,
         "--config", str(config), "--run-dir", str(run_dir)],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def _completed_app(cluster, name: str) -> dict:  # noqa: F811
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        apps = [a for a in cluster.status()["completedapps"] if a["name"] == name]
        if apps:
            return apps[0]
        time.sleep(0.5)
    raise AssertionError(f"no completed application {name} on {cluster.master_url}")


def test_standalone_command_runs_on_the_local_cluster(cluster, dist, tmp_path):  # noqa: F811
    (tmp_path / "train.txt").write_text("1 10 11 12\n2 11 13\n3 10 12 13 14\n")
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "run": {"name": "gp-submit"},
                "spark": {"shuffle_partitions": 2},
                "ingest": {"train_path": str(tmp_path / "train.txt"), "test_path": ""},
            }
        )
    )
    run_dir = tmp_path / "run"
    proc = _submit_standalone(cluster, dist, tmp_path, "ingest", config, run_dir)
    assert proc.returncode == 0, proc.stderr[-6000:]
    marker = json.loads((run_dir / "ingest" / "_STAGE.json").read_text())
    counts = marker["counts"]
    assert (counts["accepted"], counts["users"], counts["items"]) == (9, 3, 5)

    # It ran on the standalone cluster, whose executors fetched the --py-files zip.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        apps = [a for a in cluster.status()["completedapps"] if a["name"] == "gp-submit-ingest"]
        if apps:
            break
        time.sleep(0.5)
    assert len(apps) == 1
    assert list((cluster.folder / "work").glob(f"{apps[0]['id']}/*/graphpipe-pyfiles.zip"))
    for jar in JARS:  # and the GraphFrames JARs (--jars)
        assert list((cluster.folder / "work").glob(f"{apps[0]['id']}/*/{jar}"))


def _two_communities(folder: Path) -> tuple[Path, Path]:
    """32 users (ids 100..131) in two communities of 12 items each (500..511, 600..611); user
    u also holds one item of the other community when u % 8 == 0 (edges the partition cuts)."""
    train, test = [], []
    for u in range(32):
        base = 500 if u % 2 == 0 else 600
        items = [base + (u * 5 + j) % 12 for j in range(6)]
        if u % 8 == 0:
            items[0] = 1100 - base + (u % 12)  # the other community
        train.append(f"{u + 100} " + " ".join(map(str, items[:4])))
        test.append(f"{u + 100} " + " ".join(map(str, items[4:])))
    (folder / "train.txt").write_text("\n".join(train) + "\n")
    (folder / "test.txt").write_text("\n".join(test) + "\n")
    return folder / "train.txt", folder / "test.txt"


def test_partitioned_pipeline_on_the_standalone_cluster(spark, cluster, dist, tmp_path):  # noqa: F811
    """ingest -> partition (2 leaves + halo) -> per-leaf training in executor tasks ->
    aggregate -> recommend -> export -> evaluate through real spark-submit on the standalone
    master + worker; the global table equals the same config's run on local Spark."""
    import numpy as np
    import pandas as pd

    from jobs import pipeline

    train, test = _two_communities(tmp_path)
    settings = {
        "run": {"name": "gp-part", "seed": 3},
        "spark": {"shuffle_partitions": 2},
        "ingest": {"train_path": str(train), "test_path": str(test)},
        "partition": {"num_leaves": 2},
        "model": {"dim": 8, "layers": 2},
        "train": {"epochs": 4, "batch_size": 32, "lr": 0.02, "rounds": 2, "threads": 1},
        "export": {"top_k": 5, "ann_index": "flat"},
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(settings))
    on_cluster = tmp_path / "cluster-run"
    proc = _submit_standalone(cluster, dist, tmp_path, "pipeline", config, on_cluster)
    assert proc.returncode == 0, proc.stderr[-6000:]
    app = _completed_app(cluster, "gp-part-pipeline")
    executors = [p for p in (cluster.folder / "work" / app["id"]).iterdir() if p.is_dir()]
    assert len(executors) >= 1

    def table(run: Path, name: str) -> pd.DataFrame:
        return pd.concat(
            [pd.read_parquet(f) for f in sorted((run / name).glob("*.parquet"))], ignore_index=True
        )

    part = json.loads((on_cluster / "partition" / "_STAGE.json").read_text())
    assignment = table(on_cluster, "partition/assignment")
    assert sorted(assignment["leaf_id"].unique()) == [0, 1]
    assert len(table(on_cluster, "partition/halo_nodes")) > 0, part
    logs = table(on_cluster, "train/leaf_logs")
    assert sorted(set(zip(logs["leaf_id"], logs["round"], strict=True))) == [
        (0, 1),
        (0, 2),
        (1, 1),
        (1, 2),
    ]
    emb = table(on_cluster, "aggregate/embeddings")
    n_users, n_items = 32, int(len(set(table(on_cluster, "ingest/dictionary")["node_id"])))
    assert (
        (emb["kind"] == "user").sum() == n_users
        and len(emb) == n_users + (table(on_cluster, "ingest/dictionary")["kind"] == "item").sum()
        and n_items > 0
    )
    recs = table(on_cluster, "recommend/recommendations")
    assert len(recs) == n_users * 5
    metrics = json.loads((on_cluster / "evaluate" / "metrics.json").read_text())
    assert metrics["users"] == n_users

    # The same config on local Spark (the test session) gives the same global table.
    local = tmp_path / "local-run"
    assert pipeline.main(["--config", str(config), "--run-dir", str(local)]) == 0
    assert (
        table(local, "partition/assignment")
        .sort_values(["kind", "node_id"])
        .reset_index(drop=True)
        .equals(assignment.sort_values(["kind", "node_id"]).reset_index(drop=True))
    )
    mine = emb.sort_values(["kind", "node_id"]).reset_index(drop=True)
    theirs = (
        table(local, "aggregate/embeddings").sort_values(["kind", "node_id"]).reset_index(drop=True)
    )
    assert mine[["kind", "node_id"]].equals(theirs[["kind", "node_id"]])
    a = np.stack([np.frombuffer(v, dtype=np.float32) for v in mine["vector"]])
    b = np.stack([np.frombuffer(v, dtype=np.float32) for v in theirs["vector"]])
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
