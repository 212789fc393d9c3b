"""Reference results from GraphX itself (``spark-graphx`` ships inside pyspark's jars).

GraphFrames' default ``labelPropagation`` and ``graphx`` connected components call exactly these
GraphX routines, so they are the ground truth our DataFrame algorithms must reproduce even when
the GraphFrames JAR cannot be resolved. Test-only: results are collected to the driver.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pyspark.sql import SparkSession


def _load(spark: SparkSession, edges: Iterable[tuple[int, int]], path: Path, parts: int):
    path.write_text("".join(f"{s} {d}\n" for s, d in edges))
    jvm = spark.sparkContext._jvm
    level = jvm.org.apache.spark.storage.StorageLevel.MEMORY_ONLY()
    sc = spark.sparkContext._jsc.sc()
    return jvm.org.apache.spark.graphx.GraphLoader.edgeListFile(
        sc, str(path), False, parts, level, level
    )


def _vertices(graph) -> dict[int, int]:
    return {t._1(): t._2() for t in graph.vertices().toJavaRDD().collect()}


def graphx_label_propagation(
    spark: SparkSession,
    edges: Iterable[tuple[int, int]],
    max_steps: int,
    path: Path,
    *,
    edge_partitions: int = 2,
) -> dict[int, int]:
    """``org.apache.spark.graphx.lib.LabelPropagation.run(graph, max_steps)``: id -> label."""
    jvm = spark.sparkContext._jvm
    graph = _load(spark, edges, path, edge_partitions)
    tag = jvm.scala.reflect.ClassTag.Int()
    return _vertices(jvm.org.apache.spark.graphx.lib.LabelPropagation.run(graph, max_steps, tag))


def graphx_connected_components(
    spark: SparkSession, edges: Iterable[tuple[int, int]], path: Path
) -> dict[int, int]:
    """``org.apache.spark.graphx.lib.ConnectedComponents.run(graph)``: id -> component."""
    jvm = spark.sparkContext._jvm
    graph = _load(spark, edges, path, 2)
    tag = jvm.scala.reflect.ClassTag.Int()
    return _vertices(jvm.org.apache.spark.graphx.lib.ConnectedComponents.run(graph, tag, tag))
