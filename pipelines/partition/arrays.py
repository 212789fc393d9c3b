"""numpy building blocks of the single-task partitioner: seeded hashes, running sums, graph.

Runs inside Spark tasks and in tests; imports numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (Steele, Lea, Flood, OOPSLA 2014) on a ``uint64`` array."""
    z = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def node_hash(ids: np.ndarray, *keys: int) -> np.ndarray:
    """Deterministic 64-bit hash of node ids salted by integer keys (seed, level, ...)."""
    h = mix64(np.asarray(ids, dtype=np.int64).view(np.uint64))
    for key in keys:
        h = mix64(h ^ np.uint64((int(key) * _GOLDEN) & _MASK))
    return h


def below(h: np.ndarray, fraction: float) -> np.ndarray:
    """``h / 2^64 < fraction`` for uint64 hashes."""
    if fraction >= 1.0:
        return np.ones(h.shape, dtype=bool)
    return h < np.uint64(int(fraction * 2.0**64))


def group_running(groups: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Running sum of ``values`` restarted at each new value of the (sorted) ``groups``."""
    if len(values) == 0:
        return values.copy()
    cs = np.cumsum(values)
    starts = np.r_[True, groups[1:] != groups[:-1]]
    base = (cs - values)[starts]
    return cs - base[np.cumsum(starts) - 1]


@dataclass(frozen=True)
class InitialParams:
    """Knobs of the initial partitioner (see
    :class:`pipelines.partition.stage.PartitionSettings`)."""

    num_leaves: int
    tolerance: float
    seed: int
    tries: int = 8
    iterations: int = 20
    refine_iterations: int = 20
    active_fraction: float = 0.5
    refine_active_fraction: float = 0.7
    fm_passes: int = 4
    fm_max_nodes: int = 20_000


@dataclass(frozen=True)
class Graph:
    """A small weighted graph in numpy arrays: nodes by index, sorted ids, directed rows."""

    ids: np.ndarray  # sorted node ids
    vw: np.ndarray  # node weights (int64, >= 1)
    s: np.ndarray  # directed rows, both directions present
    d: np.ndarray
    w: np.ndarray

    @property
    def n(self) -> int:
        return len(self.ids)
