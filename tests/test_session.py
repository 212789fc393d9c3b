"""The SparkSession factory: local sessions fork their Python workers with torch loaded."""

import sys

from pipelines.core.session import DAEMON_MODULE_KEY
from pipelines.core.spark_daemon import preload


def test_local_workers_start_with_torch_imported(spark):
    assert spark.conf.get(DAEMON_MODULE_KEY) == "pipelines.core.spark_daemon"

    def fn(batches):
        import pandas as pd

        loaded = "torch._dynamo" in sys.modules  # before this task imported anything
        for _ in batches:
            pass
        yield pd.DataFrame({"loaded": [loaded]})

    rows = spark.range(4, numPartitions=2).mapInPandas(fn, "loaded boolean").collect()
    assert [r.loaded for r in rows] == [True, True]


def test_preload_skips_a_missing_module():
    assert preload(("json", "no_such_module_here")) == ["json"]


def test_local_frame_keeps_the_schema_and_nested_values(spark):
    import pytest
    from pyspark.sql import types as T

    from pipelines.core.local_tables import local_frame

    inner = T.StructType([T.StructField("level", T.IntegerType(), False)])
    schema = T.StructType(
        [
            T.StructField("leaf_id", T.IntegerType(), False),
            T.StructField("load", T.LongType(), True),
            T.StructField("path", T.ArrayType(inner, False), False),
        ]
    )
    rows = [(0, 5, [{"level": 1}, {"level": 2}]), (1, None, [])]
    df = local_frame(spark, rows, schema)
    assert df.schema == schema
    got = [(r.leaf_id, r.load, [p.level for p in r.path]) for r in df.orderBy("leaf_id").collect()]
    assert got == [(0, 5, [1, 2]), (1, None, [])]
    assert local_frame(spark, [], schema).count() == 0
    with pytest.raises(ValueError, match="3 values"):
        local_frame(spark, [(0, 1)], schema)
