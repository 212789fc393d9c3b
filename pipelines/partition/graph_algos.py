"""Connected components and label propagation on DataFrames (no GraphFrames JAR needed).

Both take the edge list as ``src, dst`` rows (any direction, duplicates and self-loops allowed)
and treat the graph as undirected, as GraphFrames does. Neither collects the graph to the driver;
lineage is cut with (local) checkpoints every ``checkpoint_interval`` iterations.

* :func:`connected_components`: the alternating large-star / small-star algorithm of Kiveris,
  Lattanzi, Mirrokni, Rastogi and Vassilvitskii, "Connected Components in MapReduce and Beyond"
  (SoCC 2014, Algorithm 3 with Algorithms 1 and 2), the same family as GraphFrames' default
  ``two_phase`` algorithm. The component is the smallest vertex id in it, which is also what
  GraphFrames (and GraphX) return for integral ids.
* :func:`label_propagation`: static synchronous label propagation (Raghavan, Albert, Kumara,
  "Near linear time algorithm to detect community structures in large-scale networks",
  Phys. Rev. E 76, 2007) with the exact semantics of GraphX ``LabelPropagation.run``, which
  GraphFrames' ``labelPropagation`` calls by default (``algorithm="graphx"``).
"""

from __future__ import annotations

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from pipelines.core.schema import DST, SRC

ID = "id"
COMPONENT = "component"
LABEL = "label"
CHECKPOINT_MODES = ("local", "reliable")
TIE_BREAKS = ("graphx", "min")

_M = "_min_nbr"
_DEG = "_out_deg"


class NotConvergedError(RuntimeError):
    """Connected components did not converge within ``max_iter`` iterations."""


def _describe(spark: SparkSession, text: str | None) -> None:
    """Label the following Spark jobs in the UI (None clears the label)."""
    spark.sparkContext.setJobDescription(text)  # type: ignore[arg-type]


def _truncate(df: DataFrame, mode: str) -> DataFrame:
    """Materialise ``df`` and cut its lineage (``local`` or ``reliable`` checkpoint)."""
    if mode == "local":
        return df.localCheckpoint(eager=True)
    return df.checkpoint(eager=True)


def _all_ids(edges: DataFrame, vertices: DataFrame | None) -> DataFrame:
    ends = edges.select(F.col(SRC).alias(ID)).union(edges.select(F.col(DST).alias(ID)))
    if vertices is not None:
        ends = ends.union(vertices.select(ID))
    return ends.distinct()


def _check_args(max_iter: int, checkpoint_interval: int, checkpoint: str) -> None:
    if max_iter < 0:
        raise ValueError(f"max_iter: must be >= 0, got {max_iter}")
    if checkpoint_interval < 1:
        raise ValueError(f"checkpoint_interval: must be >= 1, got {checkpoint_interval}")
    if checkpoint not in CHECKPOINT_MODES:
        raise ValueError(f"checkpoint: must be one of {CHECKPOINT_MODES}, got {checkpoint!r}")


def connected_components(
    edges: DataFrame,
    *,
    vertices: DataFrame | None = None,
    max_iter: int = 100,
    checkpoint_interval: int = 2,
    checkpoint: str = "local",
) -> DataFrame:
    """Weakly connected components by alternating large-star and small-star steps.

    Edges are kept oriented from the larger to the smaller id. With ``m(u)`` the smallest
    out-neighbour of ``u`` (or ``u`` itself), large-star maps every edge ``(x, y)`` to
    ``(x, m(y))``; small-star maps ``(u, v)`` to ``(v, m(u))`` and adds ``(u, m(u))``. Both keep
    connectivity; the fixed point is a forest of stars whose centres are the component minima
    (Kiveris et al. 2014, Theorems 2-4: O(log^2 n) rounds). The loop stops when every vertex has at
    most one out-edge and every out-edge points at a centre, checked with one small aggregate per
    iteration.

    Args:
        edges: Undirected edges; self-loops and duplicates are ignored.
        vertices: Optional vertices (column ``id``); those without edges get their own id.
        max_iter: Maximum large-star + small-star rounds before :class:`NotConvergedError`.
        checkpoint_interval: Cut the lineage every this many rounds (others are persisted).
        checkpoint: ``local`` (``localCheckpoint``) or ``reliable`` (the checkpoint dir).

    Returns:
        One row per vertex (``vertices`` ids and edge endpoints).

    Schema:
        in: ``edges: src long, dst long``; ``vertices: id long, ...``.
        out: ``id long, component long`` (component = smallest id of the component).
    """
    _check_args(max_iter, checkpoint_interval, checkpoint)
    ids = _all_ids(edges, vertices)
    e = (
        edges.select(F.greatest(SRC, DST).alias(SRC), F.least(SRC, DST).alias(DST))
        .filter(F.col(SRC) != F.col(DST))
        .distinct()
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    spark = edges.sparkSession
    level = StorageLevel.MEMORY_AND_DISK
    held: list[DataFrame] = []  # cached frames still read by the round in progress
    for iteration in range(max_iter + 1):
        _describe(spark, f"connected_components: round {iteration}")
        m = e.groupBy(SRC).agg(F.min(DST).alias(_M), F.count(F.lit(1)).alias(_DEG)).persist(level)
        joined = e.join(m.select(F.col(SRC).alias(DST), _M), on=DST, how="left").persist(level)
        not_star = joined.agg(F.count(_M).alias("n")).crossJoin(m.agg(F.max(_DEG).alias("d")))
        stats = not_star.first()  # materialises e, m and joined
        for df in held:
            df.unpersist()
        held = [m, joined]
        if stats is not None and stats["n"] == 0 and (stats["d"] or 0) <= 1:
            break
        if iteration == max_iter:
            for df in (*held, e):
                df.unpersist()
            _describe(spark, None)
            raise NotConvergedError(
                f"connected_components: not converged after max_iter={max_iter} rounds"
            )
        small = _large_then_small_star(joined)
        held.append(e)
        if (iteration + 1) % checkpoint_interval == 0:
            e = _truncate(small, checkpoint)
        else:
            e = small.persist(level)
    centre = e.select(F.col(SRC).alias(ID), F.col(DST).alias(COMPONENT))
    result = ids.join(centre, on=ID, how="left").select(
        ID, F.coalesce(COMPONENT, ID).alias(COMPONENT)
    )
    result = _truncate(result, checkpoint)
    for df in (*held, e):
        df.unpersist()
    _describe(spark, None)
    return result


def _large_then_small_star(joined: DataFrame) -> DataFrame:
    """One round of :func:`connected_components` on ``joined`` ``(src, dst, m(dst))``.

    Large-star maps ``(x, y)`` to ``(x, m(y))``; small-star then maps ``(u, v)`` to
    ``(v, m(u))`` and adds ``(u, m(u))`` (Kiveris et al. 2014).
    """
    large = joined.select(SRC, F.coalesce(_M, DST).alias(DST)).distinct()
    m2 = large.groupBy(SRC).agg(F.min(DST).alias(_M))
    return (
        large.join(m2, on=SRC)
        .select(F.col(DST).alias(SRC), F.col(_M).alias(DST))
        .filter(F.col(SRC) != F.col(DST))
        .union(m2.select(SRC, F.col(_M).alias(DST)))
        .distinct()
    )


def _int32(x: Column) -> Column:
    """Reinterpret the low 32 bits of a non-negative long (``x < 2^32``) as a signed int."""
    return F.when(x >= F.lit(1 << 31), x - F.lit(1 << 32)).otherwise(x)


def graphx_tie_order(label: Column, distinct_labels: Column) -> Column:
    """Sort key reproducing the order in which GraphX LPA scans its vote map.

    GraphX 4.1 merges votes into a Scala 2.13 ``mutable.HashMap`` and takes
    ``maxBy(count)``, i.e. the first label with the top count in the map's iteration order.
    That order is: bucket ``improve(hash) & (capacity - 1)``, then ``improve(hash)`` (signed)
    within a bucket, where ``hash`` is Scala's ``##`` of the boxed long (the value itself if it
    fits in an int, else ``(int)(v ^ (v >>> 32))``), ``improve(h) = h ^ (h >>> 16)`` and the
    capacity is 16 doubled while ``n >= 0.75 * capacity`` (``n`` distinct labels in the map).
    For labels in ``[0, 16)`` this is plain ascending order.
    """
    v = label
    fits = (v >= F.lit(-(1 << 31))) & (v < F.lit(1 << 31))
    folded = v.bitwiseXOR(F.shiftrightunsigned(v, 32)).bitwiseAND(F.lit(0xFFFFFFFF))
    unsigned = F.when(fits, v.bitwiseAND(F.lit(0xFFFFFFFF))).otherwise(folded)
    improved = unsigned.bitwiseXOR(F.shiftright(unsigned, 16))  # unsigned 32-bit value
    n = distinct_labels.cast("double")
    capacity = F.greatest(F.lit(16), F.pow(F.lit(2.0), F.ceil(F.log2(F.ceil(4 * (n + 1) / 3)))))
    bucket = improved.bitwiseAND(capacity.cast("long") - 1)
    return F.struct(bucket.alias("bucket"), _int32(improved).alias("hash"))


def label_propagation(
    vertices: DataFrame,
    edges: DataFrame,
    *,
    max_iter: int,
    tie_break: str = "graphx",
    checkpoint_interval: int = 2,
    checkpoint: str = "local",
) -> DataFrame:
    """Static synchronous label propagation with GraphX / GraphFrames semantics.

    Every vertex starts with its own id as label. In each of exactly ``max_iter`` rounds every
    edge sends each endpoint's label to the other endpoint (undirected; a duplicate edge votes
    twice, a self-loop gives its vertex two votes for its own label) and every vertex that got
    votes takes the most frequent label; a vertex without edges keeps its label. The run is
    static like GraphX's: it does not stop early and may oscillate (e.g. on bipartite graphs).

    Ties: ``graphx`` reproduces GraphX exactly (see :func:`graphx_tie_order`; the smallest label
    whenever the tied labels lie in ``[0, 16)``), ``min`` takes the smallest label always.

    Args:
        vertices: Vertices (column ``id``); edge endpoints missing here still take part.
        edges: Undirected edges ``src, dst``.
        max_iter: Number of rounds (GraphFrames ``maxIter``).
        tie_break: ``graphx`` (default, matches GraphFrames) or ``min``.
        checkpoint_interval: Cut the lineage every this many rounds.
        checkpoint: ``local`` (``localCheckpoint``) or ``reliable`` (the checkpoint dir).

    Returns:
        One row per distinct ``vertices`` id.

    Schema:
        in: ``vertices: id long, ...``; ``edges: src long, dst long, ...``.
        out: ``id long, label long``.
    """
    _check_args(max_iter, checkpoint_interval, checkpoint)
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"tie_break: must be one of {TIE_BREAKS}, got {tie_break!r}")
    spark = edges.sparkSession
    # Both directions of every edge as (receiver, sender): one join per round.
    arcs = (
        edges.select(F.col(DST).alias(ID), F.col(SRC).alias("_sender"))
        .union(edges.select(F.col(SRC).alias(ID), F.col(DST).alias("_sender")))
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    ids = _all_ids(edges, vertices)
    isolated = ids.join(arcs.select(ID).distinct(), on=ID, how="left_anti")
    isolated = isolated.select(ID, F.col(ID).alias(LABEL)).persist(StorageLevel.MEMORY_AND_DISK)
    labels = ids.select(ID, F.col(ID).alias(LABEL))
    for iteration in range(max_iter):
        _describe(spark, f"label_propagation: round {iteration + 1}")
        votes = (
            arcs.join(labels.withColumnRenamed(ID, "_sender"), on="_sender")
            .groupBy(ID, LABEL)
            .agg(F.count(F.lit(1)).alias("_votes"))
        )
        if tie_break == "min":
            key = F.struct(-F.col("_votes"), F.col(LABEL))
            best = votes.groupBy(ID).agg(F.min(key).alias("b"))
        else:
            per_vertex = Window.partitionBy(ID)
            top = (
                votes.withColumn("_n", F.count(F.lit(1)).over(per_vertex))
                .withColumn("_top", F.max("_votes").over(per_vertex))
                .filter(F.col("_votes") == F.col("_top"))
            )
            key = F.struct(graphx_tie_order(F.col(LABEL), F.col("_n")).alias("o"), F.col(LABEL))
            best = top.groupBy(ID).agg(F.min(key).alias("b"))
        labels = best.select(ID, F.col(f"b.{LABEL}").alias(LABEL)).union(isolated)
        if (iteration + 1) % checkpoint_interval == 0 or iteration + 1 == max_iter:
            labels = _truncate(labels, checkpoint)
    _describe(spark, None)
    result = vertices.select(ID).distinct().join(labels, on=ID, how="left")
    arcs.unpersist()  # labels is a checkpoint (or, with max_iter=0, the ids): no longer needed
    isolated.unpersist()
    return result
