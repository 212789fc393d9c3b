"""Tombstones: what the forget job deleted, kept so that later ingests cannot bring it back.

``<folder>/batch-<version>.parquet`` (one file per applied batch, written to a temp name and
renamed), where the folder is ``ingest.tombstones_dir`` or, when that is empty,
``<run_dir>/tombstones`` (:func:`tombstones_folder`)::

    kind        user | item | edge
    key         sha256 hex of ``kind \\0 id`` (edge: ``edge \\0 user id \\0 item id``)
    request_id  the request that deleted it
    applied_at  ISO 8601 UTC

Ids are stored hashed, not in clear: the tombstone list answers "was this deleted?" without
being a list of the deleted people (small integer ids can still be found by trying them all;
a deployment that needs more adds a secret salt here).

:func:`flag_tombstoned` marks ingested rows (original ids, before the dictionary is built) so
the ingest stage can drop and count them; :func:`drop_tombstoned` removes them.
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


def tombstones_folder(run_dir: str | Path, configured: str = "") -> Path:
    """The tombstone folder of a run: ``configured`` (``ingest.tombstones_dir``) when set,
    else ``<run_dir>/tombstones``. ``run_dir`` is the run's top folder, not a version."""
    return Path(configured) if configured else Path(run_dir) / TOMBSTONES


def write_tombstones(folder: str | Path, name: str, rows: pd.DataFrame) -> Path:
    """Write one batch (``kind, key, request_id, applied_at``) atomically; returns the file.

    Schema:
        rows: ``kind, key, request_id, applied_at`` (strings).
    """
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"batch-{name}.parquet"
    tmp = root / f".batch-{name}.tmp-{uuid.uuid4().hex[:8]}"
    table = pa.Table.from_pandas(
        rows[["kind", "key", "request_id", "applied_at"]].astype(str), preserve_index=False
    )
    pq.write_table(table, tmp)
    os.replace(tmp, final)
    return final


def read_tombstone_keys(folder: str | Path) -> set[str]:
    """Every tombstone key in a folder (driver-side: one short hash per deleted element)."""
    root = Path(folder)
    keys: set[str] = set()
    for f in sorted(root.glob("batch-*.parquet")):
        keys |= set(pq.read_table(f, columns=["key"]).column("key").to_pylist())
    return keys


TOMBSTONED = "_tombstoned"


def flag_tombstoned(
    spark: SparkSession,
    rows: DataFrame,
    folder: str | Path,
    *,
    user_col: str = "user",
    item_col: str = "item",
    extra_keys: Collection[str] = (),
) -> DataFrame | None:
    """Add a boolean ``_tombstoned``: the row's user, item or (user, item) edge was deleted.

    Call it on rows that still carry ORIGINAL ids (castable to string), before dense ids are
    assigned. ``extra_keys`` are tombstone keys not written yet (the batch being applied).
    Returns None when there is no tombstone at all (nothing to flag). The keys are broadcast:
    one 64-character hash per deleted element.

    Schema:
        rows: ``<user_col>``, ``<item_col>`` among others.
        returns: the same columns plus ``_tombstoned boolean`` (never null).
    """
    root = Path(folder)
    stored = any(root.glob("batch-*.parquet"))
    if not stored and not extra_keys:
        return None
    keys = spark.createDataFrame([(k,) for k in sorted(extra_keys)], "key string")
    if stored:
        keys = keys.unionByName(spark.read.parquet(str(root / "batch-*.parquet")).select("key"))
    keys = keys.distinct().withColumn("_hit", F.lit(True))
    u = F.col(user_col).cast("string")
    i = F.col(item_col).cast("string")
    hashes = {
        "_ts_u": F.sha2(F.concat_ws(SEP, F.lit("user"), u), 256),
        "_ts_i": F.sha2(F.concat_ws(SEP, F.lit("item"), i), 256),
        "_ts_e": F.sha2(F.concat_ws(SEP, F.lit("edge"), u, i), 256),
    }
    tagged = rows.select("*", *(h.alias(name) for name, h in hashes.items()))
    hits = []
    for name in hashes:
        found = keys.select(F.col("key").alias(name), F.col("_hit").alias(f"{name}_hit"))
        tagged = tagged.join(F.broadcast(found), name, "left")
        hits.append(F.coalesce(F.col(f"{name}_hit"), F.lit(False)))
    flag = hits[0] | hits[1] | hits[2]
    return tagged.withColumn(TOMBSTONED, flag).drop(*hashes, *(f"{name}_hit" for name in hashes))


def drop_tombstoned(
    spark: SparkSession,
    rows: DataFrame,
    folder: str | Path,
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
    flagged = flag_tombstoned(
        spark, rows, folder, user_col=user_col, item_col=item_col, extra_keys=extra_keys
    )
    if flagged is None:
        return rows
    return flagged.where(~F.col(TOMBSTONED)).drop(TOMBSTONED)
