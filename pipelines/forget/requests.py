"""Deletion requests of the forget job: read a CSV or Parquet file and validate all of it.

Columns (a header row is required for CSV; extra columns are an error)::

    request_id   [A-Za-z0-9._-]{1,128}; one request may span several rows (several ids)
    kind         user | item | edge
    id           original id of the user (user, edge) or of the item (item)
    other_id     edge: the original item id; empty for user and item requests
    timestamp    ISO 8601 date-time (``2026-11-27T03:00:00Z``) or integer epoch seconds

The file is validated whole before anything is touched: the first problem raises
:class:`RequestFileError` naming the file, the row (1-based data row; CSV line = row + 1) and the
field. Driver-side by design: request files are small (a few thousand rows at most).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

REQUEST_ID, KIND, ID, OTHER_ID, TIMESTAMP = "request_id", "kind", "id", "other_id", "timestamp"
COLUMNS = (REQUEST_ID, KIND, ID, OTHER_ID, TIMESTAMP)
KINDS = ("user", "item", "edge")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
MAX_ROWS = 1_000_000


class RequestFileError(ValueError):
    """A malformed request file; the message names the file, the row and the field."""


@dataclass(frozen=True)
class Requests:
    """A validated request file: one row per deleted element, ``COLUMNS`` as strings."""

    path: Path
    rows: pd.DataFrame

    @property
    def request_ids(self) -> list[str]:
        return sorted(set(self.rows[REQUEST_ID]))

    def only(self, request_ids: set[str]) -> Requests:
        """The rows of the given requests."""
        return Requests(self.path, self.rows[self.rows[REQUEST_ID].isin(request_ids)].copy())


def _load(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise RequestFileError(f"{path}: no such request file")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(path)
            df = df.astype(object).where(df.notna(), None)
            return df.map(lambda v: None if v is None else str(v))
        return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except RequestFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse failure is a malformed file
        raise RequestFileError(f"{path}: cannot read the request file: {exc}") from exc


def _parse_timestamp(value: str) -> bool:
    if re.fullmatch(r"\d{1,12}", value):
        return True
    try:
        pd.Timestamp(value)
    except (ValueError, TypeError):
        return False
    return bool(re.match(r"^\d{4}-\d{2}-\d{2}", value))


def read_requests(path: str | Path) -> Requests:
    """Read and validate a whole request file (CSV, or Parquet by its suffix).

    Raises:
        RequestFileError: Missing file, unreadable file, missing or unknown columns, no rows,
            or the first bad field, as ``<file>: row <n>: <field>: <problem>``.
    """
    path = Path(path)
    df = _load(path)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise RequestFileError(
            f"{path}: missing column(s) {', '.join(missing)} (expected {', '.join(COLUMNS)})"
        )
    extra = [str(c) for c in df.columns if c not in COLUMNS]
    if extra:
        raise RequestFileError(f"{path}: unknown column(s) {', '.join(extra)}")
    if df.empty:
        raise RequestFileError(f"{path}: no request rows")
    if len(df) > MAX_ROWS:
        raise RequestFileError(f"{path}: {len(df)} rows; at most {MAX_ROWS} per file")
    df = df[list(COLUMNS)].copy()
    for c in COLUMNS:
        df[c] = [("" if v is None else str(v).strip()) for v in df[c]]
    for n, row in enumerate(df.itertuples(index=False), start=1):
        where = f"{path}: row {n}"
        rid, kind, first, other, ts = (getattr(row, c) for c in COLUMNS)
        if not _SAFE_ID.match(rid):
            raise RequestFileError(
                f"{where}: {REQUEST_ID}: {rid!r} is not 1-128 characters "
                "of letters, digits, '.', '_' or '-'"
            )
        if kind not in KINDS:
            raise RequestFileError(f"{where}: {KIND}: {kind!r} is not one of {', '.join(KINDS)}")
        if not first:
            raise RequestFileError(f"{where}: {ID}: empty")
        if kind == "edge" and not other:
            raise RequestFileError(f"{where}: {OTHER_ID}: empty; an edge needs the item id")
        if kind != "edge" and other:
            raise RequestFileError(f"{where}: {OTHER_ID}: must be empty for a {kind} request")
        if not ts or not _parse_timestamp(ts):
            raise RequestFileError(
                f"{where}: {TIMESTAMP}: {ts!r} is not an ISO 8601 date-time or epoch seconds"
            )
    kinds = df.groupby(REQUEST_ID)[TIMESTAMP].nunique()
    if (kinds > 1).any():
        rid = str(kinds[kinds > 1].index[0])
        raise RequestFileError(f"{path}: {REQUEST_ID} {rid}: rows with different timestamps")
    return Requests(path, df.reset_index(drop=True))
