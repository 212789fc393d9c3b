"""The deterministic start vectors every leaf and the global table share.

A node's start vector is a function of ``(seed, kind, node id)`` only (SplitMix64 hashing and
Box-Muller), so every task, leaf and run computes the same one without a table or a shuffle.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.core.schema import ITEM, KIND, NODE_ID, USER

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser, vectorised (uint64 in, uint64 out)."""
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return z ^ (z >> np.uint64(31))


def seeded_normal(
    node_ids: np.ndarray, kind_code: int, dim: int, seed: int, std: float
) -> np.ndarray:
    """Deterministic N(0, std²) vectors per (seed, kind, node id): same on every task and run.

    Shapes:
        node_ids: ``[n]`` int64 -> ``[n, dim]`` float32.
    """
    ids = node_ids.astype(np.uint64)[:, None]
    cols = np.arange(dim, dtype=np.uint64)[None, :]
    with np.errstate(over="ignore"):
        base = ids * np.uint64(0x100000001B3) + np.uint64(seed) * np.uint64(0x5851F42D4C957F2D)
        base = base + np.uint64(kind_code) * np.uint64(0x14057B7EF767814F)
        h1 = _splitmix64(base * np.uint64(2 * 1024) + cols * np.uint64(2))
        h2 = _splitmix64(base * np.uint64(2 * 1024) + cols * np.uint64(2) + np.uint64(1))
    u1 = ((h1 >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)
    u2 = ((h2 >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)
    z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)  # Box-Muller
    return (z * std).astype(np.float32)


KIND_CODES = {USER: 1, ITEM: 2, "node": 3, "entity": 4}


def seeded_vectors(rows: pd.DataFrame, *, dim: int, seed: int, std: float = 0.1) -> np.ndarray:
    """:func:`seeded_normal` for each row's ``(kind, node_id)``, in row order.

    Shapes:
        rows: ``n`` rows with ``kind``, ``node_id`` -> ``[n, dim]`` float32.
    """
    out = np.empty((len(rows), dim), dtype=np.float32)
    kinds = rows[KIND].to_numpy()
    ids = rows[NODE_ID].to_numpy(np.int64)
    for kind in pd.unique(kinds):
        mask = kinds == kind
        out[mask] = seeded_normal(ids[mask], KIND_CODES.get(str(kind), 0), dim, seed, std)
    return out
