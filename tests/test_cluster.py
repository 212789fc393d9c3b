"""A job through real spark-submit on a real standalone master + worker (scripts/cluster.sh).

The project reaches the executors only through the ``--py-files`` zip built by
``pipelines.core.packaging.build_pyfiles_zip`` (zip entries on ``PYTHONPATH`` take precedence over
the
editable install). The R-MAT output must equal the same generation run in local mode.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyspark
import pytest

from pipelines.core.packaging import build_pyfiles_zip
from pipelines.generate.rmat import generate_rmat

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_SH = ROOT / "scripts" / "cluster.sh"
SPARK_SUBMIT = Path(pyspark.__file__).parent / "bin" / "spark-submit"


@dataclass(frozen=True)
class Cluster:
    master_url: str
    webui_port: int
    folder: Path

    def status(self) -> dict:
        url = f"http://127.0.0.1:{self.webui_port}/json/"
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)


def _cluster_sh(action: str, folder: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GRAPHPIPE_PYTHON": sys.executable}
    return subprocess.run(
        ["bash", str(CLUSTER_SH), action, str(folder)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("standalone")
    try:
        started = _cluster_sh("start", folder, timeout=180)
        assert started.returncode == 0, f"cluster.sh start failed:\n{started.stderr[-4000:]}"
        url = started.stdout.strip().splitlines()[-1]
        port = int((folder / "master_webui_port").read_text())
        yield Cluster(url, port, folder)
    finally:
        stopped = _cluster_sh("stop", folder, timeout=60)
        assert stopped.returncode == 0, stopped.stderr


def test_pyfiles_zip_holds_the_packages(tmp_path):
    path = build_pyfiles_zip(tmp_path)
    names = set(zipfile.ZipFile(path).namelist())
    assert {
        "pipelines/__init__.py",
        "pipelines/generate/rmat.py",
        "jobs/rmat.py",
        "gnn/__init__.py",
    } <= names
    assert not any("__pycache__" in n or not n.endswith(".py") for n in names)
    assert build_pyfiles_zip(tmp_path / "again.zip").read_bytes() == path.read_bytes()


def test_worker_is_alive(cluster):
    status = cluster.status()
    assert status["url"] == cluster.master_url
    assert cluster.master_url.startswith("spark://127.0.0.1:")
    assert [w["state"] for w in status["workers"]] == ["ALIVE"]
    assert status["cores"] == 2 and status["memory"] == 2048


def test_rmat_job_via_spark_submit_equals_local_run(spark, cluster, tmp_path):
    pyfiles = build_pyfiles_zip(tmp_path / "dist")
    out = tmp_path / "rmat"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK_GATEWAY")}
    env.update(
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_HOME=str(SPARK_SUBMIT.parent.parent),
    )
    command = [
        str(SPARK_SUBMIT),
        "--master", cluster.master_url,
        "--deploy-mode", "client",
        "--py-files", str(pyfiles),
        "--driver-memory", "1g",
        "--executor-memory", "1g",
        "--total-executor-cores", "2",
        "--conf", "spark.ui.showConsoleProgress=false",
        str(ROOT / "jobs" / "rmat.py"),
        "--edges", "20000", "--seed", "7", "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"spark-submit failed:\n{proc.stderr[-6000:]}"
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["rows"] == 20000 and summary["seed"] == 7

    # It ran on the standalone cluster, and the executor received the zip.
    deadline = time.monotonic() + 30
    while not (apps := cluster.status()["completedapps"]) and time.monotonic() < deadline:
        time.sleep(0.5)  # the master learns of the end right after the driver exits
    assert [a["name"] for a in apps] == ["graphpipe-rmat"]
    assert list((cluster.folder / "work").glob(f"{apps[0]['id']}/*/{pyfiles.name}"))

    written = spark.read.parquet(str(out))
    assert written.count() == 20000
    local = generate_rmat(spark, num_edges=20000, seed=7)
    assert written.exceptAll(local).count() == 0
    assert local.exceptAll(written).count() == 0
