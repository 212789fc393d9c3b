"""BPR training shared by LightGCN implementations: the step and its epochs.

Written against a ``forward() -> (final, ego)`` callable, so the same sampler, batching, loss
(LightGCN Eq. 15), optimiser and loop (:func:`gnn.engine.loop.run_loop`) drive ours
(:func:`gnn.engine.lightgcn.fit_lightgcn`) and, in the benchmark, PyG's ``LightGCN``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from gnn.data.sampling import BPRSampler, Interactions
from gnn.engine.lightgcn_config import LightGCNTrainConfig
from gnn.engine.loop import EpochRecord, LoopLimits, LoopResult, LoopState, run_loop
from gnn.losses import lightgcn_bpr_loss

__all__ = ["BPRStepper", "make_adam", "train_bpr"]


class BPRStepper:
    """One BPR + Adam step per call (LightGCN Eq. 15); on CUDA optionally a replayed graph.

    Eager mode runs ``forward``, gathers the batch rows, computes the loss, back-propagates
    and steps the optimiser. With ``cuda_graph=True`` (CUDA only) the first full-size batches
    run eagerly on a side stream as warm-up, then the whole step (propagation, loss, backward
    and a capturable Adam step) is captured once into a CUDA graph and replayed for every
    later full-size batch: the step is launch-bound on fast GPUs, and replay removes the
    per-kernel launch and autograd overhead. Smaller batches (an epoch's last) run eagerly.
    If capture fails, training carries on eagerly and ``graph_error`` says why.

    Args:
        forward: Returns ``(final, ego)``: propagated and layer-0 embeddings of all nodes,
            users first then items (item ``i`` is row ``num_users + i``).
        optimizer: Steps the parameters behind ``ego`` (capturable when graphed).
        num_users: Offset of the item rows.
        reg: L2 weight on the batch's ego rows.
        batch_size: The full batch size (the captured shape).
        cuda_graph: Capture and replay the step on CUDA.
        warmup_steps: Eager steps before capture.

    Shapes:
        ``forward()``: ``([U + I, d], [U + I, d])``; a call takes three ``[B]`` id tensors and
        returns the detached scalar loss (no host synchronisation).
    """

    def __init__(
        self,
        forward: Callable[[], tuple[Tensor, Tensor]],
        optimizer: torch.optim.Optimizer,
        *,
        num_users: int,
        reg: float,
        batch_size: int,
        cuda_graph: bool = False,
        warmup_steps: int = 3,
    ) -> None:
        self.forward = forward
        self.optimizer = optimizer
        self.num_users = num_users
        self.reg = reg
        self.batch_size = batch_size
        self.use_graph = cuda_graph and torch.cuda.is_available()
        self.warmup_steps = warmup_steps
        self.graph_error: str | None = None
        self._warm = 0
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static: tuple[Tensor, Tensor, Tensor] | None = None
        self._static_loss: Tensor | None = None

    @property
    def graphed(self) -> bool:
        """Whether steps are being replayed from a captured graph."""
        return self._graph is not None

    def _eager(self, users: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        final, ego = self.forward()
        idx = torch.cat([users, pos + self.num_users, neg + self.num_users])
        f_u, f_p, f_n = final.index_select(0, idx).chunk(3)
        e_u, e_p, e_n = ego.index_select(0, idx).chunk(3)
        loss, _, _ = lightgcn_bpr_loss(f_u, f_p, f_n, e_u, e_p, e_n, reg=self.reg)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def __call__(self, users: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        if not self.use_graph or users.device.type != "cuda" or users.numel() != self.batch_size:
            return self._eager(users, pos, neg)
        if self._graph is not None:
            assert self._static is not None and self._static_loss is not None
            for dst, src in zip(self._static, (users, pos, neg), strict=True):
                dst.copy_(src)
            self._graph.replay()
            return self._static_loss.clone()
        if self._warm < self.warmup_steps:  # warm-up on a side stream, as capture requires
            self._warm += 1
            side = torch.cuda.Stream(device=users.device)
            side.wait_stream(torch.cuda.current_stream(users.device))
            with torch.cuda.stream(side):
                loss = self._eager(users, pos, neg)
            torch.cuda.current_stream(users.device).wait_stream(side)
            return loss
        return self._capture(users, pos, neg)

    def _capture(self, users: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        static = (users.clone(), pos.clone(), neg.clone())
        graph = torch.cuda.CUDAGraph()
        try:
            self.optimizer.zero_grad(set_to_none=True)
            with torch.cuda.graph(graph):
                static_loss = self._eager(*static)
        except Exception as exc:  # any capture failure: fall back to eager steps
            self.use_graph = False
            self.graph_error = f"{type(exc).__name__}: {exc}"
            torch.cuda.synchronize(users.device)
            return self._eager(users, pos, neg)
        self._graph, self._static, self._static_loss = graph, static, static_loss
        graph.replay()  # capture records the step without running it
        return static_loss.clone()


def make_adam(
    params: Any, lr: float, device: torch.device, *, capturable: bool = False
) -> torch.optim.Adam:
    """Fused Adam (one pass over the parameters); ``capturable`` for CUDA graphs."""
    if device.type == "cuda":
        return torch.optim.Adam(params, lr=lr, fused=True, capturable=capturable)
    return torch.optim.Adam(params, lr=lr, fused=True)


def train_bpr(
    forward: Callable[[], tuple[Tensor, Tensor]],
    parameters: Iterable[Tensor],
    data: Interactions,
    cfg: LightGCNTrainConfig,
    dev: torch.device,
    *,
    log: Callable[..., Any] = print,
    evaluate: Callable[[LoopState], dict[str, float]] | None = None,
    started: float | None = None,
    name: str = "lightgcn",
    epochs: int | None = None,
) -> LoopResult:
    """BPR + Adam epochs (LightGCN Eq. 15) of any ``forward() -> (final, ego)`` model.

    ``cfg``'s sampler, loss, optimiser, lr schedule and (CUDA) graph-replayed steps, driven by
    :func:`gnn.engine.loop.run_loop` (strict budget: a step starts only within
    ``cfg.time_budget_seconds``; evaluation every ``cfg.eval_every`` epochs and at the end).
    :func:`gnn.engine.lightgcn.fit_lightgcn` and ``bench.lightgcn``'s PyG timing train here.

    Args:
        forward: Propagated and layer-0 embeddings of all nodes, users first.
        parameters: What Adam steps (the parameters behind ``ego``).
        data: Training interactions and id ranges.
        cfg: Settings.
        dev: Training device.
        log: Receives the setup line, one line per epoch and the budget's stop line.
        evaluate: Evaluation of the loop (None: none).
        started: ``time.perf_counter()`` at the start of setup (for the setup line).
        name: Prefix of the setup line.
        epochs: Epochs instead of ``cfg.epochs`` (the lr schedule still spans ``cfg.epochs``).

    Returns:
        The loop's :class:`gnn.engine.loop.LoopResult` (one record per completed epoch).
    """
    started = time.perf_counter() if started is None else started
    num_users, num_items = data.num_users, data.num_items
    sampler = BPRSampler(
        data.users,
        data.items,
        num_items,
        device=dev,
        exclude_positives=cfg.exclude_positives,
        mode=cfg.sampling,
    )
    generator = torch.Generator(device=dev).manual_seed(cfg.seed)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else None
    if sync is not None:
        sync()
    log(
        f"{name}: {num_users} users, {num_items} items, {len(sampler)} interactions, "
        f"device {dev}, setup {time.perf_counter() - started:.2f}s"
    )
    step, optimizer, graphed = _stepper(forward, parameters, num_users, cfg, dev)

    def batches(state: LoopState) -> Iterable[tuple[Tensor, Tensor, Tensor]]:
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr_at(state.epoch, elapsed=state.seconds)
        return sampler.epoch(cfg.batch_size, generator=generator)

    limits = LoopLimits(
        epochs=cfg.epochs if epochs is None else epochs,
        budget_seconds=cfg.time_budget_seconds or None,
        eval_every=cfg.eval_every,
    )
    return run_loop(
        batches,
        lambda b: step(*b),
        limits,
        on_epoch=_epoch_logger(optimizer, step, graphed, log),
        evaluate=evaluate,
        sync=sync,
        log=log,
    )


def _epoch_logger(
    optimizer: torch.optim.Optimizer, step: BPRStepper, graphed: bool, log: Callable[..., Any]
) -> Callable[[EpochRecord], None]:
    """The loop's ``on_epoch``: loss, lr and times of every epoch; after the first, whether
    the CUDA graph replays."""

    def on_epoch(rec: EpochRecord) -> None:
        lr_now = float(optimizer.param_groups[0]["lr"])
        log(
            f"epoch {rec.epoch:4d}  loss {rec.loss:.5f}  lr {lr_now:.2e}  {rec.seconds:6.2f}s  "
            f"train {rec.total_seconds:8.1f}s"
        )
        if rec.epoch == 1 and graphed:
            log(
                f"cuda graph: {'replaying' if step.graphed else 'off'}"
                + (f" ({step.graph_error})" if step.graph_error else "")
            )

    return on_epoch


def _stepper(
    forward: Callable[[], tuple[Tensor, Tensor]],
    parameters: Iterable[Tensor],
    num_users: int,
    cfg: LightGCNTrainConfig,
    dev: torch.device,
) -> tuple[BPRStepper, torch.optim.Optimizer, bool]:
    """``cfg``'s step, its Adam and whether the step is CUDA-graph-replayed (CUDA, constant lr)."""
    graphed = cfg.cuda_graphs and dev.type == "cuda" and cfg.lr_schedule == "constant"
    optimizer = make_adam(parameters, cfg.lr, dev, capturable=graphed)
    step = BPRStepper(
        forward,
        optimizer,
        num_users=num_users,
        reg=cfg.reg,
        batch_size=cfg.batch_size,
        cuda_graph=graphed,
    )
    return step, optimizer, graphed
