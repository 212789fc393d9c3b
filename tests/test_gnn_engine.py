"""The one training loop (gnn.engine.loop): limits, evaluation cadence, early stop, hooks."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from gnn.engine import loop as loop_module
from gnn.engine.loop import EpochRecord, LoopLimits, LoopState, descend, run_loop


class FakeClock:
    """``time.perf_counter`` stand-in: moves only when a step (or evaluation) says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def perf_counter(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(loop_module, "time", SimpleNamespace(perf_counter=fake.perf_counter))
    return fake


def _steps(clock: FakeClock, seconds: float = 1.0, losses: list[float] | None = None):
    """A step that takes ``seconds`` and returns the step's index as its loss."""
    taken: list[int] = []

    def step(batch: int) -> float:
        clock.now += seconds
        taken.append(batch)
        if losses is not None:
            losses.append(float(batch))
        return float(batch)

    return step, taken


def test_runs_every_epoch_and_records_mean_losses(clock: FakeClock) -> None:
    step, taken = _steps(clock)
    seen: list[int] = []

    def batches(state: LoopState) -> range:
        seen.append(state.epoch)
        return range(3)

    res = run_loop(batches, step, LoopLimits(epochs=4))
    assert seen == [1, 2, 3, 4] and len(taken) == 12
    assert res.epochs == 4 and res.steps == 12 and res.stop == "epochs"
    assert [r.loss for r in res.records] == [1.0] * 4  # mean of 0, 1, 2
    assert [r.seconds for r in res.records] == [3.0] * 4
    assert res.seconds == 12.0 and res.records[-1].total_seconds == 12.0


def test_strict_budget_stops_before_a_step_and_drops_the_cut_epoch(clock: FakeClock) -> None:
    step, taken = _steps(clock)
    lines: list[str] = []
    res = run_loop(
        lambda s: range(4), step, LoopLimits(epochs=10, budget_seconds=6.0), log=lines.append
    )
    # epoch 1: 4 s; epoch 2 starts steps at 4 and 5 s, stops at 6 s: not counted
    assert len(taken) == 6 and res.steps == 6
    assert res.epochs == 1 and res.stop == "budget"
    assert lines == ["epoch    2  stopped by the time budget after 6.0s"]


def test_strict_budget_reached_at_an_epoch_end(clock: FakeClock) -> None:
    step, _ = _steps(clock)
    lines: list[str] = []
    res = run_loop(
        lambda s: range(2), step, LoopLimits(epochs=10, budget_seconds=4.0), log=lines.append
    )
    assert res.epochs == 2 and res.stop == "budget"
    assert lines == ["time budget 4s reached after 2 epochs"]


def test_spent_setup_time_counts_against_the_budget(clock: FakeClock) -> None:
    step, taken = _steps(clock)
    limits = LoopLimits(epochs=5, budget_seconds=3.0, spent=2.5)
    res = run_loop(lambda s: range(2), step, limits)
    assert len(taken) == 1 and res.epochs == 0  # 2.5 + 1 >= 3 before the second step


def test_loose_budget_takes_a_step_and_keeps_the_cut_epoch(clock: FakeClock) -> None:
    step, taken = _steps(clock)
    evals: list[int] = []

    def evaluate(state: LoopState) -> dict[str, float]:
        evals.append(state.epoch)
        return {"epoch": float(state.epoch)}

    limits = LoopLimits(
        epochs=5, budget_seconds=1e-9, strict_budget=False, eval_every=1, eval_at_end=False
    )
    res = run_loop(lambda s: range(4), step, limits, evaluate=evaluate)
    assert len(taken) == 1 and res.steps == 1
    assert res.epochs == 1 and not res.records[0].completed and res.stop == "budget"
    assert evals == [1]


def test_max_steps_stops_mid_epoch(clock: FakeClock) -> None:
    step, taken = _steps(clock)
    loose = run_loop(
        lambda s: range(3), step, LoopLimits(epochs=5, max_steps=7, strict_budget=False)
    )
    assert len(taken) == 7 and loose.steps == 7 and loose.stop == "steps"
    assert loose.epochs == 3 and not loose.records[-1].completed
    step, taken = _steps(clock)
    strict = run_loop(lambda s: range(3), step, LoopLimits(epochs=5, max_steps=7))
    assert len(taken) == 7 and strict.epochs == 2 and strict.stop == "steps"


def test_max_steps_at_an_epoch_end_stops_before_the_next_epoch(clock: FakeClock) -> None:
    step, _ = _steps(clock)
    started: list[int] = []

    def batches(state: LoopState) -> range:
        started.append(state.epoch)
        return range(3)

    res = run_loop(batches, step, LoopLimits(epochs=5, max_steps=6))
    assert started == [1, 2] and res.epochs == 2 and res.stop == "steps"


def test_eval_cadence_and_the_final_evaluation(clock: FakeClock) -> None:
    step, _ = _steps(clock)
    calls: list[tuple[int, float, float]] = []

    def evaluate(state: LoopState) -> dict[str, float]:
        calls.append((state.epoch, state.seconds, state.last_loss))
        clock.now += 50.0  # evaluation time is not training time
        return {"epoch": float(state.epoch)}

    res = run_loop(lambda s: range(2), step, LoopLimits(epochs=5, eval_every=2), evaluate=evaluate)
    assert [c[0] for c in calls] == [2, 4, 5]
    assert [c[1] for c in calls] == [4.0, 8.0, 10.0]
    assert all(c[2] == 0.5 for c in calls)
    assert [row["epoch"] for row in res.history] == [2.0, 4.0, 5.0]
    assert res.seconds == 10.0
    step, _ = _steps(clock)
    calls.clear()
    run_loop(lambda s: range(2), step, LoopLimits(epochs=4, eval_every=2), evaluate=evaluate)
    assert [c[0] for c in calls] == [2, 4]  # the last epoch was just evaluated


def test_zero_epochs_evaluate_once_at_the_end_unless_told_not_to(clock: FakeClock) -> None:
    step, taken = _steps(clock)
    calls: list[LoopState] = []

    def evaluate(state: LoopState) -> dict[str, float]:
        calls.append(state)
        return {}

    run_loop(lambda s: range(2), step, LoopLimits(epochs=0), evaluate=evaluate)
    assert len(calls) == 1 and calls[0].epoch == 0 and math.isnan(calls[0].last_loss)
    run_loop(lambda s: range(2), step, LoopLimits(epochs=0, eval_at_end=False), evaluate=evaluate)
    assert len(calls) == 1 and taken == []


def test_early_stop_after_patience_evaluations_without_improvement(clock: FakeClock) -> None:
    step, _ = _steps(clock)
    scores = iter([0.1, 0.3, 0.2, 0.25, 0.9, 0.95])

    def evaluate(state: LoopState) -> dict[str, float]:
        return {"recall": next(scores)}

    limits = LoopLimits(epochs=10, eval_every=1, monitor="recall", patience=2)
    res = run_loop(lambda s: range(1), step, limits, evaluate=evaluate)
    assert res.stop == "early_stop" and res.epochs == 4
    assert [row["recall"] for row in res.history] == [0.1, 0.3, 0.2, 0.25]
    losses = iter([3.0, 2.0, 2.5, 1.0, 1.5, 1.6])
    limits = LoopLimits(epochs=6, eval_every=1, monitor="loss", patience=2, mode="min")
    res = run_loop(lambda s: range(1), step, limits, evaluate=lambda s: {"loss": next(losses)})
    assert res.stop == "early_stop" and res.epochs == 6 and len(res.history) == 6


def test_hooks_see_every_step_and_epoch_in_order(clock: FakeClock) -> None:
    step, _ = _steps(clock)
    events: list[str] = []

    def on_step(state: LoopState) -> None:
        events.append(f"step {state.epoch}.{state.step} {state.seconds:.0f}s")

    def on_epoch(record: EpochRecord) -> None:
        events.append(f"epoch {record.epoch} loss {record.loss}")

    def evaluate(state: LoopState) -> dict[str, float]:
        events.append(f"eval {state.epoch}")
        return {}

    def after_epoch(record: EpochRecord, state: LoopState) -> None:
        events.append(f"checkpoint {record.epoch} after {state.step} steps")

    run_loop(
        lambda s: range(2),
        step,
        LoopLimits(epochs=2, eval_every=1),
        on_step=on_step,
        on_epoch=on_epoch,
        evaluate=evaluate,
        after_epoch=after_epoch,
        sync=lambda: events.append("sync"),
    )
    assert events == [
        "step 1.1 1s",
        "step 1.2 2s",
        "sync",
        "epoch 1 loss 0.5",
        "eval 1",
        "checkpoint 1 after 2 steps",
        "step 2.3 3s",
        "step 2.4 4s",
        "sync",
        "epoch 2 loss 0.5",
        "eval 2",
        "checkpoint 2 after 4 steps",
    ]


def test_tensor_losses_are_summed_and_read_once_per_epoch(clock: FakeClock) -> None:
    def step(batch: int) -> torch.Tensor:
        return torch.tensor(float(batch))

    res = run_loop(lambda s: range(4), step, LoopLimits(epochs=1))
    assert res.records[0].loss == 1.5
    assert run_loop(lambda s: [], step, LoopLimits(epochs=2)).records[0].loss == 0.0


def test_limits_are_validated() -> None:
    for bad in (
        {"epochs": -1},
        {"epochs": 1, "max_steps": -1},
        {"epochs": 1, "budget_seconds": -1.0},
        {"epochs": 1, "eval_every": -2},
        {"epochs": 1, "patience": 0},
        {"epochs": 1, "mode": "best"},
    ):
        with pytest.raises(ValueError, match="LoopLimits"):
            LoopLimits(**bad)


def test_descend_reads_gradients_between_backward_and_step() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = torch.optim.SGD([w], lr=0.5)
    grads: list[list[float]] = []

    def read() -> None:
        assert w.grad is not None
        grads.append(w.grad.tolist())

    for _ in range(2):
        descend(opt, (w**2).sum(), on_grad=read)
    assert grads == [[2.0, 4.0], [0.0, 0.0]]  # w halves to 0 after the first step
    assert w.tolist() == [0.0, 0.0]
