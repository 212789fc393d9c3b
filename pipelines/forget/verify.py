"""Verification of a forget: scan every file of a version for the deleted ids and edges.

Rules (column names are those the pipeline writes):

* Parquet, dense ids: ``user`` against deleted users, ``item`` and ``similar`` against deleted
  items, ``(user, item)`` rows against deleted edges, ``(kind, node_id)`` against both.
* Parquet, original ids: ``user_id``, ``item_id``, ``similar_id``, ``(user_id, item_id)``,
  ``(kind, original_id)``; ``export/ann/item_ids.parquet`` (``node_id``, ``original_id``) is
  an item table.
* Parquet ``raw`` (quarantined input lines): no token may be a deleted user or item id, and no
  line may hold both ids of a deleted edge.
* JSON: no string value or key equal to a deleted original id.
* Other text (``config.yaml``...): no token equal to a deleted original id that is not a plain
  integer (integers there are settings and figures, not ids).
* Tombstones: original-id columns hashed against the keys of every batch applied so far.
* faiss indexes: ``ntotal`` equals the rows of the id map beside it (no stale item vectors).
* ``.crc`` checksums and ``_SUCCESS`` markers hold no data and are skipped; any other binary
  file fails the verification (it cannot be checked).

The report holds counts only, never the ids.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from pipelines.core.schema import ITEM, KIND, NODE_ID, ORIGINAL_ID, USER
from pipelines.forget.tombstones import tombstone_key

USER_DENSE = ("user",)
ITEM_DENSE = ("item", "similar")
USER_ORIG = ("user_id",)
ITEM_ORIG = ("item_id", "similar_id")
_TOKEN = re.compile(r"[^\s,;:\t|\"'\[\]{}()=]+")


@dataclass(frozen=True)
class DeletedSet:
    """What must not remain: dense and original ids of deleted users, items and edges."""

    users: frozenset[int] = frozenset()
    items: frozenset[int] = frozenset()
    edges: frozenset[tuple[int, int]] = frozenset()
    user_ids: frozenset[str] = frozenset()
    item_ids: frozenset[str] = frozenset()
    edge_ids: frozenset[tuple[str, str]] = frozenset()
    keys: frozenset[str] = frozenset()
    """Tombstone keys (:func:`pipelines.forget.tombstones.tombstone_key`) of every batch so far:
    original-id columns are also checked against them, so a later version is verified
    against all earlier deletions without keeping their ids in clear."""


@dataclass
class VerificationReport:
    files_scanned: int = 0
    files_skipped: int = 0
    parquet_rows_scanned: int = 0
    leaks: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.leaks

    def as_dict(self) -> dict[str, Any]:
        return {
            "files_scanned": self.files_scanned,
            "files_skipped": self.files_skipped,
            "parquet_rows_scanned": self.parquet_rows_scanned,
            "leaks": len(self.leaks),
            "passed": self.ok,
        }


def _files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield path


def _isin(values: list[Any], bad: frozenset[Any]) -> int:
    return sum(1 for v in values if v is not None and v in bad) if bad else 0


def _check_table(cols: dict[str, list[Any]], d: DeletedSet, ann_map: bool) -> dict[str, int]:
    hits: dict[str, int] = {}

    def add(name: str, n: int) -> None:
        if n:
            hits[name] = hits.get(name, 0) + n

    for c in USER_DENSE:
        if c in cols:
            add(c, _isin(cols[c], d.users))
    for c in ITEM_DENSE:
        if c in cols:
            add(c, _isin(cols[c], d.items))
    for c in USER_ORIG:
        if c in cols:
            add(c, _isin([None if v is None else str(v) for v in cols[c]], d.user_ids))
    for c in ITEM_ORIG:
        if c in cols:
            add(c, _isin([None if v is None else str(v) for v in cols[c]], d.item_ids))
    if USER in cols and ITEM in cols and d.edges:
        add("user,item", _isin(list(zip(cols[USER], cols[ITEM], strict=True)), d.edges))
    if "user_id" in cols and "item_id" in cols and d.edge_ids:
        pairs = list(zip(cols["user_id"], cols["item_id"], strict=True))
        add("user_id,item_id", _isin(pairs, d.edge_ids))
    kinds = cols.get(KIND)
    if ann_map and kinds is None:
        kinds = [ITEM] * len(next(iter(cols.values()), []))
    if kinds is not None:
        for c, bad_user, bad_item in (
            (NODE_ID, d.users, d.items),
            (ORIGINAL_ID, d.user_ids, d.item_ids),
        ):
            if c in cols:
                n = sum(
                    1
                    for k, v in zip(kinds, cols[c], strict=True)
                    if v is not None
                    and ((k == USER and v in bad_user) or (k == ITEM and v in bad_item))
                )
                add(f"kind,{c}", n)
    if d.keys:
        _check_keys(cols, d.keys, kinds, add)
    if "raw" in cols:
        bad_tokens = d.user_ids | d.item_ids
        add("raw", sum(raw_names_deleted(x, bad_tokens, d.edge_ids) for x in cols["raw"]))
    return hits


def raw_names_deleted(raw: Any, ids: frozenset[str], edges: frozenset[tuple[str, str]]) -> bool:
    """Whether a raw input line has a token equal to a deleted id, or both ids of an edge."""
    if raw is None:
        return False
    tokens = set(_TOKEN.findall(str(raw)))
    return bool(tokens & ids) or any(u in tokens and i in tokens for u, i in edges)


def _check_keys(
    cols: dict[str, list[Any]], keys: frozenset[str], kinds: list[Any] | None, add: Any
) -> None:
    def hits(kind_of: list[Any], values: list[Any]) -> int:
        return sum(
            1
            for k, v in zip(kind_of, values, strict=True)
            if v is not None and k in (USER, ITEM) and tombstone_key(str(k), str(v)) in keys
        )

    for c in USER_ORIG:
        if c in cols:
            add(f"{c} (tombstoned)", hits([USER] * len(cols[c]), cols[c]))
    for c in ITEM_ORIG:
        if c in cols:
            add(f"{c} (tombstoned)", hits([ITEM] * len(cols[c]), cols[c]))
    if kinds is not None and ORIGINAL_ID in cols:
        add("kind,original_id (tombstoned)", hits(kinds, cols[ORIGINAL_ID]))
    if "user_id" in cols and "item_id" in cols:
        n = sum(
            1
            for u, i in zip(cols["user_id"], cols["item_id"], strict=True)
            if u is not None and i is not None and tombstone_key("edge", str(u), str(i)) in keys
        )
        add("user_id,item_id (tombstoned)", n)


def _scan_parquet(path: Path, d: DeletedSet, report: VerificationReport) -> None:
    pf = pq.ParquetFile(path)
    ann_map = path.name == "item_ids.parquet"
    for batch in pf.iter_batches(batch_size=65536):
        cols = {name: batch.column(i).to_pylist() for i, name in enumerate(batch.schema.names)}
        report.parquet_rows_scanned += batch.num_rows
        for col, n in _check_table(cols, d, ann_map).items():
            report.leaks.append(f"{path}: column {col}: {n} rows")


def _walk_json(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _walk_json(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk_json(v)
    elif isinstance(value, str):
        yield value


def _scan_text(path: Path, text: str, d: DeletedSet, report: VerificationReport) -> None:
    bad = d.user_ids | d.item_ids
    if path.suffix == ".json":
        try:
            strings = set(_walk_json(json.loads(text)))
        except json.JSONDecodeError:
            strings = set()
            for line in text.splitlines():  # JSON lines
                if line.strip():
                    strings |= set(_walk_json(json.loads(line)))
        n = len(strings & bad)
    else:
        tokens = set(_TOKEN.findall(text))
        n = len({t for t in tokens & bad if not t.lstrip("-").isdigit()})
    if n:
        report.leaks.append(f"{path}: {n} deleted ids in text")


def _scan_faiss(path: Path, report: VerificationReport) -> None:
    import faiss

    index = faiss.read_index(str(path))
    id_map = path.parent / "item_ids.parquet"
    rows = pq.ParquetFile(id_map).metadata.num_rows if id_map.is_file() else -1
    if index.ntotal != rows:
        report.leaks.append(f"{path}: {index.ntotal} vectors but {rows} rows in {id_map.name}")


def verify_erased(root: str | Path, deleted: DeletedSet) -> VerificationReport:
    """Scan every file under ``root`` (a version folder) for the deleted elements."""
    report = VerificationReport()
    for path in _files(Path(root)):
        if path.suffix == ".crc" or path.name == "_SUCCESS":
            report.files_skipped += 1
            continue
        report.files_scanned += 1
        head = path.read_bytes()[:4]
        if head == b"PAR1":
            _scan_parquet(path, deleted, report)
        elif path.suffix == ".faiss":
            _scan_faiss(path, report)
        else:
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                report.leaks.append(f"{path}: binary file that cannot be checked")
                continue
            _scan_text(path, text, deleted, report)
    return report


def as_int_set(values: np.ndarray | list[int]) -> frozenset[int]:
    return frozenset(int(v) for v in values)
