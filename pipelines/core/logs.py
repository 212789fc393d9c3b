"""Plain log lines for jobs and stages: ``time level logger: message``.

:func:`setup_logging` configures the root logger once; :func:`stage_timer` logs the start, the
end and the seconds of one step and names the step in the Spark job description, so the Spark
UI and the event log show which stage (and which step of it) ran each job.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_JOB_DESCRIPTION = "spark.job.description"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each record (pytest swaps it)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def setup_logging(level: int | str = logging.INFO, *, stream: Any = None) -> None:
    """Send ``time level logger: message`` lines to stderr (idempotent).

    Args:
        level: Root log level (``logging.INFO`` by default).
        stream: Where to write; by default the current ``sys.stderr`` at each record.
    """
    root = logging.getLogger()
    root.setLevel(level)
    for handler in root.handlers:
        if getattr(handler, "_graphpipe", False):
            return
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler._graphpipe = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    # py4j logs every gateway call at INFO; keep it quiet.
    logging.getLogger("py4j").setLevel(logging.WARNING)


@contextmanager
def stage_timer(
    name: str, *, logger: logging.Logger | None = None, spark: Any = None
) -> Iterator[dict[str, float]]:
    """Log ``name: start`` and ``name: done in S s`` around a block.

    When ``spark`` is given, the Spark job description is set to ``graphpipe stage: <name>``
    for the jobs of the block and restored afterwards. The yielded dict receives ``seconds``
    when the block ends.

    Args:
        name: Step name, e.g. ``"ingest: number lines"``.
        logger: Logger to use (``graphpipe.stages`` by default).
        spark: SparkSession whose job description names the step.
    """
    log = logger or logging.getLogger("graphpipe.stages")
    sc = spark.sparkContext if spark is not None else None
    previous = sc.getLocalProperty(_JOB_DESCRIPTION) if sc is not None else None
    if sc is not None:
        sc.setJobDescription(f"graphpipe stage: {name}")
    timing: dict[str, float] = {}
    log.info("%s: start", name)
    started = time.perf_counter()
    try:
        yield timing
    finally:
        timing["seconds"] = time.perf_counter() - started
        if sc is not None:
            sc.setJobDescription(previous)
        log.info("%s: done in %.1f s", name, timing["seconds"])
