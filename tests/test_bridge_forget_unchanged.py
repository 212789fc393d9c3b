"""A leaf with nothing to forget: distill-to-delete is a fixed point, so the steps are skipped."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch

from gnn.unlearn.d2dgn import UnlearnConfig
from gnn.unlearn.lightgcn import lightgcn_deletion, unlearn_lightgcn
from pipelines.core.vector_bytes import bytes_to_matrix, vectors_to_bytes
from pipelines.forget.seam import LeafForgetSettings, unlearn_leaf_from


def _leaf(deleted_edge: bool) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    # Leaf 3: users 0, 1; items 10, 11; edges (0,10) (0,11) (1,10).
    edges = pd.DataFrame(
        {
            "leaf_id": [3, 3, 3],
            "user": [0, 0, 1],
            "item": [10, 11, 10],
            "deleted": [False, deleted_edge, False],
        }
    )
    vecs = (np.arange(16, dtype=np.float32).reshape(4, 4) - 7) / 10
    init = pd.DataFrame(
        {
            "leaf_id": [3] * 4,
            "kind": ["user", "user", "item", "item"],
            "node_id": [0, 1, 10, 11],
            "vector": vectors_to_bytes(vecs),
            "deleted": [False] * 4,
        }
    )
    return edges, init, vecs


def test_no_deletion_is_a_fixed_point_of_unlearn_lightgcn():
    users, items = np.array([0, 0, 1]), np.array([0, 1, 0])
    teacher = torch.from_numpy(_leaf(False)[2])
    cfg = UnlearnConfig(steps=1, lr=0.05, batch_size=2, seed=1, threads=1)
    res = unlearn_lightgcn(
        teacher,
        users,
        items,
        2,
        2,
        lightgcn_deletion(users, items),
        cfg,
        layers=1,
        log=lambda *a: None,
    )
    # The objective is exactly 0 at the start (student == teacher, no deleted terms). Its
    # gradient is 0 up to float rounding, which Adam normalises into a step of about lr, so
    # running the steps would only add drift: the bridge skips them.
    assert res.steps == 1 and res.losses == [(0.0, 0.0, 0.0)]
    drift = float((res.ego_emb - teacher).abs().max())
    assert drift <= cfg.lr


def test_unchanged_leaf_skips_steps_and_returns_teacher_rows():
    edges, init, vecs = _leaf(False)
    settings = LeafForgetSettings(dim=4, layers=1, steps=5, threads=1, device="cpu")
    out = unlearn_leaf_from(edges, init, settings)
    assert list(zip(out["node_id"], out["w"], strict=True)) == [
        (0, 2.0),
        (1, 1.0),
        (10, 2.0),
        (11, 1.0),
    ]
    np.testing.assert_array_equal(bytes_to_matrix(list(out["vector"]), 4), vecs)
    log = json.loads(out["leaf_log"].iloc[0])
    assert (log["unchanged"], log["steps"], log["forgotten_interactions"]) == (True, 0, 0)


def test_leaf_with_a_deleted_edge_still_runs_the_steps():
    edges, init, vecs = _leaf(True)
    settings = LeafForgetSettings(dim=4, layers=1, steps=5, lr=0.05, threads=1, device="cpu")
    out = unlearn_leaf_from(edges, init, settings)
    log = json.loads(out["leaf_log"].iloc[0])
    assert (log["unchanged"], log["steps"], log["forgotten_interactions"]) == (False, 5, 1)
    assert list(out["node_id"]) == [0, 1, 10]  # item 11 lost its only edge
    assert not np.array_equal(bytes_to_matrix(list(out["vector"]), 4), vecs[:3])
