"""What every job shares: arguments, config, session, resolved config beside the outputs."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pyspark.sql import SparkSession

from pipelines.core.config import (
    BASE_DIR_ENV,
    ConfigError,
    PipelineConfig,
    load_config,
    resolve_paths,
)
from pipelines.core.logs import setup_logging
from pipelines.core.session import build_spark
from pipelines.core.stages import MissingStageError, StageResult

log = logging.getLogger("graphpipe.jobs")
T = TypeVar("T")


@dataclass(frozen=True)
class JobContext:
    cfg: PipelineConfig
    spark: SparkSession
    run_dir: Path
    owns_session: bool

    def close(self) -> None:
        """Stop Spark unless the session was already running (a test, a notebook)."""
        if self.owns_session:
            self.spark.stop()


def job_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--config",
        help="YAML config (default: the built-in defaults = deploy/configs/local.yaml's values)",
    )
    parser.add_argument("--run-dir", required=True, help="Output folder of the run.")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Override a config value, e.g. --set train.lr=0.005 (repeatable).",
    )
    parser.add_argument(
        "--rerun-stale",
        action="store_true",
        help="Rerun the upstream stages made with another config (default: refuse them).",
    )
    return parser


def load_job_config(args: argparse.Namespace) -> PipelineConfig:
    """``--config`` plus ``--set`` overrides, validated (raises ConfigError).

    With ``GRAPHPIPE_BASE_DIR`` set (the Airflow DAGs set it to the repository), relative
    data paths of the config are read from that folder instead of the working directory.
    """
    cfg = load_config(args.config, args.overrides)
    base_dir = os.environ.get(BASE_DIR_ENV)
    return resolve_paths(cfg, base_dir) if base_dir else cfg


def start_job(args: argparse.Namespace, job_name: str) -> JobContext:
    """Load and validate config (:func:`load_job_config`), write it to the run dir, start Spark."""
    setup_logging()
    cfg = load_job_config(args)
    run_dir = Path(args.run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.write(run_dir / "config.yaml")
    conf = {"spark.sql.shuffle.partitions": str(cfg.spark.shuffle_partitions), **cfg.spark.conf}
    owns = SparkSession.getActiveSession() is None
    spark = build_spark(f"{cfg.run.name}-{job_name}", master=cfg.spark.master, conf=conf)
    log.info("job %s: run dir %s", job_name, run_dir)
    return JobContext(cfg=cfg, spark=spark, run_dir=run_dir, owns_session=owns)


def print_stage_table(stages: Sequence[StageResult]) -> None:
    """Print one line per stage of a whole-run job: name, seconds, done or skipped, counts."""
    width = max([len("stage"), *(len(st.name) for st in stages)]) + 2
    print(f"\n{'stage':<{width}}{'seconds':>10}  {'status':<9} counts")
    for st in stages:
        status = "skipped" if st.skipped else "done"
        print(f"{st.name:<{width}}{st.seconds:>10.1f}  {status:<9} {st.counts}")


def fail(message: str) -> int:
    """Print one clear error line and return the exit code for bad input or config."""
    print(f"error: {message}", file=sys.stderr)
    return 2


__all__ = [
    "ConfigError",
    "JobContext",
    "JobError",
    "MissingStageError",
    "fail",
    "job_parser",
    "load_job_config",
    "print_stage_table",
    "run_job",
    "stage_main",
    "start_job",
    "setup_logging",
]


class JobError(Exception):
    """Bad input, a bad config or a missing upstream stage: one message, exit code 2."""


def run_job(
    args: argparse.Namespace,
    job_name: str,
    body: Callable[[JobContext], T],
    *,
    errors: tuple[type[Exception], ...] = (),
) -> T:
    """Start the job (:func:`start_job`), return ``body(ctx)``, stop Spark (when it started it).

    Raises:
        JobError: From a :class:`ConfigError`, an ``IngestError``, a
            :class:`MissingStageError` or one of ``errors``; other exceptions pass through.
    """
    from pipelines.ingest.stage import IngestError

    try:
        ctx = start_job(args, job_name)
    except ConfigError as exc:
        raise JobError(str(exc)) from exc
    expected: tuple[type[Exception], ...] = (ConfigError, IngestError, MissingStageError, *errors)
    try:
        return body(ctx)
    except expected as exc:
        raise JobError(str(exc)) from exc
    finally:
        ctx.close()


def stage_main(
    argv: Sequence[str] | None,
    stage: str,
    description: str,
    check: Callable[[dict[str, Any]], None] | None = None,
) -> int:
    """A job that runs one stage of a run (``pipelines.registry.STAGES``): thin by design.

    ``check``: called with the stage's counts (also when the stage was already done).
    Exit codes: 0 done or already done (same config), 2 bad input, bad config or a missing
    upstream stage.
    """
    args = job_parser(description).parse_args(argv)
    from pipelines.registry import run_one_stage

    def body(ctx: JobContext) -> StageResult:
        result = run_one_stage(ctx.spark, ctx.cfg, ctx.run_dir, stage, rerun_stale=args.rerun_stale)
        if check is not None:
            check(result.counts)
        return result

    try:
        result = run_job(args, stage, body)
    except JobError as exc:
        return fail(str(exc))
    status = "skipped (already done)" if result.skipped else f"done in {result.seconds:.1f} s"
    print(f"{stage} {status}: {result.path}")
    for key, value in result.counts.items():
        print(f"  {key:<20}{value:>14,}")
    for key, value in result.extra.items():
        if isinstance(value, (str, float, bool)):
            print(f"  {key:<20}{value!s:>14}")
    return 0
