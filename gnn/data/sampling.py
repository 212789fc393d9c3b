"""Vectorised uniform negative sampling for BPR training.

An epoch holds as many triples ``(u, i, j)`` as there are training interactions. With
``mode="user"`` (the LightGCN authors' sampler) ``u`` is uniform over users with at least one
interaction and ``i`` uniform over ``u``'s positives, so every user weighs the same, as in the
Recall/NDCG average; with ``mode="edge"`` (PyG's example) every interaction is visited once in
a random order. By default the negative ``j`` is uniform over the items that are *not*
positives of ``u``, drawn exactly and without rejection loops: with ``u``'s positives sorted,
``p_0 < p_1 < ...``, the ``r``-th non-positive item is ``r + #{k : p_k - k <= r}``, and the
count comes from one binary search over a sorted key array built once. With
``exclude_positives=False`` ``j`` is uniform over all items (PyG's example does this).
All draws come from one ``torch.Generator`` on the training device, so a CPU run is
deterministic for a seed.

:class:`NegativeSampler` draws NBFNet's negatives: uniform non-answers of
``(source, relation, ?)`` queries on a relational graph ("strict" negatives).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from gnn.data.kg import RelationalGraph

__all__ = ["BPRSampler", "Interactions", "NegativeSampler", "uniform_negatives"]


class Interactions(NamedTuple):
    """User-item training interactions and their id ranges.

    Shapes:
        users, items: ``[E]`` int, ids in ``[0, num_users)`` / ``[0, num_items)``.
    """

    users: np.ndarray
    items: np.ndarray
    num_users: int
    num_items: int


def uniform_negatives(
    count: int, num_items: int, *, generator: torch.Generator, device: torch.device | str
) -> Tensor:
    """``count`` item ids drawn uniformly from ``[0, num_items)``.

    Shapes:
        -> ``[count]`` int64.
    """
    return torch.randint(num_items, (count,), generator=generator, device=device)


class BPRSampler:
    """Triples ``(user, positive item, negative item)`` for BPR, one epoch at a time.

    Args:
        users: User id of each training interaction.
        items: Item id of each training interaction, in ``[0, num_items)``.
        num_items: Number of items ``I``.
        device: Where the interactions, keys and samples live.
        exclude_positives: Draw negatives from each user's non-positive items only (a user
            who has interacted with every item gets uniform draws).
        mode: ``"user"``: users uniform, then a uniform positive; ``"edge"``: each interaction
            once per epoch, shuffled.

    Shapes:
        users, items: ``[E]``.
    """

    def __init__(
        self,
        users: np.ndarray | Tensor,
        items: np.ndarray | Tensor,
        num_items: int,
        *,
        device: torch.device | str = "cpu",
        exclude_positives: bool = True,
        mode: str = "user",
    ) -> None:
        if mode not in ("user", "edge"):
            raise ValueError(f"mode must be 'user' or 'edge', got {mode!r}")
        self.device = torch.device(device)
        self.users = torch.as_tensor(np.asarray(users, dtype=np.int64)).to(self.device)
        self.items = torch.as_tensor(np.asarray(items, dtype=np.int64)).to(self.device)
        if self.users.shape != self.items.shape or self.users.dim() != 1:
            raise ValueError("users and items must be 1-d and of equal length")
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}")
        if self.items.numel() and (int(self.items.min()) < 0 or int(self.items.max()) >= num_items):
            raise ValueError(f"item id out of range [0, {num_items})")
        if self.users.numel() and int(self.users.min()) < 0:
            raise ValueError("negative user id")
        self.num_items = num_items
        self.exclude_positives = exclude_positives
        self.mode = mode
        num_users = int(self.users.max()) + 1 if self.users.numel() else 0
        keys = torch.unique(self.users * num_items + self.items)  # sorted by user, then item
        key_user, key_item = keys // num_items, keys % num_items
        counts = torch.bincount(key_user, minlength=num_users)
        self._indptr = torch.zeros(num_users + 1, dtype=torch.long, device=self.device)
        self._indptr[1:] = torch.cumsum(counts, 0)
        self._keys = keys
        self._key_items = key_item  # positives grouped by user, ascending
        self._active_users = torch.nonzero(counts).squeeze(1)
        # p_k - k per user (non-decreasing within a user, in [0, I)), offset by user * (I + 1)
        rank = torch.arange(keys.numel(), device=self.device) - self._indptr[key_user]
        self._shifted = key_user * (num_items + 1) + (key_item - rank)
        self._free = num_items - counts  # non-positive items per user

    def __len__(self) -> int:
        return int(self.users.numel())

    def is_positive(self, users: Tensor, items: Tensor) -> Tensor:
        """Whether each ``(users[k], items[k])`` is a training interaction.

        Shapes:
            users, items: ``[B]`` -> ``[B]`` bool.
        """
        keys = users * self.num_items + items
        if self._keys.numel() == 0:
            return torch.zeros_like(keys, dtype=torch.bool)
        pos = torch.searchsorted(self._keys, keys).clamp_(max=self._keys.numel() - 1)
        return self._keys[pos] == keys

    def negatives(self, users: Tensor, *, generator: torch.Generator) -> Tensor:
        """One negative item per user: uniform over its non-positives (or over all items).

        Shapes:
            users: ``[B]`` (training users) -> ``[B]`` int64.
        """
        if not self.exclude_positives or users.numel() == 0:
            return uniform_negatives(
                users.numel(), self.num_items, generator=generator, device=self.device
            )
        free = self._free[users]
        draw = torch.rand(
            users.numel(), dtype=torch.float64, generator=generator, device=self.device
        )
        r = (draw * free).long().clamp_(min=0)
        r = torch.minimum(r, (free - 1).clamp(min=0))
        query = users * (self.num_items + 1) + r
        below = torch.searchsorted(self._shifted, query, right=True) - self._indptr[users]
        neg = r + below
        full = free == 0  # users positive on every item: nothing to exclude
        if bool(full.any()):
            neg = torch.where(full, (draw * self.num_items).long(), neg)
        return neg

    def epoch(
        self, batch_size: int, *, generator: torch.Generator
    ) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """Yield ``(users, positives, negatives)`` batches covering one epoch.

        The epoch has one triple per training interaction; the last batch may be smaller. All
        triples of the epoch are drawn at once.

        Shapes:
            yields three ``[B]`` int64 tensors (``B <= batch_size``).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = len(self)
        if n == 0:
            return
        if self.mode == "edge":
            perm = torch.randperm(n, generator=generator, device=self.device)
            users, pos = self.users[perm], self.items[perm]
        else:
            pick = torch.randint(
                self._active_users.numel(), (n,), generator=generator, device=self.device
            )
            users = self._active_users[pick]
            start_at = self._indptr[users]
            degree = self._indptr[users + 1] - start_at
            draw = torch.rand(n, dtype=torch.float64, generator=generator, device=self.device)
            offset = torch.minimum((draw * degree).long(), degree - 1)
            pos = self._key_items[start_at + offset]
        neg = self.negatives(users, generator=generator)
        for start in range(0, n, batch_size):
            stop = start + batch_size
            yield users[start:stop], pos[start:stop], neg[start:stop]


class NegativeSampler:
    """Uniform negative answers for ``(source, relation)`` queries.

    With ``strict`` a draw that is a true answer in ``graph`` (an edge ``source -r-> node``) or
    the query's own answer is redrawn (up to 50 rounds). Sampling runs on CPU.
    """

    def __init__(self, graph: RelationalGraph, *, strict: bool = True) -> None:
        ei, et = graph.edge_index.cpu(), graph.edge_type.cpu()
        self.n, self.r, self.strict = graph.num_nodes, graph.num_relations, strict
        self.keys = torch.sort((ei[0] * self.r + et) * self.n + ei[1]).values

    def _is_true(self, src: Tensor, rel: Tensor, cand: Tensor) -> Tensor:
        key = (src * self.r + rel).unsqueeze(1) * self.n + cand
        pos = torch.searchsorted(self.keys, key).clamp(max=len(self.keys) - 1)
        return self.keys[pos] == key

    def sample(
        self, src: Tensor, rel: Tensor, answer: Tensor, k: int, *, generator: torch.Generator
    ) -> Tensor:
        """Draw ``k`` negatives per query.

        Shapes:
            src, rel, answer: ``[B]`` (CPU) -> ``[B, k]`` long.
        """
        cand = torch.randint(self.n, (len(src), k), generator=generator)
        if not self.strict:
            return cand
        for _ in range(50):
            bad = self._is_true(src, rel, cand) | (cand == answer.unsqueeze(1))
            if not bool(bad.any()):
                break
            cand[bad] = torch.randint(self.n, (int(bad.sum()),), generator=generator)
        return cand
