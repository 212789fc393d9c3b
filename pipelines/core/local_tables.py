"""Small driver-side tables (leaf paths, per-leaf stats, move allowances) as DataFrames.

``spark.createDataFrame(list_of_tuples)`` ships the rows as a Python RDD that a Python worker
must unpickle; the first such job of a session waits for that worker (4.8 s of the 1M-edge
R-MAT partition stage, with about 10 ms of CPU). An Arrow table is decoded by the JVM itself, so
these tables cost a plain Spark job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema


def local_frame(
    spark: SparkSession, rows: Sequence[Sequence[Any]], schema: T.StructType
) -> DataFrame:
    """``rows`` (tuples in ``schema``'s column order; structs as dicts) as a DataFrame via Arrow.

    For tables that the driver already holds and that stay small (O(leaves), O(leaves^2)).
    """
    arrow_schema = to_arrow_schema(schema)
    width = len(schema.fields)
    if any(len(row) != width for row in rows):
        raise ValueError(f"rows: every row must have {width} values ({schema.simpleString()})")
    columns = [[row[i] for row in rows] for i in range(width)]
    table = pa.Table.from_arrays(
        [pa.array(col, type=field.type) for col, field in zip(columns, arrow_schema, strict=True)],
        schema=arrow_schema,
    )
    return spark.createDataFrame(table)
