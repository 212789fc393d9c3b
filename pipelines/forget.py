"""The forget job: delete users, items and edges from a finished run, as a new run version.

Steps (:func:`forget`):

1. Requests already applied (an ``audit/forget-<request_id>.json`` exists) are skipped; when
   none is left nothing is written (idempotence).
2. Original ids are mapped through the current version's dictionary; unknown ids are counted
   in the audit, not fatal (they are still scrubbed from the quarantine and verified absent).
3. Affected leaves: the leaves whose training interactions (each in its user's leaf, as in
   :func:`pipelines.train_stage.leaf_interactions`) include a deleted one, or whose core
   (``partition/assignment``) or halo (``partition/halo_nodes``) holds a deleted node.
4. Distill-to-delete per affected leaf inside Spark tasks
   (:func:`pipelines.bridge_forget.unlearn_leaves_from`), the current global ego vectors as the
   teacher. Unaffected leaves keep their vectors: each contributes the current global vector of
   its nodes, weighted by the node's interaction count in the leaf, and the copies of shared
   nodes are re-averaged with :func:`pipelines.aggregate.weighted_mean_by_node` (the
   training rule).
5. The retained graph is written as the new version's ``ingest`` (interactions, dictionary and
   quarantine without the deleted elements) and ``partition`` tables; ``aggregate``,
   ``recommend``, ``evaluate`` (and ``export`` with the faiss index, when the run has one) are
   recomputed by the run's own stage bodies (:data:`pipelines.run.STAGES`) on the new version.
   Recommendations equal to an edge deleted by this or an earlier batch are dropped. ``_work``
   checkpoints are not carried: they hold pre-deletion training state.
6. :func:`pipelines.forget_verify.verify_erased` scans every file of the new version for this
   batch's ids (dense and original) and, through the tombstone hashes, for every earlier
   batch's original ids; any hit fails the job and the version is discarded (``CURRENT`` unchanged).
7. Tombstones are written, ``CURRENT`` is switched (:mod:`pipelines.forget_versions`), one audit
   record per request is written, and the superseded version is purged (its files still hold
   the deleted data) unless ``ForgetSettings.purge_previous`` is False.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.aggregate import weighted_mean_by_node
from pipelines.bridge import LEAF_LOG
from pipelines.bridge_forget import DELETED, LeafForgetSettings, unlearn_leaves_from
from pipelines.config import PipelineConfig
from pipelines.forget_requests import ID, KIND, OTHER_ID, REQUEST_ID, TIMESTAMP, Requests
from pipelines.forget_verify import DeletedSet, raw_names_deleted, verify_erased
from pipelines.forget_versions import (
    commit_version,
    current_version,
    new_version_dir,
    purge_version,
)
from pipelines.leaf_training import leaf_nodes
from pipelines.schema import ITEM, LEAF_ID, NODE_ID, ORIGINAL_ID, USER, VECTOR
from pipelines.schema import KIND as NODE_KIND
from pipelines.stages import read_marker, run_stage
from pipelines.tombstones import (
    drop_tombstoned,
    read_tombstone_keys,
    tombstone_key,
    tombstones_folder,
    write_tombstones,
)
from pipelines.train_stage import (
    EGO,
    LEAF_LOGS,
    TRAINED_CONFIG,
    TRAINED_SECTIONS,
    leaf_interactions,
)

log = logging.getLogger("graphpipe.forget")

AUDIT = "audit"
SPLIT = "split"
_TRAINED = TRAINED_SECTIONS
# Keys that say how a job runs, not what the model is: a run trained with 2 threads or on a
# GPU can be forgotten from with 1 thread or on a CPU.
EXECUTION_ONLY = frozenset({"train.threads", "train.device"})


class ForgetError(RuntimeError):
    """The run cannot be forgotten from (missing stages, a config that does not match)."""


class VerificationFailed(RuntimeError):
    """Deleted elements remained in the new version; it was discarded."""


@dataclass(frozen=True)
class ForgetSettings:
    """Distill-to-delete knobs (:class:`gnn.unlearn.UnlearnConfig`) and the purge policy.

    ``trainable_hops`` 0 (only deleted users and the endpoints of deleted interactions move;
    the rest of the graph keeps the trained vectors) is the default because it was measured
    better on full Gowalla, 0.5% of edges, 8 leaves, 30 steps (Recall@20 / deleted-edge AUROC;
    rerun on the retained data 0.1401 / 0.9311): every row trainable 0.1315 / 0.9420 (utility
    0.94), 1 hop 0.1312 / 0.9416, 0 hops 0.1391 / 0.9478 (at lr 1e-2: 0.1368 / 0.9255), no
    distillation 0.1409 / 0.9601.
    """

    steps: int = 30
    lr: float = 5e-3
    alpha: float = 0.5
    beta: float = 1.0
    batch_size: int = 8192
    trainable_hops: int = 0
    purge_previous: bool = True


@dataclass
class ForgetResult:
    status: str  # "applied" | "already_applied"
    version: Path | None
    applied: list[str]
    skipped: list[str]
    leaves_retrained: list[int] = field(default_factory=list)
    leaves_total: int = 0
    verification: dict[str, Any] = field(default_factory=dict)
    unknown: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def audit_path(run_dir: Path, request_id: str) -> Path:
    return Path(run_dir) / AUDIT / f"forget-{request_id}.json"


def applied_request_ids(run_dir: str | Path) -> set[str]:
    """Request ids with an audit record (already applied)."""
    root = Path(run_dir) / AUDIT
    return {p.stem[len("forget-") :] for p in root.glob("forget-*.json")}


# --------------------------------------------------------------------------- resolution


@dataclass(frozen=True)
class _Resolved:
    deleted: DeletedSet
    unknown: dict[str, int]  # request id -> unknown rows


def _resolve(
    spark: SparkSession, requests: Requests, dictionary: DataFrame, train_pairs: DataFrame
) -> _Resolved:
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
    return _Resolved(deleted, unknown)


# --------------------------------------------------------------------------- filters


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


def _deleted_flag(spark: SparkSession, df: DataFrame, d: DeletedSet) -> DataFrame:
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


def _scrub_raw(df: DataFrame, d: DeletedSet) -> DataFrame:
    """Quarantined rows (``raw`` line) without any that names a deleted id or edge.

    Tokens as in :mod:`pipelines.forget_verify`; checked in Spark tasks with Python sets (a
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


# --------------------------------------------------------------------------- stage bodies


def _write_counts(df: DataFrame, path: Path) -> int:
    df.write.parquet(str(path))
    return int(df.sparkSession.read.parquet(str(path)).count())


def _ingest_body(spark: SparkSession, cur: Path, d: DeletedSet, out: Path) -> dict[str, Any]:
    src = cur / "ingest"
    counts: dict[str, Any] = {}
    inter = spark.read.parquet(str(src / "interactions"))
    counts["accepted"] = _write_counts(drop_deleted_edges(spark, inter, d), out / "interactions")
    dictionary = spark.read.parquet(str(src / "dictionary"))
    counts["dictionary"] = _write_counts(
        drop_deleted_nodes(spark, dictionary, d), out / "dictionary"
    )
    if (src / "rejected").is_dir():
        rejected = spark.read.parquet(str(src / "rejected"))
        counts["rejected"] = _write_counts(_scrub_raw(rejected, d), out / "rejected")
    return counts


def _partition_body(spark: SparkSession, cur: Path, d: DeletedSet, out: Path) -> dict[str, Any]:
    src = cur / "partition"
    counts: dict[str, Any] = {}
    for name in ("assignment", "halo_nodes"):
        if (src / name).is_dir():
            df = drop_deleted_nodes(spark, spark.read.parquet(str(src / name)), d)
            counts[name] = _write_counts(df, out / name)
    if (src / "halo_edges").is_dir():
        df = drop_deleted_edges(spark, spark.read.parquet(str(src / "halo_edges")), d)
        counts["halo_edges"] = _write_counts(df, out / "halo_edges")
    if (src / "leaf_stats").is_dir():
        shutil.copytree(src / "leaf_stats", out / "leaf_stats")
    return counts


@dataclass
class _Unlearned:
    leaves_retrained: list[int]
    leaves_total: int
    leaf_logs: list[dict[str, Any]]


def _affected_leaves(spark: SparkSession, cur: Path, flagged: DataFrame, d: DeletedSet) -> set[int]:
    leaves = {
        int(r[LEAF_ID]) for r in flagged.where(F.col(DELETED)).select(LEAF_ID).distinct().collect()
    }
    for name in ("assignment", "halo_nodes"):
        path = cur / "partition" / name
        if path.is_dir() and (d.users or d.items):
            table = spark.read.parquet(str(path))
            holders = table.join(
                drop_deleted_nodes(spark, table, d), [NODE_KIND, NODE_ID, LEAF_ID], "left_anti"
            )
            leaves |= {int(r[LEAF_ID]) for r in holders.select(LEAF_ID).distinct().collect()}
    return leaves


def _train_body(
    spark: SparkSession,
    cfg: PipelineConfig,
    cur: Path,
    d: DeletedSet,
    settings: ForgetSettings,
    out: Path,
    state: _Unlearned,
) -> dict[str, Any]:
    """New ego table: affected leaves unlearned, other leaves' vectors kept, shared re-averaged."""
    parts = cfg.spark.shuffle_partitions
    edges = _deleted_flag(spark, leaf_interactions(spark, cur), d).persist()
    try:
        affected = _affected_leaves(spark, cur, edges, d)
        state.leaves_total = edges.select(LEAF_ID).distinct().count()
        state.leaves_retrained = sorted(affected)
        ego = spark.read.parquet(str(cur / "train" / EGO))
        members = leaf_nodes(edges.select(LEAF_ID, USER, ITEM))
        gone_nodes = [("user", int(x)) for x in d.users] + [("item", int(x)) for x in d.items]
        gone = spark.createDataFrame(gone_nodes, f"{NODE_KIND} string, {NODE_ID} long").withColumn(
            "_gone", F.lit(True)
        )
        init = (
            members.join(ego, [NODE_KIND, NODE_ID])
            .join(F.broadcast(gone), [NODE_KIND, NODE_ID], "left")
            .select(
                LEAF_ID,
                NODE_KIND,
                NODE_ID,
                VECTOR,
                F.coalesce("_gone", F.lit(False)).alias(DELETED),
            )
        )
        ids = [int(x) for x in state.leaves_retrained]
        hit = F.col(LEAF_ID).isin(ids) if ids else F.lit(False)
        leaf_settings = LeafForgetSettings(
            dim=cfg.model.dim,
            layers=cfg.model.layers,
            steps=settings.steps,
            lr=settings.lr,
            alpha=settings.alpha,
            beta=settings.beta,
            batch_size=settings.batch_size,
            seed=cfg.run.seed,
            device=cfg.train.device,
            threads=cfg.train.threads,
            trainable_hops=settings.trainable_hops,
        )
        unlearned = unlearn_leaves_from(edges.where(hit), init.where(hit), leaf_settings).persist()
        kept_edges = edges.where(~hit & ~F.col(DELETED))
        w_user = (
            kept_edges.groupBy(LEAF_ID, F.col(USER).alias(NODE_ID))
            .count()
            .withColumn(NODE_KIND, F.lit(USER))
        )
        w_item = (
            kept_edges.groupBy(LEAF_ID, F.col(ITEM).alias(NODE_ID))
            .count()
            .withColumn(NODE_KIND, F.lit(ITEM))
        )
        kept = (
            w_user.unionByName(w_item)
            .join(ego, [NODE_KIND, NODE_ID])
            .select(NODE_KIND, NODE_ID, F.col("count").cast("double").alias("w"), VECTOR)
        )
        rows = unlearned.select(NODE_KIND, NODE_ID, "w", VECTOR).unionByName(kept)
        new_ego = weighted_mean_by_node(rows, dim=cfg.model.dim, partitions=parts)
        n = _write_counts(new_ego.select(NODE_KIND, NODE_ID, VECTOR), out / EGO)
        state.leaf_logs = sorted(
            (
                json.loads(r[LEAF_LOG])
                for r in unlearned.where(F.col(LEAF_LOG).isNotNull()).select(LEAF_LOG).collect()
            ),
            key=lambda x: x["leaf_id"],
        )
        unlearned.unpersist()
    finally:
        edges.unpersist()
    if (cur / "train" / LEAF_LOGS).is_dir():
        shutil.copytree(cur / "train" / LEAF_LOGS, out / LEAF_LOGS)
    out_counts: dict[str, Any] = {"vectors": n, "leaves_retrained": len(state.leaves_retrained)}
    recorded = ((read_marker(cur, "train") or {}).get("extra") or {}).get(TRAINED_CONFIG)
    if recorded is not None:  # the model is still the one trained with that config
        out_counts[TRAINED_CONFIG] = recorded
    return out_counts


def _drop_deleted_recommendations(
    spark: SparkSession, out: Path, tombstones: Path, d: DeletedSet
) -> None:
    """Remove recommendations equal to an edge deleted by this or an earlier batch (a deleted
    pair is no longer a 'seen' training pair, so the model may recommend it again)."""
    path = out / "recommendations"
    if not path.is_dir():
        return
    recs = spark.read.parquet(str(path))
    kept = drop_tombstoned(
        spark, recs, tombstones, user_col="user_id", item_col="item_id", extra_keys=d.keys
    )
    if kept.count() == recs.count():
        return
    tmp = out / f".recommendations.tmp-{uuid.uuid4().hex[:8]}"
    kept.write.parquet(str(tmp))
    shutil.rmtree(path)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- the job


def _stage(vdir: Path, cur: Path, name: str, body: Any, spark: SparkSession) -> None:
    marker = read_marker(cur, name)
    assert marker is not None
    run_stage(vdir, name, str(marker["config_hash"]), body, spark=spark)


def trained_config_differences(recorded: dict[str, Any], cfg: PipelineConfig) -> list[str]:
    """Keys (with both values) where ``cfg`` differs from the config a run was trained with.

    ``recorded`` is the ``train`` marker's flat config (:meth:`PipelineConfig.flat_sections`).
    :data:`EXECUTION_ONLY` keys are ignored, and so is a key the run's config lacks while
    ``cfg`` holds its default (a field added by a later version of this software, whose
    default keeps the earlier behaviour).
    """
    current = cfg.flat_sections(*_TRAINED)
    defaults = PipelineConfig().flat_sections(*_TRAINED)
    out = []
    for key in sorted(set(current) | set(recorded)):
        if key in EXECUTION_ONLY:
            continue
        if key not in recorded:
            if current.get(key) != defaults.get(key):
                out.append(f"{key}: run has none, now {current.get(key)!r}")
        elif recorded[key] != current.get(key):
            out.append(f"{key}: run {recorded[key]!r}, now {current.get(key)!r}")
    return out


def _check_trained_config(cur: Path, cfg: PipelineConfig) -> None:
    """Raise :class:`ForgetError` unless ``cfg`` describes the model the run trained."""
    trained = read_marker(cur, "train") or {}
    if trained.get("config_hash") == cfg.section_hash(*_TRAINED):
        return
    recorded = (trained.get("extra") or {}).get(TRAINED_CONFIG)
    if recorded is None:  # a run from before configs were recorded: only the hash is known
        raise ForgetError(
            f"{cur / 'train'}: trained with another config (sections "
            f"{', '.join(_TRAINED)} differ); pass the run's config"
        )
    diffs = trained_config_differences(recorded, cfg)
    if diffs:
        shown = "; ".join(diffs[:8]) + (f"; and {len(diffs) - 8} more" if len(diffs) > 8 else "")
        raise ForgetError(
            f"{cur / 'train'}: trained with another config ({shown}); pass the run's config"
        )
    log.info(
        "forget: config matches the run's key by key, apart from %s and fields added "
        "since (at their defaults); accepted",
        ", ".join(sorted(EXECUTION_ONLY)),
    )


def forget(
    spark: SparkSession,
    cfg: PipelineConfig,
    run_dir: str | Path,
    requests: Requests,
    *,
    settings: ForgetSettings | None = None,
) -> ForgetResult:
    """Apply a validated request file to the current version of a finished run.

    Returns:
        :class:`ForgetResult`; ``status`` ``already_applied`` (nothing written) when every
        request id has an audit record.

    Raises:
        ForgetError: The current version lacks a finished train or aggregate stage, or
            ``cfg`` is not the config the run was trained with.
        VerificationFailed: A deleted element remained in the new version (discarded).
    """
    from pipelines.run import STAGES

    started = time.perf_counter()
    settings = settings or ForgetSettings()
    run_dir = Path(run_dir)
    done = applied_request_ids(run_dir)
    new_ids = set(requests.request_ids) - done
    if not new_ids:
        return ForgetResult(
            "already_applied",
            None,
            [],
            sorted(done & set(requests.request_ids)),
            seconds=time.perf_counter() - started,
        )
    todo = requests.only(new_ids)
    cur = current_version(run_dir)
    for needed in ("ingest", "train", "aggregate"):
        if read_marker(cur, needed) is None:
            raise ForgetError(
                f"{cur / needed}: stage '{needed}' has not finished; forget needs a finished run"
            )
    _check_trained_config(cur, cfg)
    dictionary = spark.read.parquet(str(cur / "ingest" / "dictionary"))
    inter = spark.read.parquet(str(cur / "ingest" / "interactions"))
    resolved = _resolve(spark, todo, dictionary, inter.select(USER, ITEM))
    tomb = [
        (k, tombstone_key(k, a, b), rid)
        for rid, k, a, b in todo.rows[[REQUEST_ID, KIND, ID, OTHER_ID]].itertuples(
            index=False, name=None
        )
    ]
    batch_keys = frozenset(t[1] for t in tomb)
    tombstones = tombstones_folder(run_dir, cfg.ingest.tombstones_dir)
    d = dataclasses.replace(resolved.deleted, keys=batch_keys | read_tombstone_keys(tombstones))
    vdir, final = new_version_dir(run_dir)
    state = _Unlearned([], 0, [])
    try:
        _stage(vdir, cur, "ingest", lambda out: _ingest_body(spark, cur, d, out), spark)
        if read_marker(cur, "partition") is not None:
            _stage(vdir, cur, "partition", lambda out: _partition_body(spark, cur, d, out), spark)
        _stage(
            vdir,
            cur,
            "train",
            lambda out: _train_body(spark, cfg, cur, d, settings, out, state),
            spark,
        )
        for name in STAGES:  # every downstream stage the run has, by the run's own bodies
            if name in ("ingest", "partition", "train") or read_marker(cur, name) is None:
                continue
            body = STAGES[name].body

            def run_body(out: Path, body: Any = body, name: str = name) -> Any:
                result = body(spark, cfg, vdir, out)
                if name == "recommend":
                    _drop_deleted_recommendations(spark, out, tombstones, d)
                return result

            _stage(vdir, cur, name, run_body, spark)
        if (cur / "config.yaml").is_file():
            shutil.copy2(cur / "config.yaml", vdir / "config.yaml")
        forget_dir = vdir / "forget"
        forget_dir.mkdir()
        (forget_dir / "leaf_logs.json").write_text(json.dumps(state.leaf_logs, indent=1))
        report = verify_erased(vdir, d)
        if not report.ok:
            raise VerificationFailed(
                f"{len(report.leaks)} leak(s) in the new version (discarded): "
                + "; ".join(report.leaks[:5])
            )
    except BaseException:
        shutil.rmtree(vdir, ignore_errors=True)
        raise
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_tombstones(
        tombstones,
        final.name,
        pd.DataFrame(tomb, columns=["kind", "key", "request_id"])
        .assign(applied_at=now)
        .drop_duplicates("key"),
    )
    previous = cur
    meta = {
        "version": final.name,
        "parent": "base" if previous == run_dir else previous.name,
        "request_ids": sorted(new_ids),
        "created_at": now,
        "leaves_retrained": state.leaves_retrained,
        "leaves_total": state.leaves_total,
        "verification": report.as_dict(),
        "settings": asdict(settings),
    }
    commit_version(run_dir, vdir, final, meta)
    seconds = time.perf_counter() - started
    audit_root = run_dir / AUDIT
    audit_root.mkdir(parents=True, exist_ok=True)
    times = dict(zip(todo.rows[REQUEST_ID], todo.rows[TIMESTAMP], strict=True))
    for rid in sorted(new_ids):
        record = {
            "request_id": rid,
            "requested_at": times[rid],
            "applied_at": now,
            "version": final.name,
            "elements": int((todo.rows[REQUEST_ID] == rid).sum()),
            "unknown": resolved.unknown.get(rid, 0),
            "leaves_retrained": state.leaves_retrained,
            "leaves_total": state.leaves_total,
            "verification": report.as_dict(),
            "seconds": round(seconds, 3),
        }
        tmp = audit_root / f".forget-{rid}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.write_text(json.dumps(record, indent=2))
        os.replace(tmp, audit_path(run_dir, rid))
    if settings.purge_previous:
        purge_version(run_dir, previous)
    log.info(
        "forget: %s applied, version %s, leaves %s/%d, %.1f s",
        sorted(new_ids),
        final.name,
        state.leaves_retrained,
        state.leaves_total,
        seconds,
    )
    return ForgetResult(
        "applied",
        final,
        sorted(new_ids),
        sorted(done & set(requests.request_ids)),
        state.leaves_retrained,
        state.leaves_total,
        report.as_dict(),
        dict(resolved.unknown),
        seconds,
    )
