"""Cluster packaging: scripts/package.sh, the GPU discovery script, the spark-submit commands of
deploy/spark-submit (YARN and Kubernetes as dry runs), and the standalone command for real on
the local standalone cluster of tests/test_cluster.py."""

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
    assert listed == ["graphpipe-0.1.0-py3-none-any.whl", "graphpipe-pyfiles.zip"]
    return folder


def test_package_builds_the_wheel_and_the_pyfiles_zip(dist):
    wheel = zipfile.ZipFile(dist / "graphpipe-0.1.0-py3-none-any.whl")
    names = set(wheel.namelist())
    assert {"pipelines/report.py", "jobs/ingest.py", "gnn/__init__.py"} <= names
    entry_points = wheel.read("graphpipe-0.1.0.dist-info/entry_points.txt").decode()
    assert "graphpipe-ingest = jobs.ingest:run" in entry_points
    metadata = wheel.read("graphpipe-0.1.0.dist-info/METADATA").decode()
    assert "Requires-Dist: pyspark==4.1.4" in metadata
    pyfiles = set(zipfile.ZipFile(dist / "graphpipe-pyfiles.zip").namelist())
    assert {"pipelines/report.py", "jobs/ingest.py"} <= pyfiles
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


def test_yarn_command_with_gpus():
    argv = _dry_run("yarn", "yarn", GPUS_PER_EXECUTOR="1", EXECUTOR_CORES="4", FILES="/a/c.yaml")
    conf = _confs(argv)
    assert conf["spark.executor.resource.gpu.amount"] == "1"
    assert conf["spark.task.resource.gpu.amount"] == "0.25"
    assert conf["spark.executor.resource.gpu.discoveryScript"] == "./getGpusResources.sh"
    assert conf["spark.executorEnv.PYSPARK_PYTHON"] == "./environment/bin/python"
    assert argv[argv.index("--files") + 1] == f"/a/c.yaml,{DISCOVERY}"
    assert argv[argv.index("--archives") + 1] == f"{ROOT}/dist/graphpipe-env.tar.gz#environment"
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
    proc = subprocess.run(
        ["bash", str(SUBMIT), "standalone", cluster.master_url, "ingest",
         "--config", str(config), "--run-dir", str(run_dir)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
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
