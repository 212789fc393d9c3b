"""The SparkSession factory: local sessions fork their Python workers with torch loaded."""

import sys

from pipelines.session import DAEMON_MODULE_KEY
from pipelines.spark_daemon import preload


def test_local_workers_start_with_torch_imported(spark):
    assert spark.conf.get(DAEMON_MODULE_KEY) == "pipelines.spark_daemon"

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
