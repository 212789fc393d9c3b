"""Distill-to-delete restricted to the deletion's neighbourhood (UnlearnConfig.trainable_hops)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gnn.unlearn.d2dgn import UnlearnConfig
from gnn.unlearn.lightgcn import lightgcn_deletion, trainable_rows, unlearn_lightgcn

# users 0..3, items 0..3 (rows 4..7): a path u0-i0-u1-i1-u2-i2-u3-i3.
USERS = np.array([0, 1, 1, 2, 2, 3, 3])
ITEMS = np.array([0, 0, 1, 1, 2, 2, 3])


def _rows(mask: np.ndarray) -> list[int]:
    return np.flatnonzero(mask).tolist()


def test_trainable_rows_by_hand() -> None:
    deletion = lightgcn_deletion(USERS, ITEMS, edges=np.array([3]))  # (u2, i1)
    assert _rows(trainable_rows(USERS, ITEMS, 4, 4, deletion, 0)) == [2, 5]
    # one hop over the original graph: u2's items i1, i2; i1's users u1, u2
    assert _rows(trainable_rows(USERS, ITEMS, 4, 4, deletion, 1)) == [1, 2, 5, 6]
    assert _rows(trainable_rows(USERS, ITEMS, 4, 4, deletion, 2)) == [1, 2, 3, 4, 5, 6]
    assert _rows(trainable_rows(USERS, ITEMS, 4, 4, deletion, 3)) == list(range(8))
    assert trainable_rows(USERS, ITEMS, 4, 4, deletion, -1).all()
    gone = lightgcn_deletion(USERS, ITEMS, users_to_delete=np.array([0]))
    assert _rows(trainable_rows(USERS, ITEMS, 4, 4, gone, 0)) == [0, 4]
    assert _rows(trainable_rows(USERS, ITEMS, 4, 4, gone, 1)) == [0, 1, 4]


def test_rows_outside_the_ball_keep_the_teacher_vectors_exactly() -> None:
    rng = torch.Generator().manual_seed(0)
    ego = torch.randn(8, 4, generator=rng) * 0.1
    deletion = lightgcn_deletion(USERS, ITEMS, edges=np.array([3]))
    cfg = UnlearnConfig(steps=20, lr=0.05, batch_size=4, seed=0, threads=1, trainable_hops=0)
    res = unlearn_lightgcn(ego, USERS, ITEMS, 4, 4, deletion, cfg, layers=2, log=lambda *a: None)
    assert res.ego_emb is not None
    moved = (res.ego_emb - ego).abs().sum(dim=1) > 0
    assert _rows(moved.numpy()) == [2, 5]
    everything = unlearn_lightgcn(
        ego,
        USERS,
        ITEMS,
        4,
        4,
        deletion,
        cfg.replace(trainable_hops=-1),
        layers=2,
        log=lambda *a: None,
    )
    assert everything.ego_emb is not None
    assert bool(((everything.ego_emb - ego).abs().sum(dim=1) > 0).all())


def test_trainable_hops_is_validated() -> None:
    with pytest.raises(ValueError, match="trainable_hops"):
        UnlearnConfig(trainable_hops=-2)
