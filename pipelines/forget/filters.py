"""Which dense ids a forget request names, and the DataFrame filters that drop them.

:func:`resolve_requests` maps a request file's original ids through a run's dictionary (a small
set, collected to the driver); the filters remove deleted users, items and edges from any
table of the run (DataFrame in, DataFrame out), and :func:`scrub_raw` removes quarantined lines
that name them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.core.schema import ITEM, LEAF_ID, NODE_ID, ORIGINAL_ID, USER
from pipelines.core.schema import KIND as NODE_KIND
from pipelines.forget.requests import ID, KIND, OTHER_ID, REQUEST_ID, Requests
from pipelines.forget.seam import DELETED
from pipelines.forget.verify import DeletedSet, raw_names_deleted

__all__ = [
    "ResolvedRequests",
    "deleted_flag",
    "drop_deleted_edges",
    "drop_deleted_nodes",
    "resolve_requests",
    "scrub_raw",
]


@dataclass(frozen=True)
class ResolvedRequests:
    deleted: DeletedSet
    unknown: dict[str, int]  # request id -> unknown rows


def resolve_requests(
    spark: SparkSession, requests: Requests, dictionary: DataFrame, train_pairs: DataFrame
) -> ResolvedRequests:
    """Dense ids of the requested elements (small: collected to the driver)."""
    rows = requests.rows
    wanted = pd.concat(
        [
            pd.DataFrame({NODE_KIND: "user", ORIGINAL_ID: rows.loc[rows[KIND] != "item", ID]}),
            pd.DataFrame({NODE_KIND: "item", ORIGINAL_ID: rows.loc[rows[KIND] == "item", ID]}),
            pd.DataFrame(
                {NODE_KIND: "item", ORIGINAL_ID: rows.loc[rows[KIND] == "edge", OTHER_ID]}
            ),
        ]
    ).drop_duplicates()
    wanted_df = spark.createDataFrame(wanted, f"{NODE_KIND} string, {ORIGINAL_ID} string")
    found = {
        (r[NODE_KIND], r[ORIGINAL_ID]): int(r[NODE_ID])
        for r in dictionary.join(F.broadcast(wanted_df), [NODE_KIND, ORIGINAL_ID]).collect()
    }
    users: set[int] = set()
    items: set[int] = set()
    edges: set[tuple[int, int]] = set()
    unknown: dict[str, int] = {}
    for r in rows.itertuples(index=False):
        rid, kind, first, other = (getattr(r, c) for c in (REQUEST_ID, KIND, ID, OTHER_ID))
        if kind == "user" and ("user", first) in found:
            users.add(found[("user", first)])
        elif kind == "item" and ("item", first) in found:
            items.add(found[("item", first)])
        elif kind == "edge" and ("user", first) in found and ("item", other) in found:
            edges.add((found[("user", first)], found[("item", other)]))
        else:
            unknown[rid] = unknown.get(rid, 0) + 1
    if edges:  # an edge that is no interaction of the run is unknown too
        pairs = spark.createDataFrame(sorted(edges), f"{USER} long, {ITEM} long")
        real = {
            (int(r[USER]), int(r[ITEM]))
            for r in train_pairs.join(F.broadcast(pairs), [USER, ITEM]).distinct().collect()
        }
        for r in rows[rows[KIND] == "edge"].itertuples(index=False):
            u, i = found.get(("user", r.id)), found.get(("item", r.other_id))
            if u is not None and i is not None and (u, i) not in real:
                unknown[r.request_id] = unknown.get(r.request_id, 0) + 1
    deleted = DeletedSet(
        users=frozenset(users),
        items=frozenset(items),
        edges=frozenset(edges),
        user_ids=frozenset(rows.loc[rows[KIND] == "user", ID]),
        item_ids=frozenset(rows.loc[rows[KIND] == "item", ID]),
        edge_ids=frozenset(
            zip(
                rows.loc[rows[KIND] == "edge", ID],
                rows.loc[rows[KIND] == "edge", OTHER_ID],
                strict=True,
            )
        ),
    )
    return ResolvedRequests(deleted, unknown)


def _id_frame(spark: SparkSession, ids: frozenset[int], column: str) -> DataFrame:
    return spark.createDataFrame([(int(x),) for x in sorted(ids)], f"{column} long")


def _edge_frame(spark: SparkSession, edges: frozenset[tuple[int, int]]) -> DataFrame:
    return spark.createDataFrame(sorted(edges), f"{USER} long, {ITEM} long")


def drop_deleted_edges(
    spark: SparkSession, df: DataFrame, d: DeletedSet, *, user: str = USER, item: str = ITEM
) -> DataFrame:
    """Rows of ``df`` whose user, item and (user, item) are all retained.

    Schema:
        df: ``<user> long``, ``<item> long`` (dense ids) among others; returns the same.
    """
    if d.users:
        bad = _id_frame(spark, d.users, "_fu")
        df = df.join(F.broadcast(bad), df[user] == bad["_fu"], "left_anti")
    if d.items:
        bad = _id_frame(spark, d.items, "_fi")
        df = df.join(F.broadcast(bad), df[item] == bad["_fi"], "left_anti")
    if d.edges:
        bad = _edge_frame(spark, d.edges).toDF("_eu", "_ei")
        cond = (df[user] == bad["_eu"]) & (df[item] == bad["_ei"])
        df = df.join(F.broadcast(bad), cond, "left_anti")
    return df


def drop_deleted_nodes(spark: SparkSession, df: DataFrame, d: DeletedSet) -> DataFrame:
    """Rows of a ``(kind, node_id)`` table whose node is not deleted.

    Schema:
        df: ``kind string``, ``node_id long`` among others; returns the same.
    """
    rows = [("user", int(x)) for x in d.users] + [("item", int(x)) for x in d.items]
    if not rows:
        return df
    bad = spark.createDataFrame(rows, "_fk string, _fn long")
    cond = (df[NODE_KIND] == bad["_fk"]) & (df[NODE_ID] == bad["_fn"])
    return df.join(F.broadcast(bad), cond, "left_anti")


def deleted_flag(spark: SparkSession, df: DataFrame, d: DeletedSet) -> DataFrame:
    """``df`` (``leaf_id, user, item``) plus ``deleted`` bool (user, item or edge deleted)."""
    flag: Column = F.lit(False)
    if d.users:
        flag = flag | F.col(USER).isin([int(x) for x in sorted(d.users)])
    if d.items:
        flag = flag | F.col(ITEM).isin([int(x) for x in sorted(d.items)])
    out = df.withColumn(DELETED, flag)
    if d.edges:
        bad = _edge_frame(spark, d.edges).withColumn("_edge_gone", F.lit(True))
        out = out.join(F.broadcast(bad), [USER, ITEM], "left").select(
            LEAF_ID,
            USER,
            ITEM,
            (F.col(DELETED) | F.coalesce("_edge_gone", F.lit(False))).alias(DELETED),
        )
    return out


def scrub_raw(df: DataFrame, d: DeletedSet) -> DataFrame:
    """Quarantined rows (``raw`` line) without any that names a deleted id or edge.

    Tokens as in :mod:`pipelines.forget.verify`; checked in Spark tasks with Python sets (a
    Column expression per edge would grow too deep for large batches).

    Schema:
        df: ``raw string`` among others; returns the same columns.
    """
    bad = frozenset(d.user_ids | d.item_ids)
    edges = frozenset(d.edge_ids)
    if not bad and not edges:
        return df
    schema = df.schema

    def fn(batches: Iterable[pd.DataFrame]) -> Iterable[pd.DataFrame]:
        for pdf in batches:
            keep = [not raw_names_deleted(raw, bad, edges) for raw in pdf["raw"]]
            yield pdf.iloc[np.flatnonzero(np.asarray(keep, dtype=bool))]

    return df.mapInPandas(fn, schema=schema)
