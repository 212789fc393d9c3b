"""Versions of a run: the base run directory, ``versions/vN`` and the ``CURRENT`` pointer.

Layout::

    <run_dir>/ingest, partition, train, ...   the base version (what ``jobs.pipeline`` writes)
    <run_dir>/versions/vN/                    a full set of stage folders (same layout as the
                                              base) plus ``_VERSION.json``
    <run_dir>/CURRENT                         one line: ``versions/vN`` (absent: the base)

A new version is written under ``versions/.vN.tmp-*``, renamed to ``versions/vN`` and made
current by writing ``CURRENT.tmp-*`` and ``os.replace``-ing it over ``CURRENT`` (atomic on
POSIX), so a reader calling :func:`current_version` sees either the old or the new version,
never a partial one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

CURRENT = "CURRENT"
VERSIONS = "versions"
VERSION_MARKER = "_VERSION.json"
BASE_STAGES = (
    "ingest",
    "partition",
    "train",
    "aggregate",
    "recommend",
    "evaluate",
    "export",
    "_work",
)


def current_pointer(run_dir: str | Path) -> str | None:
    """The text of ``CURRENT`` (``versions/vN``), or None when the base is current."""
    path = Path(run_dir) / CURRENT
    if not path.is_file():
        return None
    text = path.read_text().strip()
    if not re.fullmatch(r"versions/v\d+", text):
        raise RuntimeError(f"{path}: malformed pointer {text!r} (expected versions/vN)")
    return text


def current_version(run_dir: str | Path) -> Path:
    """The folder holding the current outputs of a run (the base folder or ``versions/vN``)."""
    pointer = current_pointer(run_dir)
    return Path(run_dir) if pointer is None else Path(run_dir) / pointer


def run_root(folder: str | Path) -> Path:
    """The run's top folder for ``folder``, which is the top folder itself or ``versions/vN``
    (tombstones, audit records and ``CURRENT`` live in the top folder)."""
    folder = Path(folder)
    if folder.parent.name == VERSIONS and re.fullmatch(r"\.?v\d+(\.tmp-\w+)?", folder.name):
        return folder.parent.parent
    return folder


def version_number(run_dir: str | Path) -> int:
    """N of the current ``versions/vN`` (0 for the base)."""
    pointer = current_pointer(run_dir)
    return 0 if pointer is None else int(pointer.rsplit("v", 1)[1])


def new_version_dir(run_dir: str | Path) -> tuple[Path, Path]:
    """A fresh temp folder for the next version and its final path (stale temps removed)."""
    root = Path(run_dir) / VERSIONS
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".v*.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    taken = [int(p.name[1:]) for p in root.glob("v*") if p.name[1:].isdigit()]
    n = max([version_number(run_dir), *taken]) + 1
    tmp = root / f".v{n}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    return tmp, root / f"v{n}"


def commit_version(run_dir: str | Path, tmp: Path, final: Path, meta: dict[str, Any]) -> Path:
    """Write ``_VERSION.json``, rename ``tmp`` to ``final``, then switch ``CURRENT`` to it."""
    run_dir = Path(run_dir)
    (tmp / VERSION_MARKER).write_text(json.dumps(meta, indent=2, sort_keys=True))
    os.replace(tmp, final)
    pointer = run_dir / f".{CURRENT}.tmp-{uuid.uuid4().hex[:8]}"
    pointer.write_text(f"{VERSIONS}/{final.name}\n")
    os.replace(pointer, run_dir / CURRENT)
    return final


def purge_version(run_dir: str | Path, version_dir: Path) -> list[str]:
    """Delete a superseded version: ``versions/vN``, or the base's stage folders.

    Returns the removed paths relative to ``run_dir``.
    """
    run_dir = Path(run_dir)
    if version_dir.resolve() == current_version(run_dir).resolve():
        raise RuntimeError(f"{version_dir}: refusing to purge the current version")
    removed = []
    if version_dir.resolve() == run_dir.resolve():
        for name in BASE_STAGES:
            if (run_dir / name).exists():
                shutil.rmtree(run_dir / name)
                removed.append(name)
        for stale in run_dir.glob(".*.tmp-*"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
    elif version_dir.exists():
        shutil.rmtree(version_dir)
        removed.append(str(version_dir.relative_to(run_dir)))
    return removed
