"""LightGCN: simplified graph convolution for recommendation.

He, Deng, Wang, Li, Zhang, Wang. "LightGCN: Simplifying and Powering Graph Convolution Network
for Recommendation", SIGIR 2020 (arXiv:2002.02126).

The user-item graph is the bipartite adjacency ``A = [[0, R], [R^T, 0]]`` over ``num_users +
num_items`` nodes (users first). Propagation is the matrix form of Eq. (3)/(7)::

    E^(k+1) = D^-1/2 A D^-1/2 E^(k)            (Eq. 7)
    E       = 1/(K+1) * sum_{k=0..K} E^(k)     (Eq. 4 with alpha_k = 1/(K+1))

Only the ego embeddings ``E^(0)`` are trainable. The normalised adjacency is built once as a
sparse CSR tensor; a custom autograd function runs the K products forward and, because the
normalised adjacency is symmetric, the backward pass is K more products with the same CSR
matrix (Horner form ``g + A(g + A(g + ...))``) instead of a transposed sparse product.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["LightGCN", "build_norm_adj", "lightgcn_propagate"]


def _as_long(values: np.ndarray | Tensor, device: torch.device) -> Tensor:
    if isinstance(values, Tensor):
        return values.to(device=device, dtype=torch.long)
    return torch.as_tensor(np.asarray(values, dtype=np.int64), device=device)


def build_norm_adj(
    users: np.ndarray | Tensor,
    items: np.ndarray | Tensor,
    num_users: int,
    num_items: int,
    device: torch.device | str | None = None,
) -> Tensor:
    """Symmetric-normalised bipartite adjacency ``D^-1/2 A D^-1/2`` as a sparse CSR tensor.

    Node ``u`` is user ``u``; node ``num_users + i`` is item ``i``. Duplicate interactions are
    counted once. Isolated nodes get an empty row (degree 0 is not inverted). Each entry for an
    interaction ``(u, i)`` is ``1 / sqrt(deg(u) * deg(i))`` (LightGCN Eq. 3), stored at both
    ``(u, U + i)`` and ``(U + i, u)``, so the matrix is symmetric.

    Args:
        users: User id of each training interaction, in ``[0, num_users)``.
        items: Item id of each training interaction, in ``[0, num_items)``.
        num_users: Number of users ``U``.
        num_items: Number of items ``I``.
        device: Where to build and keep the matrix (default CPU).

    Returns:
        float32 sparse CSR tensor of shape ``[U + I, U + I]`` with int32 indices (MKL and
        cuSPARSE take them without conversion) and columns sorted within each row.

    Raises:
        ValueError: lengths differ, or an id is out of range.

    Shapes:
        users, items: ``[E]`` -> ``[U + I, U + I]`` with ``2 * unique(E)`` stored values.
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    u = _as_long(users, dev).reshape(-1)
    i = _as_long(items, dev).reshape(-1)
    if u.shape != i.shape:
        raise ValueError(f"users and items differ in length: {u.numel()} != {i.numel()}")
    if num_users < 1 or num_items < 1:
        raise ValueError(f"need num_users >= 1 and num_items >= 1, got {num_users}, {num_items}")
    if u.numel() and (int(u.min()) < 0 or int(u.max()) >= num_users):
        raise ValueError(f"user id out of range [0, {num_users})")
    if i.numel() and (int(i.min()) < 0 or int(i.max()) >= num_items):
        raise ValueError(f"item id out of range [0, {num_items})")
    n = num_users + num_items
    if 2 * u.numel() >= 2**31 or n >= 2**31:
        raise ValueError("graph too large for int32 CSR indices")

    # Unique (user, item) pairs sorted by user then item: the user rows of the CSR matrix.
    ui = torch.unique(u * num_items + i)
    uu, ii = ui // num_items, ui % num_items
    # The same pairs sorted by item then user: the item rows.
    iu = torch.unique(ii * num_users + uu)
    iu_item, iu_user = iu // num_users, iu % num_users

    degree = torch.cat(
        [torch.bincount(uu, minlength=num_users), torch.bincount(ii, minlength=num_items)]
    )
    deg = degree.to(torch.float32)
    inv_sqrt = torch.where(deg > 0, deg.rsqrt(), torch.zeros_like(deg))

    values = torch.cat(
        [inv_sqrt[uu] * inv_sqrt[ii + num_users], inv_sqrt[iu_item + num_users] * inv_sqrt[iu_user]]
    )
    cols = torch.cat([ii + num_users, iu_user]).to(torch.int32)
    crow = torch.zeros(n + 1, dtype=torch.long, device=dev)
    crow[1:] = torch.cumsum(degree, 0)
    with warnings.catch_warnings():  # "sparse CSR support is in beta" is not actionable here
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            crow.to(torch.int32), cols, values, size=(n, n), dtype=torch.float32, device=dev
        )


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
    """LightGCN layer combination ``1/(K+1) sum_{k=0..K} A^k E^(0)`` (Eq. 4 and 7).

    Args:
        adj: Symmetric normalised adjacency from :func:`build_norm_adj` (sparse CSR). The
            backward pass relies on its symmetry.
        ego: Ego embeddings ``E^(0)`` (users first, then items).
        layers: Number of propagation layers ``K >= 0``.

    Returns:
        The final embeddings; differentiable with respect to ``ego``.

    Shapes:
        adj: ``[N, N]``; ego: ``[N, d]`` -> ``[N, d]``.
    """
    if layers < 0:
        raise ValueError(f"layers must be >= 0, got {layers}")
    return _SymmetricPropagation.apply(adj, ego, layers)


class LightGCN(nn.Module):
    """LightGCN model: one trainable ego embedding per user and item (He et al., 2020).

    Args:
        num_users: Number of users ``U``.
        num_items: Number of items ``I``.
        dim: Embedding size ``d``.
        layers: Propagation layers ``K``.
        seed: Seed of the initialisation (a local generator; the global RNG is untouched).
        init_std: Standard deviation of the normal initialisation (0.1 as in the authors'
            PyTorch code).

    Shapes:
        ``embedding``: ``[U + I, d]``, users first.
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        *,
        dim: int = 64,
        layers: int = 3,
        seed: int = 0,
        init_std: float = 0.1,
    ) -> None:
        super().__init__()
        if num_users < 1 or num_items < 1:
            raise ValueError(
                f"need num_users >= 1 and num_items >= 1, got {num_users}, {num_items}"
            )
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if layers < 0:
            raise ValueError(f"layers must be >= 0, got {layers}")
        self.num_users = num_users
        self.num_items = num_items
        self.dim = dim
        self.layers = layers
        gen = torch.Generator().manual_seed(seed)
        weight = torch.randn(num_users + num_items, dim, generator=gen) * init_std
        self.embedding = nn.Parameter(weight)

    build_norm_adj = staticmethod(build_norm_adj)

    def forward(self, adj: Tensor) -> Tensor:
        """Final embeddings of all nodes (users first).

        Shapes:
            adj: ``[U + I, U + I]`` -> ``[U + I, d]``.
        """
        return lightgcn_propagate(adj, self.embedding, self.layers)

    def propagate(self, adj: Tensor) -> tuple[Tensor, Tensor]:
        """Final user and item embeddings (Eq. 4).

        Shapes:
            adj: ``[U + I, U + I]`` -> ``([U, d], [I, d])``.
        """
        out = self.forward(adj)
        return out[: self.num_users], out[self.num_users :]

    def ego(self) -> tuple[Tensor, Tensor]:
        """Layer-0 (trainable) user and item embeddings.

        Shapes:
            ``([U, d], [I, d])``.
        """
        return self.embedding[: self.num_users], self.embedding[self.num_users :]
