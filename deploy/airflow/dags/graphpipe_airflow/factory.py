"""Turn a :class:`~graphpipe_airflow.specs.DagSpec` into an Airflow DAG of SparkSubmitOperators.

Run parameters are DAG params (overridable per run with ``airflow dags trigger/test -c JSON``),
with defaults taken when the DAG file is parsed from the environment, else the repository:

==========  ==========================  ==============================================
param       environment                 default
==========  ==========================  ==============================================
config      ``GRAPHPIPE_CONFIG``        ``<root>/deploy/configs/local.yaml``
run_root    ``GRAPHPIPE_RUN_ROOT``      ``<root>/runs/airflow`` (the run is ``<run_root>/<ds>``)
pyfiles     ``GRAPHPIPE_PYFILES``       ``<root>/dist/graphpipe-pyfiles.zip`` (``make package``)
python      ``GRAPHPIPE_PYTHON``        ``<root>/.venv/bin/python`` (driver and executors)
==========  ==========================  ==============================================

A DAG adds params of its own with ``params:`` in ``dags.yaml`` (the forget DAG's ``requests``),
and a stage passes them to its job with ``args`` (``["--requests", "{{ params.requests }}"]``).
A DAG's own ``config`` param replaces the default (the KG DAG's ``deploy/configs/kg_local.yaml``);
a relative one is taken from the repository root.

Every stage gets ``--set ingest.tombstones_dir=<run_root>/tombstones``: the forget DAG writes
its tombstones there and every later daily ingest (a new ``<run_root>/<ds>``) drops what they
name, so a scheduled run cannot bring deleted users, items or edges back.

Every stage runs with ``GRAPHPIPE_BASE_DIR=<root>``: relative data paths inside the job config
(``ingest.train_path``, ``ingest.test_path``, ``ingest.tombstones_dir``) are read from the
repository, as when a job is run from it by hand, whatever directory Airflow runs in.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG

from graphpipe_airflow.specs import ROOT, DagSpec, StageSpec, load_specs

CONN_ID = "graphpipe_spark"
START_DATE = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
RUN_DIR = "{{ params.run_root }}/{{ ds }}"
# One tombstone folder for every dated run: what the forget DAG deletes, later daily ingests drop.
TOMBSTONES = "ingest.tombstones_dir={{ params.run_root }}/tombstones"


def default_params() -> dict[str, str]:
    """The DAG params' defaults (see the module docstring)."""
    env = os.environ.get
    return {
        "config": env("GRAPHPIPE_CONFIG") or str(ROOT / "deploy" / "configs" / "local.yaml"),
        "run_root": env("GRAPHPIPE_RUN_ROOT") or str(ROOT / "runs" / "airflow"),
        "pyfiles": env("GRAPHPIPE_PYFILES") or str(ROOT / "dist" / "graphpipe-pyfiles.zip"),
        "python": env("GRAPHPIPE_PYTHON") or str(ROOT / ".venv" / "bin" / "python"),
    }


def stage_task(stage: StageSpec) -> SparkSubmitOperator:
    """One spark-submit of ``jobs/<job>.py --config ... --run-dir <run_root>/<ds>``."""
    python = "{{ params.python }}"
    return SparkSubmitOperator(
        task_id=stage.name,
        conn_id=CONN_ID,
        application=str(stage.application()),
        application_args=[
            "--config", "{{ params.config }}", "--run-dir", RUN_DIR, "--set", TOMBSTONES,
            *stage.args,
        ],  # fmt: skip
        py_files="{{ params.pyfiles }}",
        name=f"graphpipe-{stage.name}-{{{{ ds }}}}",
        driver_memory=stage.driver_memory,
        executor_memory=stage.executor_memory,
        conf={"spark.pyspark.python": python, "spark.pyspark.driver.python": python, **stage.conf},
        env_vars={
            "PYSPARK_PYTHON": python,
            "PYSPARK_DRIVER_PYTHON": python,
            "GRAPHPIPE_BASE_DIR": str(ROOT),
        },
        retries=stage.retries,
        retry_delay=dt.timedelta(minutes=stage.retry_delay_minutes),
        retry_exponential_backoff=stage.retry_exponential_backoff,
        execution_timeout=dt.timedelta(minutes=stage.execution_timeout_minutes),
    )


def build_dag(dag_id: str, *, specs: dict[str, DagSpec] | None = None) -> DAG:
    """The DAG ``dag_id`` from the spec file, its stages chained in order."""
    spec = (specs or load_specs())[dag_id]
    params: dict[str, Any] = {**default_params(), **spec.params}
    if spec.params.get("config") and not Path(spec.params["config"]).is_absolute():
        params["config"] = str(ROOT / spec.params["config"])
    with DAG(
        dag_id=spec.dag_id,
        description=spec.description,
        schedule=spec.schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        params=params,
        tags=["graphpipe"],
        default_args={"owner": "graphpipe"},
    ) as dag:
        previous = None
        for stage in spec.stages:
            task = stage_task(stage)
            if previous is not None:
                previous >> task
            previous = task
    return dag
