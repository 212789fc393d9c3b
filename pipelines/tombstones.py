"""Tombstones: what the forget job deleted, kept so that later ingests cannot bring it back.

``<run_dir>/tombstones/batch-<version>.parquet`` (one file per applied batch, written to a temp
name and renamed)::

    kind        user | item | edge
    key         sha256 hex of ``kind \\0 id`` (edge: ``edge \\0 user id \\0 item id``)
    request_id  the request that deleted it
    applied_at  ISO 8601 UTC

Ids are stored hashed, not in clear: the tombstone list answers "was this deleted?" without
being a list of the deleted people (small integer ids can still be found by trying them all;
a deployment that needs more adds a secret salt here).

:func:`drop_tombstoned` filters ingested rows (original ids, before the dictionary is built).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Collection
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

TOMBSTONES = "tombstones"
SEP = "\x00"


def tombstone_key(kind: str, first: str, other: str = "") -> str:
    """sha256 hex of ``kind \\0 id`` (``edge \\0 user \\0 item`` for an edge)."""
    text = SEP.join([kind, first, other] if kind == "edge" else [kind, first])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_tombstones(run_dir: str | Path, name: str, rows: pd.DataFrame) -> Path:
    """Write one batch (``kind, key, request_id, applied_at``) atomically; returns the file.

    Schema:
        rows: ``kind, key, request_id, applied_at`` (strings).
    """
    root = Path(run_dir) / TOMBSTONES
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"batch-{name}.parquet"
    tmp = root / f".batch-{name}.tmp-{uuid.uuid4().hex[:8]}"
    table = pa.Table.from_pandas(
        rows[["kind", "key", "request_id", "applied_at"]].astype(str), preserve_index=False
    )
    pq.write_table(table, tmp)
    os.replace(tmp, final)
    return final


def read_tombstone_keys(run_dir: str | Path) -> set[str]:
    """Every tombstone key of a run (driver-side: one short hash per deleted element)."""
    root = Path(run_dir) / TOMBSTONES
    keys: set[str] = set()
    for f in sorted(root.glob("batch-*.parquet")):
        keys |= set(pq.read_table(f, columns=["key"]).column("key").to_pylist())
    return keys


def drop_tombstoned(
    spark: SparkSession,
    rows: DataFrame,
    run_dir: str | Path,
    *,
    user_col: str = "user",
    item_col: str = "item",
    extra_keys: Collection[str] = (),
) -> DataFrame:
    """Remove rows whose user, item or (user, item) edge was deleted by a forget request.

    Call it on ingested rows that still carry ORIGINAL ids (strings), before dense ids are
    assigned. ``extra_keys`` are tombstone keys not written yet (the batch being applied).
    Without tombstones the input is returned unchanged.

    Schema:
        rows: ``<user_col>``, ``<item_col>`` (original ids, castable to string) among others.
        returns: the same columns, tombstoned rows removed.
    """
    root = Path(run_dir) / TOMBSTONES
    stored = any(root.glob("batch-*.parquet"))
    if not stored and not extra_keys:
        return rows
    keys = spark.createDataFrame([(k,) for k in sorted(extra_keys)], "key string")
    if stored:
        keys = keys.unionByName(spark.read.parquet(str(root / "batch-*.parquet")).select("key"))
    keys = keys.distinct()
    u = F.col(user_col).cast("string")
    i = F.col(item_col).cast("string")
    tagged = rows.select(
        "*",
        F.sha2(F.concat_ws(SEP, F.lit("user"), u), 256).alias("_ts_u"),
        F.sha2(F.concat_ws(SEP, F.lit("item"), i), 256).alias("_ts_i"),
        F.sha2(F.concat_ws(SEP, F.lit("edge"), u, i), 256).alias("_ts_e"),
    )
    for col in ("_ts_u", "_ts_i", "_ts_e"):
        tagged = tagged.join(F.broadcast(keys), tagged[col] == keys["key"], "left_anti")
    return tagged.drop("_ts_u", "_ts_i", "_ts_e")
