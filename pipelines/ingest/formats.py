"""What each ingest format looks like: columns, id kinds, header names, delimiters.

The lowest layer of the ingest stage (no Spark jobs here). :class:`IngestError` lives here so
the readers can raise it; :mod:`pipelines.ingest.stage` re-exports it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipelines.core.config import IngestConfig
from pipelines.core.schema import DST, ITEM, REL, SRC, TS, USER, WEIGHT

# Column names the ingest stage adds beside those of pipelines.core.schema.
SPLIT = "split"
RAW_BYTES = "raw_bytes"
TRAIN, TEST = "train", "test"

# Header names accepted (case-insensitive) for each column of a file with a header row.
HEADER_ALIASES: dict[str, tuple[str, ...]] = {
    SRC: ("src", "source", "from", "u", "head", "h", "subject", "node1", "fromnodeid"),
    DST: ("dst", "target", "to", "v", "tail", "t", "object", "node2", "tonodeid"),
    REL: ("rel", "relation", "r", "predicate", "p"),
    USER: ("user", "user_id", "userid", "uid", "u"),
    ITEM: ("item", "item_id", "itemid", "iid", "i"),
    WEIGHT: ("weight", "w", "rating", "value"),
    TS: ("ts", "timestamp", "time", "t"),
}

FILE_EXTENSIONS = {
    ".parquet": "parquet",
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "text",
    ".tab": "tsv",
}
COMPRESSED = (".gz", ".bz2", ".deflate", ".zst", ".lz4", ".snappy")


class IngestError(Exception):
    """Bad input for the ingest stage: the message names the file and the problem."""


@dataclass(frozen=True)
class Layout:
    """Columns of one ingest format, in file order.

    Attributes:
        fmt: ``lightgcn | pairs | edges | triples``.
        id_columns: Output names of the id fields in file order (``src, rel, dst`` for
            triples, ``user, item`` for pairs and LightGCN lines, ``src, dst`` for edges).
        kinds: Dictionary kind of each id column.
        weighted: A weight field follows the ids.
        timestamped: A timestamp field follows (the weight, if any).
    """

    fmt: str
    id_columns: tuple[str, ...]
    kinds: tuple[str, ...]
    weighted: bool
    timestamped: bool

    @property
    def columns(self) -> tuple[str, ...]:
        extra = ((WEIGHT,) if self.weighted else ()) + ((TS,) if self.timestamped else ())
        return self.id_columns + extra

    @property
    def table(self) -> str:
        """Name of the output table: ``interactions`` or ``edges``."""
        return "interactions" if self.fmt in ("lightgcn", "pairs") else "edges"

    @property
    def output_kinds(self) -> tuple[str, ...]:
        """Distinct dictionary kinds, in a stable order."""
        return tuple(dict.fromkeys(self.kinds))

    def kind_of(self, column: str) -> str:
        return self.kinds[self.id_columns.index(column)]


def layout_for(cfg: IngestConfig) -> Layout:
    """The :class:`Layout` of ``cfg.format`` (raises IngestError for unsupported options)."""
    if cfg.format == "lightgcn" and (cfg.weighted or cfg.timestamped):
        raise IngestError(
            f"{cfg.train_path}: format lightgcn has no weight or timestamp fields "
            "(set ingest.weighted and ingest.timestamped to false)"
        )
    ids: tuple[str, ...]
    kinds: tuple[str, ...]
    if cfg.format in ("lightgcn", "pairs"):
        ids, kinds = (USER, ITEM), ("user", "item")
    elif cfg.format == "triples":
        ids, kinds = (SRC, REL, DST), ("entity", "relation", "entity")
    else:
        ids, kinds = (SRC, DST), ("node", "node")
    return Layout(cfg.format, ids, kinds, cfg.weighted, cfg.timestamped)


def file_type_of(name: str) -> str:
    """``parquet | csv | tsv | text`` from a file name (compression suffixes ignored)."""
    lower = name.lower()
    for suffix in COMPRESSED:
        if lower.endswith(suffix):
            lower = lower[: -len(suffix)]
            break
    for ext, kind in FILE_EXTENSIONS.items():
        if lower.endswith(ext):
            return kind
    return "text"


def split_pattern(file_type: str, delimiter: str, fmt: str) -> str:
    """Java regex that splits one line into fields.

    ``auto`` means ``,`` for CSV, one tab for TSV and for triples in text files (names may
    contain spaces), else any run of spaces and tabs (SNAP and LightGCN files). An explicit
    ``' '`` splits on runs of spaces; any other explicit delimiter splits on exactly one
    occurrence, so ``a,,b`` has an empty middle field.
    """
    if fmt == "lightgcn":
        return r"[ \t]+"
    if delimiter == "auto":
        if file_type == "csv":
            return ","
        if file_type == "tsv" or fmt == "triples":
            return "\t"
        return r"[ \t]+"
    if delimiter == " ":
        return " +"
    return re.escape(delimiter)


def quoted_delimiter(file_type: str, delimiter: str, fmt: str) -> str | None:
    """The one-character delimiter of a CSV or TSV input, whose fields may be quoted.

    Fields of CSV and TSV files follow RFC 4180 quoting (``"a,b"`` is one field, ``""`` inside
    quotes is one ``"``); ``None`` for other inputs (text files, LightGCN lines, delimiters
    of several characters or a space), whose fields are split on :func:`split_pattern` only.
    """
    if fmt == "lightgcn" or file_type not in ("csv", "tsv"):
        return None
    if delimiter == "auto":
        return "," if file_type == "csv" else "\t"
    return delimiter if len(delimiter) == 1 and delimiter not in (" ", '"') else None


def match_header(names: list[str], layout: Layout) -> str | None:
    """Why ``names`` (a header row) does not fit ``layout``; ``None`` when it fits."""
    expected = layout.columns
    found = [n.strip().strip('"').strip().lower() for n in names]
    if len(found) != len(expected):
        return (
            f"header has {len(found)} columns {names}, expected {len(expected)} "
            f"({', '.join(expected)})"
        )
    for col, name in zip(expected, found, strict=True):
        if name not in HEADER_ALIASES[col]:
            return (
                f"header column {name!r} does not name {col!r} "
                f"(accepted: {', '.join(HEADER_ALIASES[col])}); expected {', '.join(expected)}"
            )
    return None


def resolve_columns(available: list[str], layout: Layout) -> tuple[dict[str, str], str | None]:
    """Map each column of ``layout`` to a column of a Parquet schema (by name or alias).

    Returns:
        ``(mapping, problem)``: mapping from layout column to the Parquet column, and why the
        schema does not fit (``None`` when every column was found).
    """
    lower = {a.lower(): a for a in available}
    mapping: dict[str, str] = {}
    missing: list[str] = []
    for col in layout.columns:
        hit = next((lower[a] for a in HEADER_ALIASES[col] if a in lower), None)
        if hit is None:
            missing.append(col)
        else:
            mapping[col] = hit
    if missing:
        return mapping, (
            f"wrong schema: missing column(s) {', '.join(missing)} (found: {', '.join(available)})"
        )
    return mapping, None
