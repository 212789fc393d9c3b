"""The LightGCN layer: symmetric-normalised adjacency and K-layer propagation with the layer mean.

He, Deng, Wang, Li, Zhang, Wang. "LightGCN: Simplifying and Powering Graph Convolution Network
for Recommendation", SIGIR 2020 (arXiv:2002.02126). One layer is the parameter-free neighbour
aggregation of Eq. (8)-(9) (the matrix form of Eq. 7)::

    E^(k+1) = D^-1/2 A D^-1/2 E^(k)            (Eq. 8-9, Eq. 7)
    E       = 1/(K+1) * sum_{k=0..K} E^(k)     (Eq. 4 with alpha_k = 1/(K+1))

One builder serves both graphs: the bipartite user-item graph ``A = [[0, R], [R^T, 0]]``
(:func:`build_norm_adj`) is the homogeneous graph over ``num_users + num_items`` nodes, users
first, whose pairs are ``(u, num_users + i)``; a homogeneous graph (:func:`build_homogeneous_adj`)
is its distinct undirected pairs. Both call :func:`symmetric_norm_adj`.

The normalised adjacency is a sparse CSR tensor; a custom autograd function runs the K products
forward and, because the matrix is symmetric, the backward pass is K more products with the same
CSR matrix (Horner form ``g + A(g + A(g + ...))``) instead of a transposed sparse product.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "LGConv",
    "build_homogeneous_adj",
    "build_norm_adj",
    "lightgcn_propagate",
    "symmetric_norm_adj",
    "undirected_pairs",
]

_KEY_LIMIT = 1 << 32


def _as_long(values: np.ndarray | Tensor, device: torch.device) -> Tensor:
    if isinstance(values, Tensor):
        return values.to(device=device, dtype=torch.long).reshape(-1)
    return torch.as_tensor(np.asarray(values, dtype=np.int64), device=device).reshape(-1)


def symmetric_norm_adj(
    lo: np.ndarray | Tensor,
    hi: np.ndarray | Tensor,
    num_nodes: int,
    *,
    device: torch.device | str | None = None,
) -> Tensor:
    """``D^-1/2 A D^-1/2`` of an undirected simple graph given as distinct pairs (Eq. 7).

    Every pair ``(lo, hi)`` (``lo != hi``, each unordered pair once) is stored at ``(lo, hi)``
    and ``(hi, lo)`` with value ``1 / sqrt(deg(lo) deg(hi))``, computed in float32; isolated
    nodes get an empty row (degree 0 is not inverted).

    Args:
        lo, hi: The pairs' end points, in ``[0, num_nodes)``.
        num_nodes: Number of nodes ``N``.
        device: Where to build and keep the matrix (default: ``lo``'s device if a tensor,
            else CPU).

    Returns:
        float32 sparse CSR tensor with int32 indices (MKL and cuSPARSE take them without
        conversion) and columns sorted within each row; symmetric.

    Raises:
        ValueError: lengths differ, an id is out of range, or the graph overflows int32.

    Shapes:
        lo, hi: ``[P]`` -> ``[N, N]`` with ``2 * P`` stored values.
    """
    if device is not None:
        dev = torch.device(device)
    else:
        dev = lo.device if isinstance(lo, Tensor) else torch.device("cpu")
    a, b = _as_long(lo, dev), _as_long(hi, dev)
    if a.shape != b.shape:
        raise ValueError(f"pair ends differ in length: {a.numel()} != {b.numel()}")
    if num_nodes < 1:
        raise ValueError(f"num_nodes must be >= 1, got {num_nodes}")
    for ends in (a, b):
        if ends.numel() and (int(ends.min()) < 0 or int(ends.max()) >= num_nodes):
            raise ValueError(f"node id out of range [0, {num_nodes})")
    if 2 * a.numel() >= 2**31 or num_nodes >= 2**31:
        raise ValueError("graph too large for int32 CSR indices")
    # both directions, sorted by row then column: the CSR order
    key, _ = torch.sort(torch.cat([a * num_nodes + b, b * num_nodes + a]))
    rows, cols = key // num_nodes, key % num_nodes
    degree = torch.bincount(rows, minlength=num_nodes)
    deg = degree.to(torch.float32)
    inv_sqrt = torch.where(deg > 0, deg.rsqrt(), torch.zeros_like(deg))
    values = inv_sqrt[rows] * inv_sqrt[cols]
    crow = torch.zeros(num_nodes + 1, dtype=torch.long, device=dev)
    crow[1:] = torch.cumsum(degree, 0)
    with warnings.catch_warnings():  # "sparse CSR support is in beta" is not actionable here
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            crow.to(torch.int32),
            cols.to(torch.int32),
            values,
            size=(num_nodes, num_nodes),
            dtype=torch.float32,
            device=dev,
        )


def build_norm_adj(
    users: np.ndarray | Tensor,
    items: np.ndarray | Tensor,
    num_users: int,
    num_items: int,
    device: torch.device | str | None = None,
) -> Tensor:
    """Symmetric-normalised bipartite adjacency ``D^-1/2 A D^-1/2`` as a sparse CSR tensor.

    Node ``u`` is user ``u``; node ``num_users + i`` is item ``i``. Duplicate interactions are
    counted once. Each entry for an interaction ``(u, i)`` is ``1 / sqrt(deg(u) * deg(i))``
    (LightGCN Eq. 7), stored at ``(u, U + i)`` and ``(U + i, u)``
    (:func:`symmetric_norm_adj`).

    Args:
        users: User id of each training interaction, in ``[0, num_users)``.
        items: Item id of each training interaction, in ``[0, num_items)``.
        num_users: Number of users ``U``.
        num_items: Number of items ``I``.
        device: Where to build and keep the matrix (default CPU).

    Returns:
        float32 sparse CSR tensor of shape ``[U + I, U + I]``, as :func:`symmetric_norm_adj`.

    Raises:
        ValueError: lengths differ, or an id is out of range.

    Shapes:
        users, items: ``[E]`` -> ``[U + I, U + I]`` with ``2 * unique(E)`` stored values.
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    u, i = _as_long(users, dev), _as_long(items, dev)
    if u.shape != i.shape:
        raise ValueError(f"users and items differ in length: {u.numel()} != {i.numel()}")
    if num_users < 1 or num_items < 1:
        raise ValueError(f"need num_users >= 1 and num_items >= 1, got {num_users}, {num_items}")
    if u.numel() and (int(u.min()) < 0 or int(u.max()) >= num_users):
        raise ValueError(f"user id out of range [0, {num_users})")
    if i.numel() and (int(i.min()) < 0 or int(i.max()) >= num_items):
        raise ValueError(f"item id out of range [0, {num_items})")
    pairs = torch.unique(u * num_items + i)
    return symmetric_norm_adj(
        pairs // num_items, num_users + pairs % num_items, num_users + num_items, device=dev
    )


def undirected_pairs(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct undirected pairs ``(min, max)`` of the edges, self-loops dropped, sorted.

    Shapes:
        src, dst: ``[E]`` int64 -> ``([P], [P])`` int64 with ``P <= E``.
    """
    s = np.asarray(src, dtype=np.int64)
    d = np.asarray(dst, dtype=np.int64)
    if s.shape != d.shape:
        raise ValueError(f"src and dst differ in length: {s.size} != {d.size}")
    keep = s != d
    lo, hi = np.minimum(s[keep], d[keep]), np.maximum(s[keep], d[keep])
    if lo.size and int(lo.min()) >= 0 and int(hi.max()) < _KEY_LIMIT:
        # one int64 key per pair: a 1-D sort, ~3x faster than unique(axis=0)'s row sort
        key = np.unique((lo << 32) | hi)
        return key >> 32, key & (_KEY_LIMIT - 1)
    pairs = np.unique(np.stack([lo, hi], axis=1), axis=0) if lo.size else np.zeros((0, 2), int)
    return pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)


def build_homogeneous_adj(
    src: np.ndarray, dst: np.ndarray, num_nodes: int, *, device: torch.device | str = "cpu"
) -> Tensor:
    """``D^-1/2 A D^-1/2`` of the undirected simple graph of the edges (LightGCN Eq. 7).

    Duplicate and reversed edges count once, self-loops are dropped (:func:`undirected_pairs`),
    then :func:`symmetric_norm_adj`.

    Raises:
        ValueError: an id is outside ``[0, num_nodes)``.

    Shapes:
        src, dst: ``[E]`` -> ``[N, N]`` with ``2 * P`` stored values (``P`` distinct pairs).
    """
    return symmetric_norm_adj(*undirected_pairs(src, dst), num_nodes, device=device)


class _SymmetricPropagation(torch.autograd.Function):
    """Mean of ``A^k X`` for ``k = 0..K`` with ``A`` symmetric; backward reuses ``A``."""

    @staticmethod
    def forward(ctx, adj: Tensor, ego: Tensor, layers: int) -> Tensor:  # type: ignore[override]
        ctx.adj = adj
        ctx.layers = layers
        acc = ego.clone()
        h = ego
        for _ in range(layers):
            h = torch.sparse.mm(adj, h)
            acc.add_(h)
        return acc.div_(layers + 1)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[None, Tensor, None]:  # type: ignore[override]
        # d/dX of 1/(K+1) sum_k A^k X is 1/(K+1) sum_k (A^T)^k g = sum_k A^k (g/(K+1)):
        # Horner's scheme h <- g' + A h, K times, one fused sparse addmm each.
        g = grad.contiguous() / (ctx.layers + 1)
        h = g
        for _ in range(ctx.layers):
            h = torch.addmm(g, ctx.adj, h)
        return None, h, None


def lightgcn_propagate(adj: Tensor, ego: Tensor, layers: int) -> Tensor:
    """LightGCN layer combination ``1/(K+1) sum_{k=0..K} A^k E^(0)`` (Eq. 4 and 8-9).

    Args:
        adj: Symmetric normalised adjacency from :func:`symmetric_norm_adj` (sparse CSR). The
            backward pass relies on its symmetry.
        ego: Ego embeddings ``E^(0)``.
        layers: Number of propagation layers ``K >= 0``.

    Returns:
        The final embeddings; differentiable with respect to ``ego``.

    Shapes:
        adj: ``[N, N]``; ego: ``[N, d]`` -> ``[N, d]``.
    """
    if layers < 0:
        raise ValueError(f"layers must be >= 0, got {layers}")
    return _SymmetricPropagation.apply(adj, ego, layers)


class LGConv(nn.Module):
    """LightGCN propagation (PyG ``LGConv``-like, no parameters): ``K`` layers and their mean.

    Each layer is ``E^(k+1) = D^-1/2 A D^-1/2 E^(k)`` (Eq. 8-9); the output is the layer
    combination ``1/(K+1) sum_k E^(k)`` (Eq. 4), :func:`lightgcn_propagate`.

    Args:
        layers: Number of layers ``K >= 0``.

    Shapes:
        adj: ``[N, N]`` (from :func:`symmetric_norm_adj`); x: ``[N, d]`` -> ``[N, d]``.
    """

    norm_adj = staticmethod(symmetric_norm_adj)

    def __init__(self, layers: int = 1) -> None:
        super().__init__()
        if layers < 0:
            raise ValueError(f"layers must be >= 0, got {layers}")
        self.layers = layers

    def forward(self, adj: Tensor, x: Tensor) -> Tensor:
        """The mean of ``A^k x`` over ``k = 0..K``."""
        return lightgcn_propagate(adj, x, self.layers)
