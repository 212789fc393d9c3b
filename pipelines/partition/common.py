"""Helpers shared by the partition modules: seeded hash columns and lineage checkpoints."""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

log = logging.getLogger("graphpipe.partition")

_UNIT = 1 << 30

# Internal column names (short on purpose: they travel through every shuffle).
U, V, W = "u", "v", "w"  # adjacency rows u -> v with integer weight w (both directions)
NODE, VW, PART, LABEL = "node", "vw", "part", "label"


def seeded_hash(seed: int, salt: int, *cols: str | Column) -> Column:
    """64-bit xxhash of (seed, salt, cols): depends on values only, never on row order."""
    return F.xxhash64(
        F.lit(int(seed)), F.lit(int(salt)), *[F.col(c) if isinstance(c, str) else c for c in cols]
    )


def hash_fraction_below(seed: int, salt: int, col: str, fraction: float) -> Column:
    """True for about ``fraction`` of the values of ``col``, chosen by a seeded hash."""
    if fraction >= 1.0:
        return F.lit(True)
    return F.pmod(seeded_hash(seed, salt, col), F.lit(_UNIT)) < F.lit(int(fraction * _UNIT))


def salt(*parts: int) -> int:
    """Fold small integers (stage, level, iteration) into one hash salt."""
    out = 0
    for p in parts:
        out = out * 1_000_003 + int(p)
    return out


class Checkpointer:
    """Persist intermediate tables and cut their lineage every ``interval`` iterations.

    Lineage is cut by writing Parquet under ``work_dir`` and reading it back: the files are
    compact, survive executor loss, and keep memory free on small machines. Persisted copies
    made between checkpoints are released when the next one replaces them.
    """

    def __init__(
        self,
        spark: SparkSession,
        work_dir: str,
        *,
        interval: int,
        storage_level: StorageLevel = StorageLevel.MEMORY_AND_DISK,
    ) -> None:
        self.spark = spark
        self.work_dir = work_dir.rstrip("/")
        self.interval = max(1, interval)
        self.storage_level = storage_level
        self._written = 0
        self._persisted: dict[str, DataFrame] = {}
        self._steps: dict[str, int] = {}

    def write(self, df: DataFrame, name: str) -> DataFrame:
        """Write ``df`` as Parquet and return it read back (lineage cut, nothing cached)."""
        self._written += 1
        path = f"{self.work_dir}/{self._written:05d}-{name}"
        df.write.mode("overwrite").parquet(path)
        return self.spark.read.parquet(path)

    def keep(self, df: DataFrame, name: str, *, eager: bool = True) -> DataFrame:
        """Persist ``df`` under ``name``, releasing the previous table of that name.

        With ``eager=False`` the table is computed by its first use; only for tables that do
        not derive from the one they replace.
        """
        df = df.persist(self.storage_level)
        if eager:
            df.count()
        old = self._persisted.pop(name, None)
        if old is not None:
            old.unpersist()
        self._persisted[name] = df
        return df

    def step(self, df: DataFrame, name: str) -> DataFrame:
        """Per-round state: lineage cut every round, reliably every ``interval`` rounds.

        Rounds reuse the previous state several times (joins and aggregates), so keeping the
        lineage would grow query plans geometrically. Every ``interval``-th round writes
        Parquet (survives executor loss); the rounds between use ``localCheckpoint`` (kept by
        the executors at ``storage_level``).
        """
        n = self._steps.get(name, 0) + 1
        self._steps[name] = n
        if n % self.interval == 0:
            out = self.write(df, name)
        else:
            out = df.localCheckpoint(eager=True, storageLevel=self.storage_level)
        self.release(name)
        return out

    def release(self, name: str) -> None:
        old = self._persisted.pop(name, None)
        if old is not None:
            old.unpersist()

    def release_all(self) -> None:
        """Release every persisted table (files under ``work_dir`` stay)."""
        for df in self._persisted.values():
            df.unpersist()
        self._persisted.clear()


def small(df: DataFrame, is_small: bool) -> DataFrame:
    """``df`` with a broadcast hint when it is a node table small enough to broadcast."""
    return F.broadcast(df) if is_small else df


def shuffle_partitions(spark: SparkSession) -> int:
    """The session's ``spark.sql.shuffle.partitions`` (Spark's default 200 when unset)."""
    return int(spark.conf.get("spark.sql.shuffle.partitions") or "200")


def cache_by_source(adjacency: DataFrame, ck: Checkpointer, name: str) -> DataFrame:
    """Adjacency hash-partitioned by ``u`` and persisted for the rounds of one level.

    Per-node aggregates (``groupBy(u, ...)``) over it then need no shuffle; with the node
    state broadcast, a round moves no edge-sized data between tasks.
    """
    return ck.keep(adjacency.repartition(shuffle_partitions(ck.spark), U), name)


def new_work_dir(spark: SparkSession, work_dir: str | None) -> str:
    """A fresh folder for intermediate Parquet: under ``work_dir`` or the checkpoint dir."""
    base = work_dir or spark.sparkContext.getCheckpointDir()
    if not base:
        raise ValueError("partition.work_dir: not set and the SparkContext has no checkpoint dir")
    return f"{base.rstrip('/')}/graphpipe-partition-{uuid.uuid4().hex[:12]}"


def remove_dir(spark: SparkSession, path: str) -> None:
    """Delete a folder on the local disk or any Hadoop file system."""
    if path.startswith("file:"):
        path = path[len("file:") :]
    if "://" not in path:
        shutil.rmtree(Path(path), ignore_errors=True)
        return
    jvm = spark.sparkContext._jvm  # type: ignore[attr-defined]
    assert jvm is not None, "a classic (JVM-backed) SparkSession is required"
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    conf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[attr-defined]
    hpath.getFileSystem(conf).delete(hpath, True)
