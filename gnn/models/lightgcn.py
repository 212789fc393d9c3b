"""LightGCN: simplified graph convolution for recommendation.

He, Deng, Wang, Li, Zhang, Wang. "LightGCN: Simplifying and Powering Graph Convolution Network
for Recommendation", SIGIR 2020 (arXiv:2002.02126).

The user-item graph is the bipartite adjacency ``A = [[0, R], [R^T, 0]]`` over ``num_users +
num_items`` nodes (users first). Propagation is the layer of :mod:`gnn.layers.lg_conv`::

    E^(k+1) = D^-1/2 A D^-1/2 E^(k)            (Eq. 8-9, matrix form Eq. 7)
    E       = 1/(K+1) * sum_{k=0..K} E^(k)     (Eq. 4 with alpha_k = 1/(K+1))

Only the ego embeddings ``E^(0)`` are trainable. :func:`build_norm_adj` and
:func:`lightgcn_propagate` are re-exported from :mod:`gnn.layers.lg_conv`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gnn.layers.lg_conv import build_norm_adj, lightgcn_propagate

__all__ = ["LightGCN", "build_norm_adj", "lightgcn_propagate"]


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
