"""What every job shares: arguments, config, session, resolved config beside the outputs.

Failures a user can reach end as one ``error: ...`` line on stderr naming the file, key or
stage, and exit code 2 (:func:`job_main`); ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

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


class UsageError(Exception):
    """A bad command line (unknown option, missing or bad argument): one message, exit 2."""


class JobArgumentParser(argparse.ArgumentParser):
    """An argument parser whose errors are one ``error:`` line (:func:`job_main`), no usage."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def run_dir_arg(text: str) -> str:
    """``--run-dir``: a folder, existing or not; refuses an empty value and a path through a file.

    Raises:
        argparse.ArgumentTypeError: Naming the file in the way.
    """
    if not text.strip():
        raise argparse.ArgumentTypeError("empty value: name the run's folder")
    path = Path(text)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                inside = "" if p == path else f" (in {text})"
                raise argparse.ArgumentTypeError(f"{p}{inside} is a file, not a folder")
            break
    return text


def job_parser(description: str) -> argparse.ArgumentParser:
    parser = JobArgumentParser(description=description)
    parser.add_argument(
        "--config",
        help="YAML config (default: the built-in defaults = deploy/configs/local.yaml's values)",
    )
    parser.add_argument(
        "--run-dir", required=True, type=run_dir_arg, help="Output folder of the run."
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Override a config value, e.g. --set train.lr=0.005 (repeatable); the value is "
        "typed by the key's field (a path stays the text written).",
    )
    add_debug_flag(parser)
    parser.add_argument(
        "--rerun-stale",
        action="store_true",
        help="Rerun the upstream stages made with another config (default: refuse them).",
    )
    return parser


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """``--debug``: print the traceback of a failure above its ``error:`` line."""
    parser.add_argument("--debug", action="store_true", help="On failure, print the traceback too.")


def load_job_config(args: argparse.Namespace) -> PipelineConfig:
    """``--config`` plus ``--set`` overrides, validated (raises ConfigError).

    With ``GRAPHPIPE_BASE_DIR`` set (the Airflow DAGs set it to the repository), relative
    data paths of the config are read from that folder instead of the working directory.
    """
    cfg = load_config(args.config, args.overrides)
    base_dir = os.environ.get(BASE_DIR_ENV)
    return resolve_paths(cfg, base_dir) if base_dir else cfg


def start_job(args: argparse.Namespace, job_name: str) -> JobContext:
    """Load and validate config (:func:`load_job_config`), create the run dir, start Spark.

    The config is recorded (``<run_dir>/config.yaml``) by :func:`run_job` once the job's
    checks passed and its work is done, never by a refused job.
    """
    setup_logging()
    cfg = load_job_config(args)
    run_dir = Path(args.run_dir).resolve()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--run-dir {run_dir}: cannot create the folder: {exc.strerror}") from exc
    conf = {"spark.sql.shuffle.partitions": str(cfg.spark.shuffle_partitions), **cfg.spark.conf}
    owns = SparkSession.getActiveSession() is None
    spark = build_spark(f"{cfg.run.name}-{job_name}", master=cfg.spark.master, conf=conf)
    log.info("job %s: run dir %s", job_name, run_dir)
    return JobContext(cfg=cfg, spark=spark, run_dir=run_dir, owns_session=owns)


def record_config(ctx: JobContext, *, replace: bool = True) -> None:
    """Write the job's resolved config to ``<run_dir>/config.yaml`` (kept when ``replace`` is
    false and a record exists: a job that reused finished work leaves the record alone)."""
    path = ctx.run_dir / "config.yaml"
    if path.exists() and not replace:
        return
    try:
        ctx.cfg.write(path)
    except OSError as exc:
        raise JobError(f"{path}: cannot write the run's config: {exc.strerror}") from exc


def print_stage_table(stages: Sequence[StageResult]) -> None:
    """Print one line per stage of a whole-run job: name, seconds, done or skipped, counts."""
    width = max([len("stage"), *(len(st.name) for st in stages)]) + 2
    print(f"\n{'stage':<{width}}{'seconds':>10}  {'status':<9} counts")
    for st in stages:
        status = "skipped" if st.skipped else "done"
        print(f"{st.name:<{width}}{st.seconds:>10.1f}  {status:<9} {st.counts}")


def fail(message: str) -> int:
    """Print one clear error line and return the exit code for bad input or config."""
    line = " ".join(message.split())  # one line, whatever the message held
    print(f"error: {line}", file=sys.stderr)
    return 2


__all__ = [
    "ConfigError",
    "JobArgumentParser",
    "JobContext",
    "JobError",
    "MissingStageError",
    "UsageError",
    "add_debug_flag",
    "fail",
    "job_main",
    "job_parser",
    "load_job_config",
    "print_stage_table",
    "record_config",
    "run_dir_arg",
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
    did_work: Callable[[T], bool] | None = None,
) -> T:
    """Start the job (:func:`start_job`), return ``body(ctx)``, stop Spark (when it started it).

    Once ``body`` returned, the config is recorded (:func:`record_config`); when ``did_work``
    says the job only reused finished work, an existing record is kept.

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
        result = body(ctx)
    except expected as exc:
        raise JobError(str(exc)) from exc
    finally:
        ctx.close()
    record_config(ctx, replace=did_work is None or did_work(result))
    return result


def stage_main(
    argv: Sequence[str] | None,
    stage: str,
    description: str,
    check: Callable[[dict[str, Any]], None] | None = None,
) -> int:
    """A job that runs one stage of a run (``pipelines.registry.STAGES``): thin by design.

    ``check``: called with the stage's counts (also when the stage was already done).
    Exit codes: 0 done or already done (same config), 2 bad input, bad config or a missing
    upstream stage (raised as :class:`JobError`: the caller is wrapped by :func:`job_main`).
    """
    args = job_parser(description).parse_args(argv)
    from pipelines.registry import run_one_stage

    def body(ctx: JobContext) -> StageResult:
        result = run_one_stage(ctx.spark, ctx.cfg, ctx.run_dir, stage, rerun_stale=args.rerun_stale)
        if check is not None:
            check(result.counts)
        return result

    result = run_job(args, stage, body, did_work=lambda r: not r.skipped)
    status = "skipped (already done)" if result.skipped else f"done in {result.seconds:.1f} s"
    print(f"{stage} {status}: {result.path}")
    for key, value in result.counts.items():
        print(f"  {key:<20}{value:>14,}")
    for key, value in result.extra.items():
        if isinstance(value, (str, float, bool)):
            print(f"  {key:<20}{value!s:>14}")
    return 0


#: Exceptions whose message is the whole story (it names the file, key or stage).
_EXPECTED: tuple[type[Exception], ...] = (UsageError, JobError, ConfigError, MissingStageError)


def _root_message(exc: BaseException) -> str:
    """One line for an unexpected exception: the root cause's message, not a Py4J wrapper."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    causes = [ln[len("Caused by: ") :] for ln in lines if ln.startswith("Caused by: ")]
    useful = [ln.lstrip(": ") for ln in lines if not ln.startswith(("An error occurred", "at "))]
    text = causes[-1] if causes else (useful[0] if useful else "")
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


def job_main(name: str) -> Callable[[Callable[[list[str]], int]], Callable[..., int]]:
    """Decorate a job's ``main(argv)``: every failure becomes one ``error:`` line and exit 2.

    Expected failures (bad command line, config, input, missing stage) print their message; an
    :class:`OSError` names its file; anything else names the job and the root cause. With
    ``--debug`` on the command line the traceback is printed first.
    """

    def wrap(main: Callable[[list[str]], int]) -> Callable[..., int]:
        @functools.wraps(main)
        def wrapper(argv: Sequence[str] | None = None) -> int:
            args = list(sys.argv[1:] if argv is None else argv)
            try:
                return main(args)
            except Exception as exc:
                if "--debug" in args:
                    traceback.print_exception(exc, file=sys.stderr)
                if isinstance(exc, _EXPECTED):
                    return fail(str(exc))
                if isinstance(exc, OSError) and exc.filename is not None:
                    return fail(f"{name}: {exc.filename}: {exc.strerror or exc}")
                hint = "" if "--debug" in args else " (--debug shows the traceback)"
                return fail(f"{name} failed: {_root_message(exc)}{hint}")

        return wrapper

    return wrap
