"""Resumable stages: write to a temporary folder, rename atomically, then a marker.

Layout of a run::

    <run_dir>/config.yaml               resolved config
    <run_dir>/<stage>/<table>/           Parquet tables of the stage
    <run_dir>/<stage>/_STAGE.json        marker: counts, config hash, seconds

A stage whose marker exists with the same config hash is skipped on rerun. A stage killed
midway leaves only ``<run_dir>/.<stage>.tmp-*`` which is deleted on the next attempt, so
partial output is never visible under ``<run_dir>/<stage>/``. Scratch a stage resumes from
(``<run_dir>/_work/<stage>-<hash>``, :func:`scratch_dir`) is kept until its marker is written,
then deleted (:func:`remove_scratch`).

A stage's key (:class:`StageKey`) is the hash of the config sections its output depends on and
of its upstream stages' keys; the marker records both, so :func:`require_stages` can refuse an
upstream stage made with another config and name the section that differs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("graphpipe.stages")

MARKER = "_STAGE.json"
WORK = "_work"
RERUN_STALE = "--rerun-stale"


@dataclass(frozen=True)
class StageResult:
    """What a finished stage left behind."""

    name: str
    path: Path
    counts: dict[str, int]
    seconds: float
    skipped: bool
    extra: dict[str, Any]


class MissingStageError(RuntimeError):
    """A stage's input, an upstream stage, has not finished in this run directory."""


class StaleStageError(MissingStageError):
    """An upstream stage finished with another config than the one the job was given."""


@dataclass(frozen=True)
class StageKey:
    """What a stage's output depends on.

    Attributes:
        own: Hash of the config sections of the stage, together
            (:meth:`pipelines.core.config.PipelineConfig.section_hash`).
        sections: Hash of each of those sections alone (names the section that differs).
        upstream: Key hash of each upstream stage the stage reads.
    """

    own: str
    sections: dict[str, str]
    upstream: dict[str, str]

    @property
    def hash(self) -> str:
        """The marker's ``config_hash``: ``own`` alone for a stage without upstream stages."""
        if not self.upstream:
            return self.own
        blob = json.dumps({"sections": self.own, "upstream": self.upstream}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def matches(self, marker: Mapping[str, Any]) -> bool:
        """Whether a stage's marker was made with this key. A marker from before upstream keys
        were recorded (no ``upstream``) matches when its hash is ``own``: its sections were
        those of the stage and every stage before it already."""
        made = marker.get("config_hash")
        return made == self.hash or ("upstream" not in marker and made == self.own)

    def record(self) -> dict[str, Any]:
        """What the marker keeps besides the hash (see :func:`stale_reason`)."""
        return {"sections": dict(self.sections), "upstream": dict(self.upstream)}


def stale_reason(marker: Mapping[str, Any], key: StageKey) -> str:
    """Why a stage's marker does not match ``key``: the differing sections, when known."""
    recorded = marker.get("sections")
    if isinstance(recorded, dict):
        diff = [s for s in key.sections if recorded.get(s) != key.sections[s]]
        if diff:
            return f"{', '.join(diff)} differ{'s' if len(diff) == 1 else ''}"
    was = marker.get("upstream")
    if isinstance(was, dict):
        for name in key.upstream:
            if name not in was:
                return f"made without stage {name}"
            if was[name] != key.upstream[name]:
                return f"upstream stage {name} differs"
        for name in was:
            if name not in key.upstream:
                return f"made with stage {name}, which this config does not read"
    return "config differs"


def require_stages(
    run_dir: str | Path,
    stage: str,
    needs: Sequence[str],
    keys: Mapping[str, StageKey] | None = None,
) -> None:
    """Check that every upstream stage in ``needs`` finished (and with its key in ``keys``).

    Raises:
        MissingStageError: Naming the first upstream stage without a marker.
        StaleStageError: Naming the first upstream stage whose marker has another config hash
            than its key in ``keys``, and the config section that differs.
    """
    keys = keys or {}
    for upstream in needs:
        marker = read_marker(run_dir, upstream)
        if marker is None:
            raise MissingStageError(
                f"{Path(run_dir) / upstream}: stage '{upstream}' has not finished in this run "
                f"directory; run it before '{stage}'"
            )
        key = keys.get(upstream)
        if key is not None and not key.matches(marker):
            raise StaleStageError(
                f"stage {upstream} was made with a different config ({stale_reason(marker, key)})"
                f"; rerun it or pass {RERUN_STALE} ({Path(run_dir) / upstream})"
            )


def scratch_dir(run_dir: str | Path, stage: str, key: str) -> Path:
    """The folder a stage keeps its resumable scratch in until its marker is written."""
    return Path(run_dir) / WORK / f"{stage}-{key}"


def remove_scratch(run_dir: str | Path, stage: str) -> list[Path]:
    """Delete every scratch folder of ``stage`` (and ``_work`` once empty); returns them."""
    work = Path(run_dir) / WORK
    removed = sorted(work.glob(f"{stage}-*"))
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    if work.is_dir() and not any(work.iterdir()):
        work.rmdir()
    return removed


def read_marker(run_dir: str | Path, stage: str) -> dict[str, Any] | None:
    marker = Path(run_dir) / stage / MARKER
    if not marker.is_file():
        return None
    return dict(json.loads(marker.read_text()))


def stage_path(run_dir: str | Path, stage: str) -> Path:
    return Path(run_dir) / stage


def run_stage(
    run_dir: str | Path,
    stage: str,
    config_hash: str,
    body: Callable[[Path], Mapping[str, Any]],
    *,
    spark: Any = None,
    record: Mapping[str, Any] | None = None,
) -> StageResult:
    """Run ``body(tmp_dir)`` unless the stage already finished with the same config hash.

    ``body`` writes its tables under ``tmp_dir`` and returns a mapping whose ``int`` values are
    row counts (recorded in the marker) and whose other values are kept as ``extra``.
    ``record``: more marker fields (:meth:`StageKey.record`).
    """
    run_dir = Path(run_dir)
    final = run_dir / stage
    marker = read_marker(run_dir, stage)
    if marker is not None and marker.get("config_hash") == config_hash:
        log.info("stage %s: already complete (%s), skipped", stage, marker.get("counts"))
        return StageResult(
            stage, final, marker["counts"], marker["seconds"], True, marker.get("extra", {})
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in run_dir.glob(f".{stage}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = run_dir / f".{stage}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    log.info("stage %s: start", stage)
    if spark is not None:
        spark.sparkContext.setJobDescription(f"graphpipe stage: {stage}")
    started = time.perf_counter()
    try:
        out = dict(body(tmp))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if spark is not None:
            spark.sparkContext.setJobDescription(None)
    seconds = time.perf_counter() - started
    counts = {k: int(v) for k, v in out.items() if isinstance(v, int) and not isinstance(v, bool)}
    extra = {k: v for k, v in out.items() if k not in counts}
    payload = {
        "stage": stage,
        "config_hash": config_hash,
        "counts": counts,
        "extra": extra,
        "seconds": round(seconds, 3),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(record or {}),
    }
    (tmp / MARKER).write_text(json.dumps(payload, indent=2, default=str))
    if final.exists():
        # An older version (other config) is replaced: move it aside first, then swap.
        old = run_dir / f".{stage}.old-{uuid.uuid4().hex[:8]}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    log.info("stage %s: done in %.1f s, counts %s", stage, seconds, counts)
    return StageResult(stage, final, counts, seconds, False, extra)
