"""The one training loop: epochs of optimiser steps under a step, epoch and time budget.

Every trainer in :mod:`gnn` (LightGCN's BPR fit, the homogeneous fit, NBFNet full-graph and
partitioned training, federated leaf steps and the unlearning step loop) supplies two
callables, ``batches(epoch)`` (the batches of a 1-based epoch; RNG draws of the epoch happen
there, in the caller's order) and ``step(batch)`` (one optimiser step, returning its loss), and
:func:`run_loop` owns the rest, in the spirit of NBFNet's single engine and PyTorch-BigGraph's
trainer:

- limits: at most ``epochs`` epochs and ``max_steps`` steps, and a wall-clock budget of
  training seconds (evaluation and the epoch-end hooks excluded; ``spent`` charges setup
  time to it);
- records: one :class:`EpochRecord` per counted epoch (steps, seconds, mean loss);
- evaluation: ``evaluate`` every ``eval_every`` epochs and, optionally, once more at the end;
- early stop: after ``patience`` evaluations without improvement of ``monitor``;
- hooks: ``on_step`` after every step (step logging), ``on_epoch`` after every counted epoch
  (epoch logging, before evaluation), ``after_epoch`` after evaluation (checkpoints).

The limits have two flavours. ``strict_budget=True`` (BPR trainers): a step starts only while
training time and steps are left, and an epoch cut short by a limit does not count (its steps
stay in the model). ``False`` (NBFNet, unlearning): time and steps are read after every step,
so a run takes at least one step, and the epoch in which a limit is reached still counts (and
is evaluated). Either way the run ends after the epoch in which a limit is reached.
The loop draws no random numbers itself, so a seeded trainer stays bit-identical.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import torch

__all__ = [
    "EpochRecord",
    "LoopLimits",
    "LoopResult",
    "LoopState",
    "descend",
    "run_loop",
]

B = TypeVar("B")


@dataclass(frozen=True)
class LoopLimits:
    """When :func:`run_loop` stops and how often it evaluates.

    Attributes:
        epochs: Maximum epochs.
        max_steps: Maximum optimiser steps (0: no limit).
        budget_seconds: Training seconds allowed, ``spent`` included (0 or None: no limit).
        strict_budget: See the module docstring.
        eval_every: Evaluate after every N counted epochs (0: only at the end).
        eval_at_end: Evaluate after the last epoch unless it was just evaluated.
        monitor: Key of the evaluation dict that early stopping watches (None: no early stop).
        patience: Evaluations without improvement of ``monitor`` before stopping (>= 1).
        mode: ``"max"`` (higher is better) or ``"min"``.
        spent: Seconds already charged to the budget when the loop starts (setup time).
    """

    epochs: int
    max_steps: int = 0
    budget_seconds: float | None = None
    strict_budget: bool = True
    eval_every: int = 0
    eval_at_end: bool = True
    monitor: str | None = None
    patience: int = 1
    mode: str = "max"
    spent: float = 0.0

    def __post_init__(self) -> None:
        for name, ok in (
            ("epochs", self.epochs >= 0),
            ("max_steps", self.max_steps >= 0),
            ("budget_seconds", self.budget_seconds is None or self.budget_seconds >= 0),
            ("eval_every", self.eval_every >= 0),
            ("patience", self.patience >= 1),
            ("mode", self.mode in ("max", "min")),
        ):
            if not ok:
                raise ValueError(f"LoopLimits.{name}: invalid value {getattr(self, name)!r}")


@dataclass
class LoopState:
    """Where the loop stands; handed to every hook.

    Attributes:
        epoch: The current (1-based) epoch; after the loop, the last counted epoch.
        step: Optimiser steps taken.
        seconds: Training seconds so far (``spent`` and evaluation excluded).
        wall: Wall seconds since the loop started.
        epoch_steps: Steps taken in the current epoch.
        last_loss: The mean loss of the last counted epoch (NaN before the first).
    """

    epoch: int = 0
    step: int = 0
    seconds: float = 0.0
    wall: float = 0.0
    epoch_steps: int = 0
    last_loss: float = math.nan


@dataclass(frozen=True)
class EpochRecord:
    """One epoch's log record.

    Attributes:
        epoch: 1-based epoch.
        steps: Steps it took.
        seconds: Its training seconds.
        loss: Mean of its steps' losses (0.0 for an epoch without steps).
        total_seconds: Training seconds at its end.
        completed: False when a limit cut it short (non-strict limits: when a limit was
            reached in it).
    """

    epoch: int
    steps: int
    seconds: float
    loss: float
    total_seconds: float
    completed: bool = True


@dataclass
class LoopResult:
    """What :func:`run_loop` returns.

    Attributes:
        epochs: Counted epochs.
        steps: Optimiser steps taken (those of an uncounted epoch included).
        seconds: Training seconds (``spent`` and evaluation excluded).
        records: One :class:`EpochRecord` per counted epoch.
        history: The dicts ``evaluate`` returned, in order.
        stop: Why it stopped: ``epochs``, ``steps``, ``budget`` or ``early_stop``.
    """

    epochs: int
    steps: int
    seconds: float
    records: list[EpochRecord] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)
    stop: str = "epochs"


class _Watch:
    """Early stopping on one evaluation key: counts evaluations without improvement."""

    def __init__(self, limits: LoopLimits) -> None:
        self.key, self.patience, self.sign = limits.monitor, limits.patience, limits.mode
        self.best = -math.inf
        self.stale = 0

    def stale_out(self, row: dict[str, float]) -> bool:
        if self.key is None:
            return False
        value = row[self.key] if self.sign == "max" else -row[self.key]
        if value > self.best:
            self.best, self.stale = value, 0
        else:
            self.stale += 1
        return self.stale >= self.patience


@dataclass
class _Hooks(Generic[B]):
    batches: Callable[[LoopState], Iterable[B]]
    step: Callable[[B], Any]
    on_step: Callable[[LoopState], Any] | None
    evaluate: Callable[[LoopState], dict[str, float]] | None
    sync: Callable[[], Any] | None


class _Loop(Generic[B]):
    """State of one :func:`run_loop` call."""

    def __init__(self, limits: LoopLimits, hooks: _Hooks[B]) -> None:
        self.limits, self.hooks = limits, hooks
        self.state = LoopState()
        self.result = LoopResult(epochs=0, steps=0, seconds=0.0)
        self.watch = _Watch(limits)
        self.started = time.perf_counter()
        self.last_eval = -1

    def budget_left(self, seconds: float) -> bool:
        budget = self.limits.budget_seconds
        return not budget or self.limits.spent + seconds < budget

    def steps_left(self) -> bool:
        return not self.limits.max_steps or self.state.step < self.limits.max_steps

    def epoch(self) -> EpochRecord:
        """Run the steps of ``state.epoch``; returns its record."""
        st, hooks, strict = self.state, self.hooks, self.limits.strict_budget
        t0 = time.perf_counter()
        total: Any = None
        st.epoch_steps = 0
        completed = True
        for batch in hooks.batches(st):
            late = strict and not self.budget_left(st.seconds + time.perf_counter() - t0)
            if late or not self.steps_left():
                completed = False
                break
            value = hooks.step(batch)
            total = value if total is None else total + value  # tensors: no host sync
            st.step += 1
            st.epoch_steps += 1
            now = time.perf_counter()
            elapsed = st.seconds + now - t0
            if hooks.on_step is not None:
                hooks.on_step(LoopState(st.epoch, st.step, elapsed, now - self.started))
            if not strict and not (self.steps_left() and self.budget_left(elapsed)):
                completed = False
                break
        if hooks.sync is not None:
            hooks.sync()
        spent = time.perf_counter() - t0
        st.seconds += spent
        loss = 0.0 if total is None else float(total) / st.epoch_steps
        return EpochRecord(st.epoch, st.epoch_steps, spent, loss, st.seconds, completed)

    def evaluate(self) -> bool:
        """Evaluate (time excluded from training); True when early stopping says stop."""
        assert self.hooks.evaluate is not None
        self.state.wall = time.perf_counter() - self.started
        row = self.hooks.evaluate(self.state)
        self.result.history.append(row)
        self.last_eval = self.state.epoch
        return self.watch.stale_out(row)


def run_loop(
    batches: Callable[[LoopState], Iterable[B]],
    step: Callable[[B], Any],
    limits: LoopLimits,
    *,
    on_step: Callable[[LoopState], Any] | None = None,
    on_epoch: Callable[[EpochRecord], Any] | None = None,
    evaluate: Callable[[LoopState], dict[str, float]] | None = None,
    after_epoch: Callable[[EpochRecord, LoopState], Any] | None = None,
    sync: Callable[[], Any] | None = None,
    log: Callable[[str], Any] | None = None,
) -> LoopResult:
    """Train: epochs of ``step(batch)`` over ``batches(state)`` until a limit is reached.

    Args:
        batches: The batches of epoch ``state.epoch`` (called once per epoch, at its start).
        step: One optimiser step; returns the loss (a float, or a tensor summed without host
            synchronisation and read once per epoch).
        limits: Limits, evaluation cadence and early stopping.
        on_step: Called after every step with the step's state (``seconds`` up to now).
        on_epoch: Called with the record of every counted epoch, before evaluation.
        evaluate: Returns one history row; its time is not training time.
        after_epoch: Called after every counted epoch's evaluation (a checkpoint hook).
        sync: Called before the clock is read at the end of an epoch (device sync).
        log: Receives a line when the time budget stops the run.

    Returns:
        :class:`LoopResult`.
    """
    loop = _Loop(limits, _Hooks(batches, step, on_step, evaluate, sync))
    st, res = loop.state, loop.result
    for epoch in range(1, limits.epochs + 1):
        st.epoch = epoch
        record = loop.epoch()
        res.steps, res.seconds = st.step, st.seconds
        if not record.completed and limits.strict_budget:  # the cut epoch does not count
            st.epoch -= 1
            res.stop = "budget" if loop.steps_left() else "steps"
            if log is not None and res.stop == "budget":
                log(f"epoch {epoch:4d}  stopped by the time budget after {st.seconds:.1f}s")
            break
        res.records.append(record)
        st.last_loss = record.loss
        if on_epoch is not None:
            on_epoch(record)
        due = evaluate is not None and limits.eval_every and epoch % limits.eval_every == 0
        if due and loop.evaluate():
            res.stop = "early_stop"
        if after_epoch is not None:
            after_epoch(record, st)
        if res.stop == "early_stop" or _limit_reached(loop, log):
            break
    res.epochs = len(res.records)
    if evaluate is not None and limits.eval_at_end and loop.last_eval != st.epoch:
        loop.evaluate()
    return res


def _limit_reached(loop: _Loop[Any], log: Callable[[str], Any] | None) -> bool:
    """Whether the step or time limit ends the run after a counted epoch (sets ``stop``)."""
    st, res = loop.state, loop.result
    if not loop.steps_left():
        res.stop = "steps"
        return True
    if not loop.budget_left(st.seconds):
        res.stop = "budget"
        if log is not None:
            log(f"time budget {loop.limits.budget_seconds:.0f}s reached after {st.epoch} epochs")
        return True
    return False


def descend(
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
    *,
    on_grad: Callable[[], Any] | None = None,
) -> None:
    """One optimiser step on ``loss``: clear gradients, back-propagate, ``on_grad()`` (the
    gradients are readable there), step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if on_grad is not None:
        on_grad()
    optimizer.step()
