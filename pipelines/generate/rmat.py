"""Synthetic R-MAT graphs, generated in parallel by Spark tasks with numpy.

R-MAT (Chakrabarti, Zhan, Faloutsos, "R-MAT: A Recursive Model for Graph Mining", SDM 2004,
section 3) places each edge in a ``2^scale x 2^scale`` adjacency matrix by descending ``scale``
levels; at every level it picks one quadrant with probabilities ``a`` (top left), ``b`` (top
right), ``c`` (bottom left) and ``d`` (bottom right), which fixes one bit of the source (row) and
one bit of the destination (column). The optional noise is the "noisy SKG" of Seshadhri, Pinar
and Kolda ("An in-depth analysis of stochastic Kronecker graphs", J. ACM 60(2), 2013, section 8):
level ``i`` uses ``a - 2*mu_i*a/(a+d), b + mu_i, c + mu_i, d - 2*mu_i*d/(a+d)`` with
``mu_i ~ U[-noise, noise]``, which smooths the oscillating degree distribution of plain R-MAT.

Determinism: edge ``k`` belongs to chunk ``k // chunk_size``, and every chunk draws from its own
numpy stream seeded by ``SeedSequence(seed, spawn_key=(1, chunk))``. A chunk is generated whole
by one task, so the output (rows and their order) depends only on the parameters, never on the
number of partitions or tasks. :func:`rmat_numpy` produces the same edges without Spark.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.core.schema import DST, EDGE_SCHEMA, SRC

#: Edges per chunk (the unit of determinism): changing it changes the generated graph.
DEFAULT_CHUNK_SIZE = 1 << 16
#: Target edges per Spark partition when ``partitions`` is not given.
EDGES_PER_PARTITION = 1 << 22
#: Graph500 edge factor: the default scale gives about this many edges per vertex.
EDGE_FACTOR = 16
MAX_SCALE = 62

_NOISE_STREAM = 0
_CHUNK_STREAM = 1
_SCRAMBLE_STREAM = 2


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=stream))


def default_scale(num_edges: int) -> int:
    """``ceil(log2(num_edges / 16))``, at least 1: about 16 edges per vertex (Graph500)."""
    if num_edges < 1:
        raise ValueError(f"num_edges: must be >= 1, got {num_edges}")
    return max(1, math.ceil(math.log2(num_edges / EDGE_FACTOR)))


@dataclass(frozen=True)
class RmatSpec:
    """Validated R-MAT parameters; everything a task needs to generate its chunks."""

    num_edges: int
    scale: int
    a: float
    b: float
    c: float
    d: float
    seed: int
    noise: float
    chunk_size: int
    scramble_ids: bool

    @classmethod
    def create(
        cls,
        *,
        num_edges: int,
        scale: int | None = None,
        a: float = 0.57,
        b: float = 0.19,
        c: float = 0.19,
        d: float = 0.05,
        seed: int = 0,
        noise: float = 0.0,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        scramble_ids: bool = False,
    ) -> RmatSpec:
        """Validate and normalise; errors name the offending parameter."""
        if isinstance(num_edges, bool) or int(num_edges) != num_edges or num_edges < 1:
            raise ValueError(f"num_edges: must be an integer >= 1, got {num_edges!r}")
        scale = default_scale(int(num_edges)) if scale is None else scale
        if not 1 <= scale <= MAX_SCALE:
            raise ValueError(f"scale: must be in [1, {MAX_SCALE}], got {scale}")
        for name, p in (("a", a), ("b", b), ("c", c), ("d", d)):
            if not (p >= 0.0 and math.isfinite(p)):
                raise ValueError(f"{name}: must be a finite probability >= 0, got {p}")
        total = a + b + c + d
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"a, b, c, d: must sum to 1, got {total}")
        a, b, c, d = a / total, b / total, c / total, d / total
        limit = min((a + d) / 2, b, c)
        if not 0.0 <= noise <= limit:
            raise ValueError(f"noise: must be in [0, min((a+d)/2, b, c)] = [0, {limit}]: {noise}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size: must be >= 1, got {chunk_size}")
        if seed < 0:
            raise ValueError(f"seed: must be >= 0, got {seed}")
        return cls(int(num_edges), scale, a, b, c, d, seed, noise, chunk_size, scramble_ids)

    @property
    def num_chunks(self) -> int:
        return -(-self.num_edges // self.chunk_size)

    @property
    def num_vertices(self) -> int:
        """Size of the id space ``[0, 2^scale)`` (not all ids occur)."""
        return 1 << self.scale

    def level_thresholds(self) -> np.ndarray:
        """Cumulative quadrant thresholds ``(a_i, a_i+b_i, a_i+b_i+c_i)`` per level, float32.

        Shapes:
            return: ``[scale, 3]``.
        """
        if self.noise > 0:
            rng = _rng(self.seed, _NOISE_STREAM)
            mu = rng.uniform(-self.noise, self.noise, size=self.scale)
        else:
            mu = np.zeros(self.scale)
        s = self.a + self.d
        a = self.a - 2 * mu * self.a / s
        b = self.b + mu
        c = self.c + mu
        return np.stack([a, a + b, a + b + c], axis=1).astype(np.float32)

    def scramble_keys(self) -> tuple[int, int, int, int]:
        """Two odd multipliers and two addends of the id bijection (from the seed)."""
        rng = _rng(self.seed, _SCRAMBLE_STREAM)
        m1, k1, m2, k2 = (int(x) for x in rng.integers(0, 1 << 62, size=4, dtype=np.int64))
        return m1 | 1, k1, m2 | 1, k2


def scramble(ids: np.ndarray, scale: int, keys: tuple[int, int, int, int]) -> np.ndarray:
    """A bijection of ``[0, 2^scale)`` that hides the id/degree correlation of R-MAT.

    Two rounds of ``x = (x * odd + k) mod 2^scale; x ^= x >> ceil(scale/2)``; each step is
    invertible modulo ``2^scale``, so distinct ids stay distinct.

    Shapes:
        ids: ``[n]`` int64 in ``[0, 2^scale)``; return: ``[n]`` int64, same range.
    """
    mask = np.uint64((1 << scale) - 1)
    shift = np.uint64((scale + 1) // 2)
    x = ids.astype(np.uint64)
    m1, k1, m2, k2 = (np.uint64(v) for v in keys)
    with np.errstate(over="ignore"):
        for m, k in ((m1, k1), (m2, k2)):
            x = (x * m + k) & mask
            x ^= x >> shift
    return x.astype(np.int64)


def rmat_chunk(spec: RmatSpec, chunk: int, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges of one chunk, vectorised over the chunk with one uniform draw per level.

    Shapes:
        thresholds: ``[scale, 3]`` from :meth:`RmatSpec.level_thresholds`;
        return: ``(src [n], dst [n])`` int64, ``n = min(chunk_size, num_edges - start)``.
    """
    start = chunk * spec.chunk_size
    n = min(spec.chunk_size, spec.num_edges - start)
    rng = _rng(spec.seed, _CHUNK_STREAM, chunk)
    src = np.zeros(n, dtype=np.int64)
    dst = np.zeros(n, dtype=np.int64)
    for t_a, t_ab, t_abc in thresholds:
        u = rng.random(n, dtype=np.float32)
        lower = u >= t_ab  # quadrant c or d: source bit 1
        right = (u >= t_a) != lower  # quadrant b (a <= u < a+b) ...
        right |= u >= t_abc  # ... or d: destination bit 1
        src <<= 1
        src |= lower
        dst <<= 1
        dst |= right
    if spec.scramble_ids:
        keys = spec.scramble_keys()
        src = scramble(src, spec.scale, keys)
        dst = scramble(dst, spec.scale, keys)
    return src, dst


def rmat_numpy(spec: RmatSpec) -> tuple[np.ndarray, np.ndarray]:
    """All edges in one process, in the same order as :func:`generate_rmat` (small graphs).

    Shapes:
        return: ``(src [num_edges], dst [num_edges])`` int64.
    """
    thresholds = spec.level_thresholds()
    parts = [rmat_chunk(spec, k, thresholds) for k in range(spec.num_chunks)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _chunks_to_edges(
    batches: Iterator[pa.RecordBatch], *, spec: RmatSpec, thresholds: np.ndarray
) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: chunk ids in, one Arrow batch of edges out per chunk."""
    for batch in batches:
        for chunk in batch.column(0).to_numpy():
            src, dst = rmat_chunk(spec, int(chunk), thresholds)
            yield pa.RecordBatch.from_arrays([pa.array(src), pa.array(dst)], names=[SRC, DST])


def generate_rmat(
    spark: SparkSession,
    *,
    num_edges: int,
    scale: int | None = None,
    a: float = 0.57,
    b: float = 0.19,
    c: float = 0.19,
    d: float = 0.05,
    seed: int = 0,
    partitions: int | None = None,
    noise: float = 0.0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    scramble_ids: bool = False,
    drop_self_loops: bool = False,
    dedupe: bool = False,
) -> DataFrame:
    """Generate an R-MAT edge list as a DataFrame, distributed over Spark tasks.

    ``spark.range(num_chunks)`` is split over ``partitions`` tasks; each task turns its chunk
    ids into edges with numpy (``mapInArrow``). Nothing is collected to the driver.

    Args:
        spark: Active session.
        num_edges: Edges generated (the exact row count unless a filter below removes some).
        scale: Ids lie in ``[0, 2^scale)``; default :func:`default_scale` (about 16 edges per
            vertex, as in Graph500).
        a: Probability of the top-left quadrant (source bit 0, destination bit 0).
        b: Top-right quadrant (0, 1).
        c: Bottom-left quadrant (1, 0).
        d: Bottom-right quadrant (1, 1); ``a + b + c + d`` must be 1.
        seed: Seed; the graph is a pure function of all parameters except ``partitions``.
        partitions: Spark tasks; default about one per 4M edges, at least the default
            parallelism, at most one per chunk. Does not change the output.
        noise: Per-level noise amplitude of noisy SKG (0 disables).
        chunk_size: Edges per seeded chunk; part of the graph's identity.
        scramble_ids: Relabel ids with a seeded bijection (R-MAT puts hubs at low ids).
        drop_self_loops: Remove ``src == dst`` rows (fewer than ``num_edges`` rows remain).
        dedupe: Remove duplicate ``(src, dst)`` rows (a shuffle; row order then unspecified).

    Returns:
        Edge DataFrame.

    Schema:
        ``src: long, dst: long`` (:data:`pipelines.core.schema.EDGE_SCHEMA`), ids in
        ``[0, 2^scale)``; rows in edge order (chunk by chunk) unless ``dedupe``.
    """
    spec = RmatSpec.create(
        num_edges=num_edges,
        scale=scale,
        a=a,
        b=b,
        c=c,
        d=d,
        seed=seed,
        noise=noise,
        chunk_size=chunk_size,
        scramble_ids=scramble_ids,
    )
    if partitions is None:
        by_size = -(-spec.num_edges // EDGES_PER_PARTITION)
        wanted = max(spark.sparkContext.defaultParallelism, by_size)
        partitions = min(spec.num_chunks, wanted)
    if partitions < 1:
        raise ValueError(f"partitions: must be >= 1, got {partitions}")
    body = functools.partial(_chunks_to_edges, spec=spec, thresholds=spec.level_thresholds())
    edges = spark.range(0, spec.num_chunks, 1, numPartitions=partitions).mapInArrow(
        body, EDGE_SCHEMA
    )
    if drop_self_loops:
        edges = edges.filter(F.col(SRC) != F.col(DST))
    if dedupe:
        edges = edges.dropDuplicates([SRC, DST])
    return edges
