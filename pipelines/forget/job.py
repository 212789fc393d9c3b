"""The forget job: delete users, items and edges from a finished run, as a new run version.

Steps (:func:`forget`):

1. Requests already applied (an ``audit/forget-<request_id>.json`` exists) are skipped; when
   none is left nothing is written (idempotence).
2. Original ids are mapped through the current version's dictionary; unknown ids are counted
   in the audit, not fatal (they are still scrubbed from the quarantine and verified absent).
3. Affected leaves: the leaves whose training interactions (each in its user's leaf, as in
   :func:`pipelines.train.stage.leaf_interactions`) include a deleted one, or whose core
   (``partition/assignment``) or halo (``partition/halo_nodes``) holds a deleted node.
4. Distill-to-delete per affected leaf inside Spark tasks
   (:func:`pipelines.forget.seam.unlearn_leaves_from`), the current global ego vectors as the
   teacher. Unaffected leaves keep their vectors: each contributes the current global vector of
   its nodes, weighted by the node's interaction count in the leaf, and the copies of shared
   nodes are re-averaged with :func:`pipelines.aggregate.stage.weighted_mean_by_node` (the
   training rule).
5. The retained graph is written as the new version's ``ingest`` (interactions, dictionary and
   quarantine without the deleted elements) and ``partition`` tables; ``aggregate``,
   ``recommend``, ``evaluate`` (and ``export`` with the faiss index, when the run has one) are
   recomputed by the run's own stage bodies (:data:`pipelines.registry.STAGES`) on the new version.
   Recommendations equal to an edge deleted by this or an earlier batch are dropped. ``_work``
   checkpoints are not carried: they hold pre-deletion training state.
6. :func:`pipelines.forget.verify.verify_erased` scans every file of the new version for this
   batch's ids (dense and original) and, through the tombstone hashes, for every earlier
   batch's original ids; any hit fails the job and the version is discarded (``CURRENT`` unchanged).
7. Tombstones are written, ``CURRENT`` is switched (:mod:`pipelines.core.versions`), one audit
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql import SparkSession

from pipelines.core.config import PipelineConfig
from pipelines.core.schema import ITEM, USER
from pipelines.core.stages import read_marker, run_stage
from pipelines.core.versions import (
    commit_version,
    current_version,
    new_version_dir,
    purge_version,
)
from pipelines.forget.filters import resolve_requests
from pipelines.forget.requests import ID, KIND, OTHER_ID, REQUEST_ID, TIMESTAMP, Requests
from pipelines.forget.stages import (
    ForgetSettings,
    Unlearned,
    drop_deleted_recommendations,
    ingest_body,
    partition_body,
    train_body,
)
from pipelines.forget.tombstones import (
    read_tombstone_keys,
    tombstone_key,
    tombstones_folder,
    write_tombstones,
)
from pipelines.forget.verify import DeletedSet, VerificationReport, verify_erased
from pipelines.train.stage import (
    TRAINED_CONFIG,
    TRAINED_SECTIONS,
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


# --------------------------------------------------------------------------- the job


def _stage(vdir: Path, cur: Path, name: str, body: Any, spark: SparkSession) -> None:
    marker = read_marker(cur, name)
    assert marker is not None
    record: dict[str, Any] = {k: marker[k] for k in ("sections", "upstream") if k in marker}
    run_stage(vdir, name, str(marker["config_hash"]), body, spark=spark, record=record)


def trained_config_differences(recorded: dict[str, Any], cfg: PipelineConfig) -> list[str]:
    """Keys (with both values) where ``cfg`` differs from the config a run was trained with.

    ``recorded`` is the ``train`` marker's flat config (:meth:`PipelineConfig.flat_sections`).
    :data:`EXECUTION_ONLY` keys are ignored, and so is a key the run's config lacks while
    ``cfg`` holds its default (a field added by a later version of this software, whose
    default keeps the earlier behaviour), and a key ``cfg`` no longer has (a field removed
    since, such as ``train.eval_every``, which never changed the model).
    """
    current = cfg.flat_sections(*_TRAINED)
    defaults = PipelineConfig().flat_sections(*_TRAINED)
    out = []
    for key in sorted(set(current) | set(recorded)):
        if key in EXECUTION_ONLY or key not in current:
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
    started = time.perf_counter()
    settings = settings or ForgetSettings()
    run_dir = Path(run_dir)
    done = applied_request_ids(run_dir)
    new_ids = set(requests.request_ids) - done
    skipped = sorted(done & set(requests.request_ids))
    if not new_ids:
        return ForgetResult(
            "already_applied", None, [], skipped, seconds=time.perf_counter() - started
        )
    todo = requests.only(new_ids)
    cur = current_version(run_dir)
    _check_current(cur, cfg)
    dictionary = spark.read.parquet(str(cur / "ingest" / "dictionary"))
    inter = spark.read.parquet(str(cur / "ingest" / "interactions"))
    resolved = resolve_requests(spark, todo, dictionary, inter.select(USER, ITEM))
    tomb = _tombstone_rows(todo)
    tombstones = tombstones_folder(run_dir, cfg.ingest.tombstones_dir)
    keys = frozenset(t[1] for t in tomb) | read_tombstone_keys(tombstones)
    d = dataclasses.replace(resolved.deleted, keys=keys)
    vdir, final = new_version_dir(run_dir)
    state = Unlearned([], 0, [])
    report = _build_version(spark, cfg, cur, vdir, d, settings, state, tombstones)
    record = _commit(
        run_dir, cur, (vdir, final), tombstones, tomb, sorted(new_ids), state, report, settings
    )
    seconds = time.perf_counter() - started
    _write_audit(run_dir, todo, sorted(new_ids), resolved.unknown, record, seconds)
    if settings.purge_previous:
        purge_version(run_dir, cur)
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
        skipped,
        state.leaves_retrained,
        state.leaves_total,
        report.as_dict(),
        dict(resolved.unknown),
        seconds,
    )


def _commit(
    run_dir: Path,
    cur: Path,
    dirs: tuple[Path, Path],
    tombstones: Path,
    tomb: list[tuple[str, str, str]],
    request_ids: list[str],
    state: Unlearned,
    report: VerificationReport,
    settings: ForgetSettings,
) -> dict[str, Any]:
    """Write the tombstones and switch ``CURRENT`` to the new version (step 7).

    ``dirs``: the version's working folder and its final name. Returns what every audit record
    of the batch repeats (version, time, leaves, verification).
    """
    vdir, final = dirs
    record = {
        "version": final.name,
        "applied_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "leaves_retrained": state.leaves_retrained,
        "leaves_total": state.leaves_total,
        "verification": report.as_dict(),
    }
    write_tombstones(
        tombstones,
        final.name,
        pd.DataFrame(tomb, columns=["kind", "key", "request_id"])
        .assign(applied_at=record["applied_at"])
        .drop_duplicates("key"),
    )
    meta = {
        "version": final.name,
        "parent": "base" if cur == run_dir else cur.name,
        "request_ids": request_ids,
        "created_at": record["applied_at"],
        **{k: record[k] for k in ("leaves_retrained", "leaves_total", "verification")},
        "settings": asdict(settings),
    }
    commit_version(run_dir, vdir, final, meta)
    return record


def _tombstone_rows(todo: Requests) -> list[tuple[str, str, str]]:
    """``(kind, tombstone key, request_id)`` of every requested element."""
    rows = todo.rows[[REQUEST_ID, KIND, ID, OTHER_ID]].itertuples(index=False, name=None)
    return [(k, tombstone_key(k, a, b), rid) for rid, k, a, b in rows]


def _check_current(cur: Path, cfg: PipelineConfig) -> None:
    """Raise :class:`ForgetError` unless ``cur`` is a finished run trained with ``cfg``."""
    for needed in ("ingest", "train", "aggregate"):
        if read_marker(cur, needed) is None:
            raise ForgetError(
                f"{cur / needed}: stage '{needed}' has not finished; forget needs a finished run"
            )
    _check_trained_config(cur, cfg)


def _build_version(
    spark: SparkSession,
    cfg: PipelineConfig,
    cur: Path,
    vdir: Path,
    d: DeletedSet,
    settings: ForgetSettings,
    state: Unlearned,
    tombstones: Path,
) -> VerificationReport:
    """Write every stage of the new version ``vdir`` from ``cur`` without ``d``; verify it.

    Steps 4-6 of the module docstring. ``vdir`` is removed when anything fails.
    """
    from pipelines.registry import STAGES

    try:
        _stage(vdir, cur, "ingest", lambda out: ingest_body(spark, cur, d, out), spark)
        if read_marker(cur, "partition") is not None:
            _stage(vdir, cur, "partition", lambda out: partition_body(spark, cur, d, out), spark)
        _stage(
            vdir,
            cur,
            "train",
            lambda out: train_body(spark, cfg, cur, d, settings, out, state),
            spark,
        )
        for name in STAGES:  # every downstream stage the run has, by the run's own bodies
            if name in ("ingest", "partition", "train") or read_marker(cur, name) is None:
                continue
            body = STAGES[name].body

            def run_body(out: Path, body: Any = body, name: str = name) -> Any:
                result = body(spark, cfg, vdir, out)
                if name == "recommend":
                    drop_deleted_recommendations(spark, out, tombstones, d)
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
    return report


def _write_audit(
    run_dir: Path,
    todo: Requests,
    request_ids: list[str],
    unknown: dict[str, int],
    record: dict[str, Any],
    seconds: float,
) -> None:
    """One ``audit/forget-<request_id>.json`` per applied request, each written atomically."""
    audit_root = run_dir / AUDIT
    audit_root.mkdir(parents=True, exist_ok=True)
    times = dict(zip(todo.rows[REQUEST_ID], todo.rows[TIMESTAMP], strict=True))
    for rid in request_ids:
        out = {
            "request_id": rid,
            "requested_at": times[rid],
            "applied_at": record["applied_at"],
            "version": record["version"],
            "elements": int((todo.rows[REQUEST_ID] == rid).sum()),
            "unknown": unknown.get(rid, 0),
            "leaves_retrained": record["leaves_retrained"],
            "leaves_total": record["leaves_total"],
            "verification": record["verification"],
            "seconds": round(seconds, 3),
        }
        tmp = audit_root / f".forget-{rid}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.write_text(json.dumps(out, indent=2))
        os.replace(tmp, audit_path(run_dir, rid))
