"""pipelines.core.progress: a bar on a terminal, rate-limited log lines elsewhere (fake clock)."""

from __future__ import annotations

import io
import logging

import pytest

from pipelines.core.progress import Progress, format_seconds, progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0:00"), (75.4, "1:15"), (3725, "1:02:05"), (-3, "0:00")]
)
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def test_log_lines_are_rate_limited_but_first_and_last_always_come(caplog):
    clock = FakeClock()
    logger = logging.getLogger("test.progress")
    steps = []
    with caplog.at_level(logging.INFO, logger="test.progress"):
        for i in progress(
            range(10), desc="rounds", stream=io.StringIO(), logger=logger,
            log_seconds=30, clock=clock,
        ):  # fmt: skip
            steps.append(i)
            clock.now += 7.0  # each step takes 7 s: lines after steps 1, 6 (35 s later) and 10
    assert steps == list(range(10))
    assert [r.getMessage() for r in caplog.records] == [
        "rounds: 1/10 (10%), 0:07 elapsed, about 1:03 left",
        "rounds: 6/10 (60%), 0:42 elapsed, about 0:28 left",
        "rounds: 10/10 (100%), 1:10 elapsed",
    ]


def test_terminal_bar_redraws_in_place_and_ends_with_a_newline():
    clock = FakeClock()
    tty = Tty()
    bar = Progress(4, desc="leaves", stream=tty, redraw_seconds=0.0, clock=clock)
    assert bar.terminal
    clock.now += 2.0
    bar.update(loss=0.123456)
    clock.now += 2.0
    bar.update(3)
    bar.close()
    assert tty.getvalue() == (
        "\r\x1b[2K[######..................] leaves: 1/4 (25%), 0:02 elapsed, about 0:06 left"
        " loss=0.1235"
        "\r\x1b[2K[########################] leaves: 4/4 (100%), 0:04 elapsed loss=0.1235\n"
    )


def test_terminal_redraws_at_most_every_redraw_seconds():
    clock = FakeClock()
    tty = Tty()
    bar = Progress(100, desc="x", stream=tty, redraw_seconds=1.0, clock=clock)
    for _ in range(99):
        clock.now += 0.25
        bar.update()
    # Redraws at steps 1, 5, 9, ... 97 (every 4 steps = 1 s): 25 of them; none final yet.
    assert tty.getvalue().count("\r") == 25
    bar.update()
    assert tty.getvalue().count("\r") == 26 and tty.getvalue().endswith(
        "100/100 (100%), 0:25 elapsed\n"
    )


def test_unknown_total_and_early_exit_report_once_on_close(caplog):
    clock = FakeClock()
    logger = logging.getLogger("test.progress2")
    with caplog.at_level(logging.INFO, logger="test.progress2"):
        with Progress(None, desc="batches", stream=io.StringIO(), logger=logger,
                      log_seconds=60, clock=clock) as bar:  # fmt: skip
            for _ in range(5):
                clock.now += 10
                bar.update()
        bar.close()  # a second close adds nothing
    assert [r.getMessage() for r in caplog.records] == [
        "batches: 1, 0:10 elapsed",
        "batches: 5, 0:50 elapsed",
    ]


def test_generator_total_is_unknown_and_list_total_is_its_length():
    clock = FakeClock()
    stream = io.StringIO()
    logger = logging.getLogger("test.progress3")
    assert list(progress((i for i in range(3)), desc="g", stream=stream, logger=logger,
                         clock=clock)) == [0, 1, 2]  # fmt: skip
    bar = Progress(len([1, 2]), desc="l", stream=stream, clock=clock)
    assert bar.total == 2 and stream.getvalue() == ""
