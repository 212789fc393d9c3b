"""The Spark-to-torch seam of the aggregation: one bucket's partial sums of a propagation layer.

:func:`pipelines.aggregate.propagate.push_partial_sums` hands every Spark task one bucket of
edges and its source vectors as numpy arrays; :func:`bucket_partial_sums` adds them up with
torch's ``index_add_`` (imported here, inside the function, so the Spark driver never loads it).
"""

from __future__ import annotations

import numpy as np

ADD_CHUNK_ROWS = 1 << 20


def bucket_partial_sums(
    u: np.ndarray, v: np.ndarray, x_ids: np.ndarray, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per distinct target ``v``: ``Σ x_u / sqrt(out(u))`` over the edges into it, and their count.

    ``out(u)`` is ``u``'s number of edges here (all of them: the bucket holds every out-edge of
    its sources), the first factor of LightGCN's ``1 / sqrt(out(u) in(v))`` (He et al., SIGIR
    2020, Eq. 8-9); the counts add up to ``in(v)`` across buckets. A source without a row in
    ``x`` starts from zeros; rows of ``x`` that are no source are ignored.

    Shapes:
        u, v: ``[E]`` (E >= 1); x_ids ``[M]``; x ``[M, dim]`` float32 ->
        targets ``[T]`` (ascending), counts ``[T]``, sums ``[T, dim]`` float32.
    """
    import torch

    dim = x.shape[1]
    sources, src_slot, out_deg = np.unique(u, return_inverse=True, return_counts=True)
    targets, dst_slot, in_count = np.unique(v, return_inverse=True, return_counts=True)
    xs = torch.zeros(len(sources), dim)
    if len(x_ids):
        pos = np.searchsorted(sources, x_ids).clip(0, len(sources) - 1)
        hit = sources[pos] == x_ids
        xs[torch.from_numpy(pos[hit])] = torch.from_numpy(x[hit])
    xs *= torch.from_numpy((1.0 / np.sqrt(out_deg)).astype(np.float32))[:, None]
    acc = torch.zeros(len(targets), dim)
    for start in range(0, len(u), ADD_CHUNK_ROWS):
        part = slice(start, start + ADD_CHUNK_ROWS)
        acc.index_add_(
            0,
            torch.from_numpy(dst_slot[part].astype(np.int64)),
            xs[torch.from_numpy(src_slot[part].astype(np.int64))],
        )
    return targets, in_count, acc.numpy()
