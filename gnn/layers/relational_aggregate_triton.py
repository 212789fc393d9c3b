"""Triton kernels for :mod:`gnn.layers.relational_aggregate` (CUDA; imported lazily).

Fused message + aggregate over CSR rows, the idea of NBFNet's ``rspmm`` CUDA kernel
(Zhu et al., NeurIPS 2021, App. C) written for the ``[N, B * d]`` layout: one program owns one
node and a block of columns, loads the rows of ``EB`` edges at a time, and keeps the sum, the
sum of squares and the running max / min (with the first edge attaining it) in registers.
Messages never reach memory, so a layer reads ``E * C`` floats once and writes ``N * C``.

Backward: the source-state gradient walks source-sorted rows (no atomics); the relation
gradient walks relation-sorted segments of at most 256 edges and adds one row per segment with
``atomic_add``. Set ``TRITON_INTERPRET=1`` to run these kernels on CPU (tests do).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from gnn.layers.relational_index import EdgeView, GraphIndex

__all__ = ["backward", "forward"]

_BC = 128  # columns per program
_EB = 16  # edges loaded per step
_KIND = {"distmult": 0, "transe": 1}


@triton.jit
def _node_span(indptr_ptr, C, BC: tl.constexpr):
    """The program's node (grid axis 0), its ``BC`` columns (axis 1) and its CSR edge range."""
    node = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BC + tl.arange(0, BC)
    cmask = cols < C
    start = tl.load(indptr_ptr + node)
    end = tl.load(indptr_ptr + node + 1)
    return node, cols, cmask, start, end


@triton.jit
def _edge_block(e0, end, keep_ptr, HAS_KEEP: tl.constexpr, EB: tl.constexpr):
    """Positions ``e0 .. e0 + EB - 1`` of a sorted edge list, masked to ``< end`` and kept."""
    es = e0 + tl.arange(0, EB)
    em = es < end
    if HAS_KEEP:
        em = em & (tl.load(keep_ptr + es, mask=em, other=0) != 0)
    return es, em


@triton.jit
def _ids(ptr, es, em):
    """The int64 node / relation ids stored at edge positions ``es``."""
    return tl.load(ptr + es, mask=em, other=0).to(tl.int64)


@triton.jit
def _rows(ptr, ids, cols, C, m2):
    """The ``[EB, BC]`` block of rows ``ids`` and columns ``cols`` of a ``[*, C]`` matrix."""
    return tl.load(ptr + ids[:, None] * C + cols[None, :], mask=m2, other=0.0)


@triton.jit
def _message(x, w, KIND: tl.constexpr):
    """``x * w`` (DistMult) or ``x + w`` (TransE)."""
    if KIND == 0:  # noqa: SIM108 - constexpr branch, compiled out
        m = x * w
    else:
        m = x + w
    return m


@triton.jit
def _bwd_sum(a_ptr, b_ptr, v, x, w, other, m2, cols, C, KIND: tl.constexpr, HAS_B: tl.constexpr):
    """Column sums over a block of edges of ``dL/dm_e = a[v] + b[v] * m_e`` times ``dm_e/d.``.

    ``other`` is the operand the message is differentiated against (``w`` for the source state,
    ``x`` for the relation); TransE's derivative is 1.
    """
    g = _rows(a_ptr, v, cols, C, m2)
    if HAS_B:
        g += _rows(b_ptr, v, cols, C, m2) * _message(x, w, KIND)
    if KIND == 0:  # noqa: SIM108 - constexpr branch, compiled out
        acc = tl.sum(g * other, axis=0)
    else:
        acc = tl.sum(g, axis=0)
    return acc


@triton.jit
def _bwd_edges(
    a_ptr,
    b_ptr,
    dst_ptr,
    var_ptr,
    var_id_ptr,
    keep_ptr,
    start,
    end,
    fixed,
    cols,
    cmask,
    C,
    FIXED_IS_X: tl.constexpr,
    KIND: tl.constexpr,
    HAS_KEEP: tl.constexpr,
    HAS_B: tl.constexpr,
    EB: tl.constexpr,
    BC: tl.constexpr,
):
    """:func:`_bwd_sum` over the edges ``start .. end - 1`` whose messages share the operand row
    ``fixed`` (the source state when ``FIXED_IS_X``, else the relation); the other operand is
    row ``var_id_ptr[e]`` of ``var_ptr`` and is what the message is differentiated against."""
    acc = tl.zeros([BC], dtype=tl.float32)
    for e0 in range(start, end, EB):
        es, em = _edge_block(e0, end, keep_ptr, HAS_KEEP, EB)
        m2 = em[:, None] & cmask[None, :]
        v = _ids(dst_ptr, es, em)
        var = _rows(var_ptr, _ids(var_id_ptr, es, em), cols, C, m2)
        if FIXED_IS_X:
            acc += _bwd_sum(a_ptr, b_ptr, v, fixed[None, :], var, var, m2, cols, C, KIND, HAS_B)
        else:
            acc += _bwd_sum(a_ptr, b_ptr, v, var, fixed[None, :], var, m2, cols, C, KIND, HAS_B)
    return acc


@triton.jit
def _fwd_kernel(
    x_ptr,
    w_ptr,
    src_ptr,
    typ_ptr,
    keep_ptr,
    indptr_ptr,
    s_ptr,
    q_ptr,
    mx_ptr,
    mn_ptr,
    amx_ptr,
    amn_ptr,
    C,
    KIND: tl.constexpr,
    HAS_KEEP: tl.constexpr,
    WITH_SQ: tl.constexpr,
    WITH_MINMAX: tl.constexpr,
    WITH_ARG: tl.constexpr,
    EB: tl.constexpr,
    BC: tl.constexpr,
):
    v, cols, cmask, start, end = _node_span(indptr_ptr, C, BC)
    acc = tl.zeros([BC], dtype=tl.float32)
    acc_q = tl.zeros([BC], dtype=tl.float32)
    mx = tl.full([BC], float("-inf"), tl.float32)
    mn = tl.full([BC], float("inf"), tl.float32)
    amx = tl.full([BC], -1, tl.int32)
    amn = tl.full([BC], -1, tl.int32)
    for e0 in range(start, end, EB):
        es, em = _edge_block(e0, end, keep_ptr, HAS_KEEP, EB)
        m2 = em[:, None] & cmask[None, :]
        xv = _rows(x_ptr, _ids(src_ptr, es, em), cols, C, m2)
        wv = _rows(w_ptr, _ids(typ_ptr, es, em), cols, C, m2)
        m = _message(xv, wv, KIND)
        acc += tl.sum(m, axis=0)
        if WITH_SQ:
            acc_q += tl.sum(m * m, axis=0)
        if WITH_MINMAX:
            cmx, imx = tl.max(tl.where(m2, m, float("-inf")), axis=0, return_indices=True)
            cmn, imn = tl.min(tl.where(m2, m, float("inf")), axis=0, return_indices=True)
            if WITH_ARG:
                amx = tl.where(cmx > mx, (e0 + imx).to(tl.int32), amx)
                amn = tl.where(cmn < mn, (e0 + imn).to(tl.int32), amn)
            mx = tl.maximum(mx, cmx)
            mn = tl.minimum(mn, cmn)
    out = v * C + cols
    tl.store(s_ptr + out, acc, mask=cmask)
    if WITH_SQ:
        tl.store(q_ptr + out, acc_q, mask=cmask)
    if WITH_MINMAX:
        tl.store(mx_ptr + out, mx, mask=cmask)
        tl.store(mn_ptr + out, mn, mask=cmask)
        if WITH_ARG:
            tl.store(amx_ptr + out, amx, mask=cmask)
            tl.store(amn_ptr + out, amn, mask=cmask)


@triton.jit
def _bwd_x_kernel(
    x_ptr,
    w_ptr,
    a_ptr,
    b_ptr,
    dst_ptr,
    typ_ptr,
    keep_ptr,
    indptr_ptr,
    gx_ptr,
    C,
    KIND: tl.constexpr,
    HAS_KEEP: tl.constexpr,
    HAS_B: tl.constexpr,
    EB: tl.constexpr,
    BC: tl.constexpr,
):
    u, cols, cmask, start, end = _node_span(indptr_ptr, C, BC)
    xu = tl.load(x_ptr + u * C + cols, mask=cmask, other=0.0)
    edges = (a_ptr, b_ptr, dst_ptr, w_ptr, typ_ptr, keep_ptr, start, end, xu, cols, cmask, C)
    acc = _bwd_edges(*edges, True, KIND, HAS_KEEP, HAS_B, EB, BC)
    tl.store(gx_ptr + u * C + cols, acc, mask=cmask)


@triton.jit
def _bwd_w_kernel(
    x_ptr,
    w_ptr,
    a_ptr,
    b_ptr,
    src_ptr,
    dst_ptr,
    keep_ptr,
    seg_start_ptr,
    seg_end_ptr,
    seg_type_ptr,
    gw_ptr,
    C,
    KIND: tl.constexpr,
    HAS_KEEP: tl.constexpr,
    HAS_B: tl.constexpr,
    EB: tl.constexpr,
    BC: tl.constexpr,
):
    sid = tl.program_id(0)
    cols = tl.program_id(1) * BC + tl.arange(0, BC)
    cmask = cols < C
    start = tl.load(seg_start_ptr + sid)
    end = tl.load(seg_end_ptr + sid)
    r = tl.load(seg_type_ptr + sid).to(tl.int64)
    wr = tl.load(w_ptr + r * C + cols, mask=cmask, other=0.0)
    edges = (a_ptr, b_ptr, dst_ptr, x_ptr, src_ptr, keep_ptr, start, end, wr, cols, cmask, C)
    acc = _bwd_edges(*edges, False, KIND, HAS_KEEP, HAS_B, EB, BC)
    tl.atomic_add(gw_ptr + r * C + cols, acc, mask=cmask)


def _keep(mask: Tensor | None, like: Tensor) -> tuple[Tensor, bool]:
    if mask is None:
        return like, False
    return mask.to(torch.uint8), True


def forward(
    x: Tensor,
    w: Tensor,
    index: GraphIndex,
    view: EdgeView,
    kind: str,
    with_sq: bool,
    with_minmax: bool,
    *,
    need_arg: bool,
):
    """Fused forward; returns ``(sum, sq, max, min, argmax, argmin)`` (``None`` when unused).

    Shapes:
        x: ``[N, C]`` float32 contiguous, w: ``[R, C]`` -> ``[N, C]`` each (arg: int32).
    """
    n, c = x.shape
    s = torch.empty_like(x)
    q = torch.empty_like(x) if with_sq else s
    mx = torch.empty_like(x) if with_minmax else s
    mn = torch.empty_like(x) if with_minmax else s
    with_arg = with_minmax and need_arg
    amx = torch.empty(n, c, dtype=torch.int32, device=x.device) if with_arg else s
    amn = torch.empty(n, c, dtype=torch.int32, device=x.device) if with_arg else s
    keep, has_keep = _keep(view.keep, index.src)
    grid = (n, triton.cdiv(c, _BC))
    _fwd_kernel[grid](
        x,
        w,
        index.src,
        index.typ,
        keep,
        index.indptr_dst,
        s,
        q,
        mx,
        mn,
        amx,
        amn,
        c,
        KIND=_KIND[kind],
        HAS_KEEP=has_keep,
        WITH_SQ=with_sq,
        WITH_MINMAX=with_minmax,
        WITH_ARG=with_arg,
        EB=_EB,
        BC=_BC,
    )
    return (
        s,
        q if with_sq else None,
        mx if with_minmax else None,
        mn if with_minmax else None,
        amx if with_arg else None,
        amn if with_arg else None,
    )


def backward(
    x: Tensor, w: Tensor, a: Tensor, b: Tensor | None, index: GraphIndex, view: EdgeView, kind: str
) -> tuple[Tensor, Tensor]:
    """Gradients of the sum / sum-of-squares part: ``dL/dm_e = a[v] + b[v] * m_e``.

    Shapes:
        x, a, b: ``[N, C]``; w: ``[R, C]`` -> gx ``[N, C]``, gw ``[R, C]``.
    """
    n, c = x.shape
    gx = torch.empty_like(x)
    gw = torch.zeros_like(w)
    has_b = b is not None
    head = (x, w, a, b if has_b else a)
    keep_s, has_keep = _keep(view.keep_by_src, index.src)
    keep_t, _ = _keep(view.keep_by_type, index.src)
    flags = {"KIND": _KIND[kind], "HAS_KEEP": has_keep, "HAS_B": has_b, "EB": _EB, "BC": _BC}
    _bwd_x_kernel[(n, triton.cdiv(c, _BC))](
        *head, index.dst_by_src, index.typ_by_src, keep_s, index.indptr_src, gx, c, **flags
    )
    nseg = int(index.seg_type.numel())
    if nseg:
        segments = (index.seg_start, index.seg_end, index.seg_type)
        _bwd_w_kernel[(nseg, triton.cdiv(c, _BC))](
            *head, index.src_by_type, index.dst_by_type, keep_t, *segments, gw, c, **flags
        )
    return gx, gw
