"""Outputs of the partition stage: the leaf tree, halos, per-leaf statistics and quality.

The leaf tree is the recursive bisection of :mod:`pipelines.partition.initial`: a part of ``t``
leaves splits into ``ceil(t/2)`` (part ``2p`` of the next level) and ``floor(t/2)`` (part
``2p+1``); leaves are numbered left to right, so a leaf's ancestors follow from ``k`` alone.

Definitions (every count is over the input edge rows, relations and duplicates included):
    internal edge of leaf L: both ends in L (self-loops included);
    cut edge of L: exactly one end in L (a cut edge counts for both its leaves);
    load of L: sum of its nodes' weighted degrees = 2 * internal + cut (self-loops excluded);
    h-hop halo of L: nodes outside L within h undirected hops of L, with their hop count;
    halo edges of L: edge rows not internal to L whose ends are both in L or its halo and one
    end is at most h-1 hops from L (for h = 1: the cut edges of L).
"""

from __future__ import annotations

import math
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pipelines.core.local_tables import local_frame
from pipelines.core.schema import DST, LEAF_ID, NODE_ID, SRC
from pipelines.partition.common import NODE, PART, Checkpointer, U, V

HOPS = "hops"
DEPTH = "depth"
PATH = "path"
LEVEL = "level"

PATH_TYPE = T.ArrayType(
    T.StructType(
        [
            T.StructField(LEVEL, T.IntegerType(), False),
            T.StructField(PART, T.IntegerType(), False),
        ]
    ),
    False,
)

LEAF_STATS_COLUMNS = (
    LEAF_ID,
    DEPTH,
    "nodes",
    "internal_edges",
    "cut_edges",
    "load",
    "halo_nodes",
    "halo_edges",
)


def leaf_paths(num_leaves: int) -> list[tuple[int, int, list[tuple[int, int]]]]:
    """``(leaf_id, depth, [(level, part), ...])`` for every leaf, root excluded.

    >>> leaf_paths(3)
    [(0, 2, [(1, 0), (2, 0)]), (1, 2, [(1, 0), (2, 1)]), (2, 1, [(1, 1)])]
    """
    out: list[tuple[int, int, list[tuple[int, int]]]] = []

    def walk(lo: int, t: int, level: int, part: int, path: list[tuple[int, int]]) -> None:
        if t == 1:
            out.append((lo, level, path))
            return
        left = (t + 1) // 2
        walk(lo, left, level + 1, 2 * part, [*path, (level + 1, 2 * part)])
        walk(lo + left, t - left, level + 1, 2 * part + 1, [*path, (level + 1, 2 * part + 1)])

    walk(0, num_leaves, 0, 0, [])
    return sorted(out)


def paths_df(spark: SparkSession, num_leaves: int) -> DataFrame:
    """Small table ``(leaf_id, depth, path)``."""
    schema = T.StructType(
        [
            T.StructField(LEAF_ID, T.IntegerType(), False),
            T.StructField(DEPTH, T.IntegerType(), False),
            T.StructField(PATH, PATH_TYPE, False),
        ]
    )
    rows = [
        (leaf, depth, [{LEVEL: level, PART: part} for level, part in path])
        for leaf, depth, path in leaf_paths(num_leaves)
    ]
    return local_frame(spark, rows, schema)


def halo(
    adjacency: DataFrame,
    leaves: DataFrame,
    edges: DataFrame,
    hops: int,
    ck: Checkpointer,
) -> tuple[DataFrame, DataFrame]:
    """The h-hop halo nodes and halo edges of every leaf.

    Schema:
        adjacency ``(u, v, ...)`` (both directions), leaves ``(node, leaf_id)``, edges
        ``(src, dst, ...)`` -> halo nodes ``(leaf_id, node, hops)`` and halo edges
        ``(leaf_id, src, dst, ...)``.
    """
    edge_cols = edges.columns
    if hops == 0:
        empty_nodes = leaves.limit(0).select(LEAF_ID, NODE, F.lit(0).alias(HOPS))
        return empty_nodes, edges.limit(0).select(F.lit(0).alias(LEAF_ID), *edge_cols)
    visited = leaves.select(LEAF_ID, NODE, F.lit(0).alias(HOPS))
    frontier = visited
    found: DataFrame | None = None
    neighbours = adjacency.select(F.col(U).alias(NODE), F.col(V).alias("nbr"))
    for d in range(1, hops + 1):
        reached = (
            frontier.join(neighbours, NODE)
            .select(LEAF_ID, F.col("nbr").alias(NODE))
            .distinct()
            .join(visited, [LEAF_ID, NODE], "left_anti")
            .withColumn(HOPS, F.lit(d))
        )
        reached = ck.write(reached, f"halo{d}")
        found = reached if found is None else found.unionByName(reached)
        visited = visited.unionByName(reached)
        if d < hops:
            visited = ck.write(visited, f"visited{d}")
        frontier = reached
    assert found is not None
    if hops == 1:
        ls = leaves.select(F.col(NODE).alias(SRC), F.col(LEAF_ID).alias("ls"))
        ld = leaves.select(F.col(NODE).alias(DST), F.col(LEAF_ID).alias("ld"))
        cut = edges.join(ls, SRC).join(ld, DST).where(F.col("ls") != F.col("ld"))
        halo_edges = cut.select(F.explode(F.array("ls", "ld")).alias(LEAF_ID), *edge_cols)
    else:
        hs = visited.select(LEAF_ID, F.col(NODE).alias(SRC), F.col(HOPS).alias("hs"))
        hd = visited.select(LEAF_ID, F.col(NODE).alias(DST), F.col(HOPS).alias("hd"))
        halo_edges = (
            edges.join(hs, SRC)
            .join(hd, [LEAF_ID, DST])
            .where(
                ((F.col("hs") > 0) | (F.col("hd") > 0)) & (F.least("hs", "hd") <= F.lit(hops - 1))
            )
            .select(LEAF_ID, *edge_cols)
        )
    return found, halo_edges


def internal_and_halo_edges(
    edges: DataFrame, assignment: DataFrame, halo_edges: DataFrame, columns: tuple[str, ...]
) -> DataFrame:
    """Every leaf's edge rows: the edges internal to it plus the halo edges shipped with it.

    Schema:
        edges ``(src, dst, ...)``; assignment ``(node_id, leaf_id)``; halo_edges ``(leaf_id,
        src, dst, ...)`` -> ``(leaf_id, *columns)``, every column cast to long (``columns``
        names ``src`` and ``dst`` and any others both inputs carry, e.g. ``rel``).
    """
    ls = assignment.select(F.col(NODE_ID).alias(SRC), F.col(LEAF_ID).alias("_ls"))
    ld = assignment.select(F.col(NODE_ID).alias(DST), F.col(LEAF_ID).alias("_ld"))
    internal = (
        edges.select(*columns)
        .join(ls, SRC)
        .join(ld, DST)
        .where(F.col("_ls") == F.col("_ld"))
        .select(F.col("_ls").alias(LEAF_ID), *columns)
    )
    out = [F.col(c).cast("long").alias(c) for c in (LEAF_ID, *columns)]
    return internal.unionByName(halo_edges.select(LEAF_ID, *columns)).select(*out)


def leaf_stats(
    spark: SparkSession,
    *,
    num_leaves: int,
    leaves: DataFrame,
    loads: list[int],
    edges: DataFrame,
    halo_nodes: DataFrame,
    halo_edges: DataFrame,
) -> list[dict[str, int]]:
    """Per-leaf counts (``num_leaves`` rows, collected): see the module docstring."""
    ls = leaves.select(F.col(NODE).alias(SRC), F.col(LEAF_ID).alias("ls"))
    ld = leaves.select(F.col(NODE).alias(DST), F.col(LEAF_ID).alias("ld"))
    tagged = edges.select(SRC, DST).join(ls, SRC).join(ld, DST)
    per_edge = tagged.select(
        F.explode(
            F.when(
                F.col("ls") == F.col("ld"),
                F.array(F.struct(F.col("ls").alias("l"), F.lit(1).alias("i"))),
            ).otherwise(
                F.array(
                    F.struct(F.col("ls").alias("l"), F.lit(0).alias("i")),
                    F.struct(F.col("ld").alias("l"), F.lit(0).alias("i")),
                )
            )
        ).alias("e")
    )
    edge_counts = per_edge.groupBy(F.col("e.l").alias(LEAF_ID)).agg(
        F.sum("e.i").alias("internal_edges"), F.sum(1 - F.col("e.i")).alias("cut_edges")
    )
    tables = {
        "nodes": leaves.groupBy(LEAF_ID).agg(F.count(F.lit(1)).alias("nodes")),
        "edges": edge_counts,
        "halo_nodes": halo_nodes.groupBy(LEAF_ID).agg(F.count(F.lit(1)).alias("halo_nodes")),
        "halo_edges": halo_edges.groupBy(LEAF_ID).agg(F.count(F.lit(1)).alias("halo_edges")),
    }
    paths = {leaf: depth for leaf, depth, _ in leaf_paths(num_leaves)}
    stats = {
        leaf: {
            LEAF_ID: leaf,
            DEPTH: paths[leaf],
            "nodes": 0,
            "internal_edges": 0,
            "cut_edges": 0,
            "load": int(loads[leaf]),
            "halo_nodes": 0,
            "halo_edges": 0,
        }
        for leaf in range(num_leaves)
    }
    for table in tables.values():
        for row in table.collect():
            for key, value in row.asDict().items():
                if key != LEAF_ID:
                    stats[int(row[LEAF_ID])][key] = int(value)
    return [stats[leaf] for leaf in range(num_leaves)]


def stats_df(spark: SparkSession, stats: list[dict[str, int]]) -> DataFrame:
    schema = T.StructType(
        [
            T.StructField(c, T.IntegerType() if c in (LEAF_ID, DEPTH) else T.LongType(), False)
            for c in LEAF_STATS_COLUMNS
        ]
    )
    return local_frame(spark, [tuple(s[c] for c in LEAF_STATS_COLUMNS) for s in stats], schema)


def quality(stats: list[dict[str, int]], *, num_nodes: int, num_edges: int) -> dict[str, Any]:
    """Edge-cut fraction, balance, halo replication factor and depth from the leaf stats."""
    k = len(stats)
    loads = [s["load"] for s in stats]
    held = [s["internal_edges"] + s["cut_edges"] for s in stats]
    cut = sum(s["cut_edges"] for s in stats) // 2
    mean_load = sum(loads) / k if k else 0.0
    mean_held = sum(held) / k if k else 0.0
    return {
        "num_leaves": k,
        "depth": max((s[DEPTH] for s in stats), default=0),
        "nodes": num_nodes,
        "edges": num_edges,
        "cut_edges": cut,
        "edge_cut": cut / num_edges if num_edges else 0.0,
        "balance": max(loads) / mean_load if mean_load else 1.0,
        "edge_balance": max(held) / mean_held if mean_held else 1.0,
        "max_leaf_edges": max(held, default=0),
        "halo_replication": (num_nodes + sum(s["halo_nodes"] for s in stats)) / num_nodes
        if num_nodes
        else 1.0,
        "min_leaf_nodes": min((s["nodes"] for s in stats), default=0),
    }


def tree_depth(num_leaves: int) -> int:
    return math.ceil(math.log2(num_leaves)) if num_leaves > 1 else 0


__all__ = [
    "DEPTH",
    "HOPS",
    "LEAF_STATS_COLUMNS",
    "NODE_ID",
    "PATH",
    "halo",
    "internal_and_halo_edges",
    "leaf_paths",
    "leaf_stats",
    "paths_df",
    "quality",
    "stats_df",
    "tree_depth",
]
