"""Relational message passing with sum / sum-of-squares / max / min aggregation.

The one expensive step of NBFNet (Zhu et al., NeurIPS 2021, Eq. 3-4): for every edge
``e = (u -> v, r)`` a message ``m_e = MSG(x[u], w[r])`` and, per destination ``v``, the sums
``S_v = sum_e m_e``, ``Q_v = sum_e m_e^2`` and the extremes ``max_e m_e``, ``min_e m_e``
(the inputs of PNA's mean / max / min / std). ``x`` holds one node state per query of a batch,
laid out ``[N, C]`` with ``C = batch * dim`` columns, so every edge moves one contiguous row.

Three backends compute the same thing:

- ``naive``: materialises all messages ``[E, C]`` and lets autograd differentiate
  ``index_add_`` / ``scatter_reduce``; reference for tests; the only one for RotatE.
- ``torch``: a custom autograd function that walks the edges in chunks and recomputes messages
  in the backward pass, so memory is ``O(N C)`` rather than ``O(E C)`` (CPU default).
- ``triton``: the same function with fused CUDA kernels over CSR rows (CUDA default); the
  messages are never written to memory (the idea of the reference's ``rspmm`` kernel).

In the ``torch`` and ``triton`` backends the max / min gradient goes to one message per
``(v, column)``: the first (in destination-sorted edge order) that attains the extreme; ``naive``
splits it among ties like ``scatter_reduce``. Ties have measure zero for continuous inputs.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from gnn.layers.relational_index import EdgeView, GraphIndex

__all__ = [
    "MESSAGES",
    "AggregateOut",
    "EdgeView",
    "GraphIndex",
    "message",
    "relational_aggregate",
]

MESSAGES = ("distmult", "transe", "rotate")
_FUSED_MESSAGES = ("distmult", "transe")
_NAIVE_MAX_BYTES = 128 << 20  # CPU: materialise messages up to this size


class AggregateOut(NamedTuple):
    """Per-destination aggregates, each ``[N, C]`` or ``None`` when not requested.

    ``max`` is ``-inf`` and ``min`` is ``+inf`` for a node with no incoming edge.
    """

    sum: Tensor
    sq: Tensor | None
    max: Tensor | None
    min: Tensor | None


def message(x: Tensor, w: Tensor, kind: str, *, dim: int) -> Tensor:
    """MESSAGE of NBFNet (Eq. 4 choices): DistMult, TransE or RotatE.

    Args:
        x: source states ``[..., C]`` with ``C = batch * dim``.
        w: relation vectors, same shape as ``x``.
        kind: ``"distmult"`` (``x * w``), ``"transe"`` (``x + w``) or ``"rotate"``
            (``x`` rotated by ``w`` in the complex plane; the first half of each ``dim`` block
            is the real part, the second half the imaginary part, as in RotatE, Sun et al. 2019).
        dim: the per-query state width ``d``; only RotatE needs it.

    Returns:
        Messages, shape of ``x``.

    Shapes:
        x, w: ``[..., B * d]`` -> ``[..., B * d]``.
    """
    if kind == "distmult":
        return x * w
    if kind == "transe":
        return x + w
    if kind == "rotate":
        if dim % 2:
            raise ValueError(f"rotate needs an even dim, got {dim}")
        shape = x.shape
        xr, xi = x.reshape(*shape[:-1], -1, 2, dim // 2).unbind(-2)
        wr, wi = w.reshape(*shape[:-1], -1, 2, dim // 2).unbind(-2)
        out = torch.stack([xr * wr - xi * wi, xr * wi + xi * wr], dim=-2)
        return out.reshape(shape)
    raise ValueError(f"unknown message {kind!r}; expected one of {MESSAGES}")


def relational_aggregate(
    x: Tensor,
    w: Tensor,
    index: GraphIndex,
    view: EdgeView,
    *,
    kind: str = "distmult",
    dim: int,
    with_sq: bool = False,
    with_minmax: bool = False,
    backend: str = "auto",
    chunk_edges: int | None = None,
) -> AggregateOut:
    """Aggregate relational messages into destinations (NBFNet Eq. 3, without the boundary).

    Args:
        x: node states ``[N, C]``.
        w: relation vectors ``[R, C]`` (per query, so ``C = B * d``).
        index: the graph's CSR views.
        view: the edges kept for this pass (``index.view(keep)``).
        kind: message function, one of :data:`MESSAGES`.
        dim: per-query width ``d``.
        with_sq: also return the sum of squared messages.
        with_minmax: also return the element-wise max and min.
        backend: ``"auto"`` (Triton on CUDA for DistMult / TransE; on CPU naive while the
            ``[E, C]`` messages take at most 128 MiB, else chunked torch; naive for RotatE),
            ``"naive"``, ``"torch"`` or ``"triton"``.
        chunk_edges: edges per chunk of the ``torch`` backend (default: 2M floats a chunk).

    Returns:
        :class:`AggregateOut` with ``[N, C]`` tensors.

    Shapes:
        x: ``[N, C]``, w: ``[R, C]`` -> each output ``[N, C]``.
    """
    if kind not in MESSAGES:
        raise ValueError(f"unknown message {kind!r}; expected one of {MESSAGES}")
    if backend == "auto":
        backend = _auto_backend(x, view, kind)
    if chunk_edges is None:
        chunk_edges = max(256, (1 << 21) // max(1, x.shape[1]))
    if backend == "naive":
        return _naive(x, w, view, kind, dim, with_sq, with_minmax)
    if kind not in _FUSED_MESSAGES:
        raise ValueError(f"backend {backend!r} supports {_FUSED_MESSAGES}, not {kind!r}")
    if backend not in ("torch", "triton"):
        raise ValueError(f"unknown backend {backend!r}")
    s, q, mx, mn = _FusedAggregate.apply(
        x, w, index, view, kind, with_sq, with_minmax, backend, chunk_edges
    )
    return AggregateOut(s, q, mx, mn)


def _auto_backend(x: Tensor, view: EdgeView, kind: str) -> str:
    if kind not in _FUSED_MESSAGES:
        return "naive"
    if x.is_cuda:
        return "triton"
    small = view.src.numel() * x.shape[1] * x.element_size() <= _NAIVE_MAX_BYTES
    return "naive" if small else "torch"


def _naive(
    x: Tensor, w: Tensor, view: EdgeView, kind: str, dim: int, with_sq: bool, with_minmax: bool
) -> AggregateOut:
    n, c = x.shape
    m = message(x[view.src], w[view.typ], kind, dim=dim)
    dst = view.dst
    s = x.new_zeros(n, c).index_add(0, dst, m)
    q = x.new_zeros(n, c).index_add(0, dst, m * m) if with_sq else None
    mx = mn = None
    if with_minmax:
        idx = dst.unsqueeze(1).expand_as(m)
        mx = x.new_full((n, c), float("-inf")).scatter_reduce(0, idx, m, "amax")
        mn = x.new_full((n, c), float("inf")).scatter_reduce(0, idx, m, "amin")
    return AggregateOut(s, q, mx, mn)


def _msg_grad(xs: Tensor, ws: Tensor, g: Tensor, kind: str) -> tuple[Tensor, Tensor]:
    """Gradients of DistMult / TransE messages w.r.t. source state and relation."""
    if kind == "distmult":
        return g * ws, g * xs
    return g, g


class _FusedAggregate(torch.autograd.Function):
    """Memory-light aggregation: messages are recomputed, never stored for backward."""

    @staticmethod
    def forward(ctx, x, w, index, view, kind, with_sq, with_minmax, backend, chunk):  # type: ignore[override]
        x = x.contiguous()
        w = w.contiguous()
        need_arg = with_minmax and (ctx.needs_input_grad[0] or ctx.needs_input_grad[1])
        if backend == "triton":
            from gnn.layers import relational_aggregate_triton as tk

            s, q, mx, mn, amx, amn = tk.forward(
                x, w, index, view, kind, with_sq, with_minmax, need_arg=need_arg
            )
        else:
            s, q, mx, mn, amx, amn = _torch_forward(
                x, w, view, kind, with_sq, with_minmax, chunk, need_arg=need_arg
            )
        ctx.save_for_backward(x, w, amx, amn)
        ctx.meta = (index, view, kind, with_sq, with_minmax, backend, chunk)
        return s, q, mx, mn

    @staticmethod
    def backward(ctx, gs, gq, gmx, gmn):  # type: ignore[override]
        x, w, amx, amn = ctx.saved_tensors
        index, view, kind, with_sq, with_minmax, backend, chunk = ctx.meta
        a = gs.contiguous() if gs is not None else torch.zeros_like(x)
        b = 2.0 * gq.contiguous() if (with_sq and gq is not None) else None
        if backend == "triton":
            from gnn.layers import relational_aggregate_triton as tk

            gx, gw = tk.backward(x, w, a, b, index, view, kind)
        else:
            gx, gw = _torch_backward(x, w, a, b, view, kind, chunk)
        if with_minmax:
            for g, arg in ((gmx, amx), (gmn, amn)):
                if g is not None:
                    _extreme_backward(x, w, g, arg, index, kind, gx, gw)
        return gx, gw, None, None, None, None, None, None, None


def _torch_forward(
    x: Tensor,
    w: Tensor,
    view: EdgeView,
    kind: str,
    with_sq: bool,
    with_minmax: bool,
    chunk: int,
    *,
    need_arg: bool,
):
    n, c = x.shape
    s = x.new_zeros(n, c)
    q = x.new_zeros(n, c) if with_sq else None
    mx = x.new_full((n, c), float("-inf")) if with_minmax else None
    mn = x.new_full((n, c), float("inf")) if with_minmax else None
    e = view.src.numel()
    for a in range(0, e, chunk):
        src, dst, typ = view.src[a : a + chunk], view.dst[a : a + chunk], view.typ[a : a + chunk]
        m = message(x[src], w[typ], kind, dim=1)
        s.index_add_(0, dst, m)
        if q is not None:
            q.index_add_(0, dst, m * m)
        if mx is not None and mn is not None:
            idx = dst.unsqueeze(1).expand_as(m)
            mx.scatter_reduce_(0, idx, m, "amax")
            mn.scatter_reduce_(0, idx, m, "amin")
    amx = amn = None
    if mx is not None and mn is not None and need_arg:
        big = torch.iinfo(torch.long).max
        amx = torch.full((n, c), big, dtype=torch.long, device=x.device)
        amn = torch.full((n, c), big, dtype=torch.long, device=x.device)
        for a in range(0, e, chunk):
            src, dst, typ = (
                view.src[a : a + chunk],
                view.dst[a : a + chunk],
                view.typ[a : a + chunk],
            )
            pos = view.pos[a : a + chunk].unsqueeze(1)
            m = message(x[src], w[typ], kind, dim=1)
            idx = dst.unsqueeze(1).expand_as(m)
            amx.scatter_reduce_(0, idx, torch.where(m == mx[dst], pos, big), "amin")
            amn.scatter_reduce_(0, idx, torch.where(m == mn[dst], pos, big), "amin")
        amx[amx == big] = -1
        amn[amn == big] = -1
    return s, q, mx, mn, amx, amn


def _torch_backward(
    x: Tensor, w: Tensor, a: Tensor, b: Tensor | None, view: EdgeView, kind: str, chunk: int
) -> tuple[Tensor, Tensor]:
    gx = torch.zeros_like(x)
    gw = torch.zeros_like(w)
    for s in range(0, view.src.numel(), chunk):
        src, dst, typ = view.src[s : s + chunk], view.dst[s : s + chunk], view.typ[s : s + chunk]
        xs, ws = x[src], w[typ]
        g = a[dst]
        if b is not None:
            g = g + b[dst] * message(xs, ws, kind, dim=1)
        dx, dw = _msg_grad(xs, ws, g, kind)
        gx.index_add_(0, src, dx)
        gw.index_add_(0, typ, dw)
    return gx, gw


def _extreme_backward(
    x: Tensor,
    w: Tensor,
    g: Tensor,
    arg: Tensor,
    index: GraphIndex,
    kind: str,
    gx: Tensor,
    gw: Tensor,
) -> None:
    """Route the max (or min) gradient to the one message that attained it."""
    n, c = x.shape
    flat = arg.reshape(-1)
    sel = (flat >= 0).nonzero().squeeze(1)
    e = flat[sel].long()
    col = sel % c
    xi = index.src[e] * c + col
    wi = index.typ[e] * c + col
    gv = g.reshape(-1)[sel]
    dx, dw = _msg_grad(x.reshape(-1)[xi], w.reshape(-1)[wi], gv, kind)
    gx.view(-1).index_add_(0, xi, dx)
    gw.view(-1).index_add_(0, wi, dw)
