"""Readers of the ingest stage: number text lines per file, read Parquet.

The input is listed by :mod:`pipelines.ingest.listing` (re-exported here).

Everything stays distributed: the driver only lists files and collects one summary row per
file split (a few hundred rows for a billion-line input).

Line numbers. ``spark.read.text`` gives no line numbers, so each line gets
``monotonically_increasing_id()`` right above the file scan. A file split lies inside one scan
partition and its lines are consecutive there, so a first job counts the lines of every split
(``groupBy(file, split start)``) and the driver turns those counts into a per-split offset; a
broadcast join then gives ``line_number = offset + id - first id of the split + 1``. This is
``zipWithIndex`` per file, done in the JVM; it works for split plain files and for gzip files
(one split each). File scans are deterministic, so both passes see the same ids.

Undecodable bytes. The text source keeps a line's bytes as they are (no UTF-8 validation), so
:func:`pyspark.sql.functions.is_valid_utf8` finds lines that are not valid UTF-8; the rules
reject them and keep their exact bytes. Lines end at ``\\n``, ``\\r\\n`` or ``\\r`` (Hadoop's
line reader), so CRLF files need nothing special.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.core.schema import LINE_NUMBER, RAW, SOURCE_FILE, TS
from pipelines.ingest.formats import (
    IngestError,
    Layout,
    file_type_of,
    match_header,
    resolve_columns,
)
from pipelines.ingest.listing import InputFile, list_files, short_error

__all__ = [
    "VALUE",
    "InputFile",
    "TextLines",
    "detect_file_type",
    "list_files",
    "read_parquet",
    "read_text",
    "short_error",
]

log = logging.getLogger("graphpipe.ingest")

VALUE = "value"
_FP, _BS, _MID = "_fp", "_bs", "_mid"
_GLOB_CHARS = re.compile(r"([\\\[\]{}*?])")


@dataclass(frozen=True)
class TextLines:
    """Data lines of the text input and what was skipped.

    Attributes:
        lines: ``source_file string, line_number long, value string`` (comments, blank lines
            and header rows removed).
        lines_skipped: Comment lines, blank lines and header rows.
    """

    lines: DataFrame
    lines_skipped: int


def read_error(exc: BaseException, files: list[InputFile], *, what: str, kind: str) -> IngestError:
    """One line for a failed read: the file Spark's message names (else the first three files
    of the input), ``kind`` and the root cause; a ``.gz`` file that is not gzip data says so."""
    text = unquote(str(exc))
    keys = {(f.scan_path[5:] if f.scan_path.startswith("file:") else f.scan_path): f for f in files}
    named = [key for key in keys if key in text]
    bad = keys[max(named, key=len)] if named else None  # a.txt.gz, not its prefix a.txt
    names = bad.display if bad else ", ".join(f.display for f in files[:3])
    cause = short_error(exc)
    if bad is not None and _not_gzip(bad):
        cause = f"not gzip data: no gzip magic bytes at the start; {cause}"
    return IngestError(f"{what} {names}: {kind} ({cause})")


def _not_gzip(f: InputFile) -> bool:
    """A local ``.gz`` file that does not start with the gzip magic bytes ``1f 8b``."""
    if not (f.display.lower().endswith(".gz") and f.path.startswith("file:")):
        return False
    try:
        with open(f.display, "rb") as fh:
            return fh.read(2) != b"\x1f\x8b"
    except OSError:
        return False


def detect_file_type(files: list[InputFile], file_type: str, *, what: str) -> str:
    """``file_type`` or, for ``auto``, the one type all file names agree on."""
    if file_type != "auto":
        return file_type
    kinds = {file_type_of(f.display) for f in files}
    if len(kinds) > 1:
        raise IngestError(
            f"{what} {files[0].display}: mixed file types {sorted(kinds)} in one input; "
            "set ingest.file_type"
        )
    return kinds.pop()


def _split_header(line: str, pattern: str) -> list[str]:
    return re.split(pattern, line.strip())


def read_text(
    spark: SparkSession,
    files: list[InputFile],
    *,
    header: bool,
    layout: Layout,
    pattern: str,
    what: str,
) -> TextLines:
    """Number the lines of text files and drop comments, blank lines and headers.

    Raises:
        IngestError: A file has no data rows, its header does not fit ``layout``, or it
            cannot be read (e.g. a corrupt gzip stream).

    Schema:
        out: ``source_file string, line_number long, value string``.
    """
    by_key = {f.scan_path: f for f in files}
    scan = spark.read.text([_GLOB_CHARS.sub(r"\\\1", f.scan_path) for f in files]).select(
        F.col(VALUE),
        F.col("_metadata.file_path").alias(_FP),
        F.col("_metadata.file_block_start").alias(_BS),
        F.monotonically_increasing_id().alias(_MID),
    )
    is_data = ~F.col(VALUE).rlike(r"^\s*$") & ~F.col(VALUE).rlike(r"^\s*#")
    try:
        stats = (
            scan.groupBy(_FP, _BS)
            .agg(
                F.min(_MID).alias("first"),
                F.count(F.lit(1)).alias("n"),
                F.sum(is_data.cast("long")).alias("n_data"),
                F.min(F.when(is_data, F.struct(F.col(_MID), F.col(VALUE)))).alias("head"),
            )
            .collect()
        )
    except Exception as exc:
        raise read_error(exc, files, what=what, kind="cannot read") from None
    splits: dict[str, list[Any]] = {}
    for row in stats:
        splits.setdefault(unquote(row[_FP]), []).append(row)
    offsets: list[tuple[str, int, int, int, str, int | None]] = []
    skipped = 0
    for f in files:
        rows = sorted(splits.get(f.scan_path, []), key=lambda r: r[_BS])
        n_data = sum(int(r["n_data"]) for r in rows)
        header_row = next((r for r in rows if r["n_data"]), None)
        if header and header_row is not None:
            problem = match_header(_split_header(header_row["head"][VALUE], pattern), layout)
            if problem is not None and layout.fmt != "lightgcn":
                raise IngestError(f"{what} {f.display}: wrong schema: {problem}")
            n_data -= 1
        if n_data <= 0:
            raise IngestError(f"{what} {f.display}: empty file (no data rows)")
        offset = 0
        for r in rows:
            header_mid = header_row["head"][_MID] if header and r is header_row else None
            offsets.append((r[_FP], r[_BS], r["first"], offset, f.display, header_mid))
            offset += int(r["n"])
            skipped += int(r["n"]) - int(r["n_data"])
        skipped += 1 if header else 0
    unknown = set(splits) - set(by_key)
    if unknown:  # would mean the path normalisation above is wrong: never lose lines silently
        raise IngestError(f"{what}: read files that were not listed: {sorted(unknown)[:3]}")
    table = spark.createDataFrame(
        offsets,
        f"{_FP} string, {_BS} long, first long, offset long, {SOURCE_FILE} string, hmid long",
    )
    lines = (
        scan.join(F.broadcast(table), [_FP, _BS])
        .where(is_data & (F.col("hmid").isNull() | (F.col(_MID) != F.col("hmid"))))
        .select(
            F.col(SOURCE_FILE),
            (F.col("offset") + F.col(_MID) - F.col("first") + 1).alias(LINE_NUMBER),
            F.col(VALUE),
        )
    )
    return TextLines(lines, skipped)


def epoch_seconds(col: Column, dtype: str) -> Column:
    """A timestamp or date column as whole seconds since 1970-01-01 00:00:00 UTC.

    ``timestamp`` (an instant) is exact, whatever the session time zone; ``timestamp_ntz``
    (a wall-clock time) is read as UTC; a ``date`` is its UTC midnight; fractions of a second
    are dropped. Other types are returned unchanged (the rules check them as numbers).
    """
    if dtype == "timestamp":
        return F.unix_seconds(col)
    days = F.unix_date(col.cast("date")).cast("long") * 86400
    if dtype == "timestamp_ntz":
        return days + F.hour(col) * 3600 + F.minute(col) * 60 + F.second(col)
    if dtype == "date":
        return days
    return col


def read_parquet(
    spark: SparkSession, files: list[InputFile], *, layout: Layout, what: str
) -> DataFrame:
    """Read Parquet rows as strings with their file and 1-based row number.

    Columns are found by name or alias (see ``HEADER_ALIASES``), case-insensitively. A
    timestamp- or date-typed timestamp column becomes epoch seconds (:func:`epoch_seconds`).

    Raises:
        IngestError: Not Parquet, a needed column is missing, or a file has no rows.

    Schema:
        out: ``source_file string, line_number long, raw string`` and one ``string`` column
        per column of ``layout`` (null where the Parquet value was null).
    """
    paths = [_GLOB_CHARS.sub(r"\\\1", f.scan_path) for f in files]
    try:
        df = spark.read.parquet(*paths)
    except Exception as exc:
        raise read_error(exc, files, what=what, kind="cannot read as Parquet") from None
    mapping, problem = resolve_columns(df.columns, layout)
    if problem is not None:
        raise IngestError(f"{what} {files[0].display}: {problem}")
    types = dict(df.dtypes)
    picked = df.select(
        F.col("_metadata.file_path").alias(_FP),
        (F.col("_metadata.row_index") + 1).alias(LINE_NUMBER),
        F.to_json(F.struct(*[F.col(mapping[c]).alias(c) for c in layout.columns])).alias(RAW),
        *[
            (epoch_seconds(F.col(mapping[c]), types[mapping[c]]) if c == TS else F.col(mapping[c]))
            .cast("string")
            .alias(c)
            for c in layout.columns
        ],
    )
    try:
        per_file = {
            unquote(r[_FP]): (r[_FP], r["n"])
            for r in picked.groupBy(_FP).agg(F.count(F.lit(1)).alias("n")).collect()
        }
    except Exception as exc:
        raise read_error(exc, files, what=what, kind="cannot read as Parquet") from None
    for f in files:
        if f.scan_path not in per_file:
            raise IngestError(f"{what} {f.display}: empty file (no data rows)")
    names = spark.createDataFrame(
        [(per_file[f.scan_path][0], f.display) for f in files],
        f"{_FP} string, {SOURCE_FILE} string",
    )
    return picked.join(F.broadcast(names), _FP).select(
        SOURCE_FILE, LINE_NUMBER, RAW, *layout.columns
    )
