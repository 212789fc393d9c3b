"""Progress of long driver-side loops: a bar on a terminal, rate-limited log lines elsewhere.

    for r in progress(range(1, rounds + 1), desc="train rounds"):
        ...

On a terminal (``stream.isatty()``) one line is redrawn in place (``\\r``) at most every
``redraw_seconds``; otherwise (a log file, Airflow, spark-submit under a scheduler) a plain
``desc: 3/10 (30%), 12.0 s elapsed, about 28 s left`` line goes to the logger at most every
``log_seconds``, plus always the first and the last step, so logs stay bounded whatever the
number of steps.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, TypeVar

T = TypeVar("T")
log = logging.getLogger("graphpipe.progress")
BAR_WIDTH = 24


def format_seconds(seconds: float) -> str:
    """``75.4`` -> ``"1:15"``, ``3725`` -> ``"1:02:05"``."""
    s = int(round(max(0.0, seconds)))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Counts steps of a loop and reports them (see the module docstring).

    Args:
        total: Number of steps, or None when unknown (no percentage, no estimate).
        desc: What is counted, e.g. ``"train rounds"``.
        stream: Where the bar goes (default ``sys.stderr``); its ``isatty()`` picks the mode.
        logger: Logger for the plain lines (``graphpipe.progress`` by default).
        log_seconds: Least seconds between two log lines (the last step is always logged).
        redraw_seconds: Least seconds between two redraws of the bar.
        clock: Monotonic clock in seconds (tests pass a fake one).
    """

    def __init__(
        self,
        total: int | None,
        *,
        desc: str,
        stream: IO[str] | None = None,
        logger: logging.Logger | None = None,
        log_seconds: float = 30.0,
        redraw_seconds: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.desc = desc
        self.stream = stream if stream is not None else sys.stderr
        self.logger = logger or log
        self.log_seconds = log_seconds
        self.redraw_seconds = redraw_seconds
        self.clock = clock
        isatty = getattr(self.stream, "isatty", None)
        self.terminal = bool(isatty and isatty())
        self.count = 0
        self.postfix = ""
        self.started = clock()
        self._last_report: float | None = None
        self._closed = False

    def text(self) -> str:
        """The status, e.g. ``train rounds: 3/10 (30%), 0:12 elapsed, about 0:28 left``."""
        elapsed = self.clock() - self.started
        parts = [f"{self.desc}: {self.count}" + (f"/{self.total}" if self.total else "")]
        if self.total:
            parts[0] += f" ({100 * self.count // self.total}%)"
        parts.append(f"{format_seconds(elapsed)} elapsed")
        if self.total and 0 < self.count < self.total:
            left = elapsed / self.count * (self.total - self.count)
            parts.append(f"about {format_seconds(left)} left")
        text = ", ".join(parts)
        return f"{text} {self.postfix}" if self.postfix else text

    def bar(self) -> str:
        """The terminal line: ``[#########...............] `` + :meth:`text`."""
        if not self.total:
            return self.text()
        filled = min(BAR_WIDTH, BAR_WIDTH * self.count // self.total)
        return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {self.text()}"

    def update(self, n: int = 1, **postfix: Any) -> None:
        """Count ``n`` more steps; ``postfix`` values (e.g. ``loss=0.12``) follow the status."""
        self.count += n
        if postfix:
            self.postfix = " ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in postfix.items()
            )
        self._report(final=self.total is not None and self.count >= self.total)

    def _report(self, *, final: bool) -> None:
        now = self.clock()
        gap = self.redraw_seconds if self.terminal else self.log_seconds
        due = self._last_report is None or now - self._last_report >= gap
        if not (due or final):
            return
        self._last_report = now
        if self.terminal:
            self.stream.write("\r\x1b[2K" + self.bar() + ("\n" if final else ""))
            self.stream.flush()
        else:
            self.logger.info("%s", self.text())

    def close(self) -> None:
        """Report the last state once (a loop left early or a total that was not reached)."""
        if self._closed:
            return
        self._closed = True
        if self.total is None or self.count < self.total:
            self._report(final=True)
            if self.terminal:
                self.stream.write("\n")
                self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(
    items: Iterable[T], *, desc: str, total: int | None = None, **kwargs: Any
) -> Iterator[T]:
    """Yield ``items`` while reporting them with a :class:`Progress` (same keyword options).

    ``total`` defaults to ``len(items)`` when ``items`` has a length.
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(total, desc=desc, **kwargs) as bar:
        for item in items:
            yield item
            bar.update()
