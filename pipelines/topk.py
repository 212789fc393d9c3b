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
    # The kk largest per row (in no order) and the kk-th value. A row with exactly kk scores
    # >= that value has exactly that top set: sort it by (score desc, item id asc), vectorised.
    # Other rows (ties across the cut, or fewer than kk unseen items) take every candidate >= the
    # kk-th value and the same order, one row at a time.
    top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    top_scores = np.take_along_axis(scores, top, 1)
    kth = top_scores.min(axis=1)
    fast = np.isfinite(kth) & ((scores >= kth[:, None]).sum(axis=1) == kk)
    if fast.any():
        cand, cand_scores = top[fast], top_scores[fast]
        order = np.lexsort((item_ids[cand], -cand_scores), axis=-1)
        out_items[fast] = item_ids[np.take_along_axis(cand, order, 1)]
        out_scores[fast] = np.take_along_axis(cand_scores, order, 1)
    for row in np.flatnonzero(~fast):
        cand = np.flatnonzero(scores[row] >= kth[row])
        cand = cand[np.isfinite(scores[row, cand])]
        order = np.lexsort((item_ids[cand], -scores[row, cand]))[:kk]
        chosen = cand[order]
        out_items[row, : len(chosen)] = item_ids[chosen]
        out_scores[row, : len(chosen)] = scores[row, chosen]
    return out_items, out_scores
