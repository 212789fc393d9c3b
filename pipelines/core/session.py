"""The one SparkSession factory used by every job, test and benchmark."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from pyspark.sql import SparkSession

PROJECT_ROOT = Path(__file__).resolve().parents[2]
JARS_DIR = Path(os.environ.get("GRAPHPIPE_JARS_DIR", PROJECT_ROOT / ".cache" / "jars"))

# Defaults for a laptop-sized local run; every key can be overridden by the caller or config.
DEFAULT_CONF: dict[str, str] = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.adaptive.enabled": "true",
    "spark.python.worker.reuse": "true",
    "spark.driver.memory": "4g",
    "spark.sql.session.timeZone": "UTC",
    "spark.graphframes.useLocalCheckpoints": "true",
}


DAEMON_MODULE_KEY = "spark.python.daemon.module"


def graphframes_jars() -> list[str]:
    """Paths of the GraphFrames JARs resolved by ``make setup`` (empty if not resolved)."""
    if not JARS_DIR.is_dir():
        return []
    return sorted(str(p) for p in JARS_DIR.glob("graphframes*.jar"))


def graphframes_available() -> bool:
    """True when both GraphFrames JARs (core and GraphX companion) are on the classpath."""
    names = [Path(p).name for p in graphframes_jars()]
    core = any(n.startswith("graphframes-spark4") for n in names)
    graphx = any(n.startswith("graphframes-graphx-spark4") for n in names)
    return core and graphx


def build_spark(
    app_name: str,
    *,
    master: str | None = None,
    conf: Mapping[str, str] | None = None,
    checkpoint_dir: str | None = None,
    ui: bool = False,
    log_level: str = "WARN",
) -> SparkSession:
    """Create (or reuse) the SparkSession.

    Args:
        app_name: Spark application name shown in the UI and logs.
        master: ``local[*]`` by default; ``spark://host:port``, ``yarn``, ``k8s://...`` on a
            cluster. When the job runs under ``spark-submit`` the submitted master wins.
        conf: Extra Spark settings; they override :data:`DEFAULT_CONF`.
        checkpoint_dir: Directory for RDD checkpoints (created; a temp dir by default).
        ui: Start the Spark UI (off in tests).
        log_level: JVM log level.
    """
    # Python workers run the driver's interpreter (the project venv) unless told otherwise.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ or "SPARK_SUBMIT" in os.environ
    if master is None and not submitted:
        master = os.environ.get("GRAPHPIPE_MASTER", "local[*]")
    if master is not None:
        builder = builder.master(master)
    settings = dict(DEFAULT_CONF)
    if master is not None and master.startswith("local"):
        # Workers forked with torch already imported (pipelines.core.spark_daemon). Local mode only:
        # a cluster's executors may get the project through --py-files, which the daemon
        # cannot import before it starts; pass the key yourself where they have it installed.
        settings[DAEMON_MODULE_KEY] = "pipelines.core.spark_daemon"
    settings["spark.ui.enabled"] = "true" if ui else "false"
    # The console progress bar only on a terminal; log files get the stage log lines instead.
    settings["spark.ui.showConsoleProgress"] = "true" if sys.stderr.isatty() else "false"
    jars = graphframes_jars()
    if jars and not submitted:  # spark-submit gets them with --jars (deploy/spark-submit)
        settings["spark.jars"] = ",".join(jars)
    settings.update(conf or {})
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(log_level)
    ckpt = checkpoint_dir or tempfile.mkdtemp(prefix="graphpipe-ckpt-")
    Path(ckpt).mkdir(parents=True, exist_ok=True)
    spark.sparkContext.setCheckpointDir(ckpt)
    return spark
