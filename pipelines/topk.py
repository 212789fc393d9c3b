"""Exact top-K by inner product for one block of queries (NumPy only, no Spark, no torch).

Shared by the Spark tasks of :mod:`pipelines.recommend` and the ANN loader and benchmark of
:mod:`pipelines.ann`, so every path orders results the same way: score descending, then the
lower item id.
"""

from __future__ import annotations

import numpy as np


def topk_block(
    user_matrix: np.ndarray,
    item_matrix: np.ndarray,
    item_ids: np.ndarray,
    seen: list[np.ndarray],
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` items for a block of users, seen items masked, ties to the lower item id.

    Shapes:
        user_matrix: ``[U, d]``; item_matrix: ``[I, d]``; item_ids: ``[I]`` sorted ascending;
        seen: ``U`` arrays of item ids. Returns (items ``[U, k']``, scores ``[U, k']``) with
        ``k' = min(k, I)``; a row may hold fewer valid entries (marked -1) when the user has seen
        almost every item.
    """
    scores = user_matrix.astype(np.float32) @ item_matrix.astype(np.float32).T
    for row, items in enumerate(seen):
        if len(items):
            pos = np.clip(np.searchsorted(item_ids, items), 0, len(item_ids) - 1)
            pos = pos[item_ids[pos] == items]
            scores[row, pos] = -np.inf
    kk = min(k, scores.shape[1])
    out_items = np.full((scores.shape[0], kk), -1, dtype=np.int64)
    out_scores = np.full((scores.shape[0], kk), -np.inf, dtype=np.float32)
    if kk == 0:
        return out_items, out_scores
    # k-th largest value per row, then every candidate >= it; exact order among candidates by
    # (score desc, item id asc) makes ties deterministic.
    kth = -np.partition(-scores, kk - 1, axis=1)[:, kk - 1]
    for row in range(scores.shape[0]):
        cand = np.flatnonzero(scores[row] >= kth[row])
        cand = cand[np.isfinite(scores[row, cand])]
        order = np.lexsort((item_ids[cand], -scores[row, cand]))[:kk]
        chosen = cand[order]
        out_items[row, : len(chosen)] = item_ids[chosen]
        out_scores[row, : len(chosen)] = scores[row, chosen]
    return out_items, out_scores
