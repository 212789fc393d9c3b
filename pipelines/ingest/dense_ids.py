"""Dense ``int64`` ids: a sorted dictionary per kind, mapping ids to it and back.

Dense ids are assigned deterministically: within each kind, ids are ordered numerically when
they are integers (so already-dense 0-based ids such as Gowalla's map to themselves), else by
their UTF-8 bytes, and numbered 0, 1, 2, ... by :func:`zip_with_index` on the sorted, checkpointed
set. No global window and nothing collected but one row per partition.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.core.schema import KIND, NODE_ID, ORIGINAL_ID

_PID, _MID, _GRP = "_pid", "_mid", "_grp"


def zip_with_index(
    spark: SparkSession, df: DataFrame, column: str, *, group: str | None = None
) -> tuple[DataFrame, dict[str, int]]:
    """Number rows 0..n-1 in partition order, then row order within a partition.

    With ``group``, numbering restarts at 0 for each value of that column; the rows of a group
    must then be contiguous within each partition (true after sorting by the group first).
    ``df`` must give the same partitions in the same order every time it is computed (e.g. a
    checkpointed DataFrame): one job collects the size of each (partition, group) and a
    second numbers the rows. This is ``RDD.zipWithIndex`` without leaving the JVM.

    Returns:
        The numbered DataFrame and the number of rows per group value (as a string; the key
        is ``""`` without ``group``).

    Schema:
        out: the columns of ``df`` plus ``column long``.
    """
    tagged = df.select(
        "*", F.spark_partition_id().alias(_PID), F.monotonically_increasing_id().alias(_MID)
    )
    gcol = F.col(group).cast("string") if group else F.lit("")
    tagged = tagged.withColumn(_GRP, gcol)
    stats = sorted(
        tagged.groupBy(_PID, _GRP)
        .agg(F.min(_MID).alias("first"), F.count(F.lit(1)).alias("n"))
        .collect(),
        key=lambda r: (r[_PID], r["first"]),
    )
    offsets: list[tuple[int, str, int, int]] = []
    sizes: dict[str, int] = {}
    for row in stats:
        start = sizes.get(row[_GRP], 0)
        offsets.append((row[_PID], row[_GRP], row["first"], start))
        sizes[row[_GRP]] = start + int(row["n"])
    table = spark.createDataFrame(offsets, f"{_PID} int, {_GRP} string, first long, start long")
    numbered = tagged.join(F.broadcast(table), [_PID, _GRP]).select(
        *df.columns, (F.col("start") + F.col(_MID) - F.col("first")).alias(column)
    )
    return numbered, sizes


def build_dictionary(
    spark: SparkSession, ids: list[tuple[str, DataFrame]], *, numeric_kinds: set[str]
) -> tuple[DataFrame, dict[str, int]]:
    """Assign dense ids per kind to the distinct original ids.

    The sorted distinct ids are checkpointed (``localCheckpoint``) so that the two jobs of
    :func:`zip_with_index` see the same partitions.

    Args:
        spark: The session (for the small offset table).
        ids: ``(kind, df)`` pairs; each ``df`` has one string column of original ids (several
            pairs may share a kind, e.g. the heads and tails of triples).
        numeric_kinds: Kinds whose ids are canonical integers, ordered numerically.

    Returns:
        The dictionary and the number of ids of each kind.

    Schema:
        ids: one ``string`` column each.
        out: ``kind string, original_id string, node_id long`` with node ids 0..n_kind-1.
    """
    parts = [
        df.select(F.lit(kind).alias(KIND), F.col(df.columns[0]).alias(ORIGINAL_ID))
        for kind, df in ids
    ]
    distinct = parts[0]
    for part in parts[1:]:
        distinct = distinct.unionByName(part)
    numeric = F.col(KIND).isin(sorted(numeric_kinds)) if numeric_kinds else F.lit(False)
    ordered = (
        distinct.distinct()
        .withColumn("_num", F.when(numeric, F.col(ORIGINAL_ID).try_cast("long")))
        .orderBy(KIND, "_num", ORIGINAL_ID)
        .drop("_num")
        .localCheckpoint(eager=True)
    )
    numbered, sizes = zip_with_index(spark, ordered, NODE_ID, group=KIND)
    return numbered.select(KIND, ORIGINAL_ID, NODE_ID), sizes


def to_dense(
    df: DataFrame, dictionary: DataFrame, column: str, kind: str, *, output: str
) -> DataFrame:
    """Left-join the dense id of ``df[column]`` (original ids of ``kind``) as ``output``.

    Schema:
        df: ``column string`` among others.
        dictionary: ``kind, original_id, node_id``.
        out: the columns of ``df`` plus ``output long`` (null when the id is not in the
        dictionary).
    """
    d = dictionary.where(F.col(KIND) == kind).select(
        F.col(ORIGINAL_ID).alias("_orig"), F.col(NODE_ID).alias(output)
    )
    return df.join(d, df[column] == d["_orig"], "left").drop("_orig")


def map_back(df: DataFrame, dictionary: DataFrame, column: str, kind: str) -> DataFrame:
    """Replace dense ids in ``df[column]`` by the original ids of ``kind``.

    Rows are kept (a left join): an id missing from the dictionary becomes null.

    Schema:
        df: ``column long`` among others.
        dictionary: ``kind, original_id, node_id``.
        out: the columns of ``df`` in the same order, ``column`` now ``string``.
    """
    d = dictionary.where(F.col(KIND) == kind).select(
        F.col(NODE_ID).alias("_mb_id"), F.col(ORIGINAL_ID).alias("_mb_orig")
    )
    joined = df.join(d, df[column] == d["_mb_id"], "left")
    return joined.select(
        *[F.col("_mb_orig").alias(c) if c == column else df[c] for c in df.columns]
    )
