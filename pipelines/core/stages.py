"""Resumable stages: write to a temporary folder, rename atomically, then a marker.

Layout of a run::

    <run_dir>/config.yaml               resolved config
    <run_dir>/<stage>/<table>/           Parquet tables of the stage
    <run_dir>/<stage>/_STAGE.json        marker: counts, config hash, seconds

A stage whose marker exists with the same config hash is skipped on rerun. A stage killed
midway leaves only ``<run_dir>/.<stage>.tmp-*`` which is deleted on the next attempt, so
partial output is never visible under ``<run_dir>/<stage>/``.
"""

from __future__ import annotations

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


def require_stages(run_dir: str | Path, stage: str, needs: Sequence[str]) -> None:
    """Raise :class:`MissingStageError` naming the first upstream stage without a marker."""
    for upstream in needs:
        if read_marker(run_dir, upstream) is None:
            raise MissingStageError(
                f"{Path(run_dir) / upstream}: stage '{upstream}' has not finished in this run "
                f"directory; run it before '{stage}'"
            )


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
) -> StageResult:
    """Run ``body(tmp_dir)`` unless the stage already finished with the same config hash.

    ``body`` writes its tables under ``tmp_dir`` and returns a mapping whose ``int`` values are
    row counts (recorded in the marker) and whose other values are kept as ``extra``.
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
