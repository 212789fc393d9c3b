"""Validation rules of the ingest stage: lines and Parquet rows in, checked rows out.

Every row gets a ``reason`` (``null`` when it is good); the first failing rule wins, in this
order:

1. ``undecodable bytes``: the line is not valid UTF-8 (``raw`` shows U+FFFD in place of the bad
   bytes, ``raw_bytes`` keeps the exact bytes);
2. ``malformed quotes``: a CSV or TSV line whose quoting is not RFC 4180 (an unclosed quote,
   text after a closing quote);
3. ``wrong column count (expected N, got M)``;
4. ``empty id``: an id field is empty (or null in Parquet);
5. ``non-numeric id`` / ``id out of int64 range``: with ``numeric_ids`` (relation names of
   triples are exempt);
6. ``non-numeric weight``, ``NaN weight``, ``infinite weight``, ``negative weight``;
7. ``non-numeric timestamp`` (timestamps are integers, e.g. epoch seconds).

CSV and TSV fields (:func:`pipelines.ingest.formats.quoted_delimiter`) may be quoted as in
RFC 4180: ``"a,b",c`` has two fields, ``""`` inside quotes is one ``"``; spaces around a quoted
field are dropped, the quoted text is kept as written. One line is one row (a quoted field does
not span lines). Lines without a ``"`` are split on the delimiter, as before; lines with one
are parsed with one Java regex (matches start at the line start or right after a delimiter;
the line is well quoted when its matches joined by the delimiter give the line back).

LightGCN lines (``uid iid iid ...``) become one row per (user, item) pair. A line whose own
problem is not one pair's (undecodable bytes, a bad user id, no items at all) is rejected
whole and counts as *one* rejected row with the full line as ``raw``; a bad item id rejects
only its pair, with ``raw = "<uid> <iid>"``.

Numeric ids are normalised to their canonical decimal form (``007`` and ``7`` are one node).
Everything is a Spark SQL expression: no Python per row.
"""

from __future__ import annotations

import re

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from pipelines.core.schema import LINE_NUMBER, RAW, REASON, REL, SOURCE_FILE, TS, WEIGHT
from pipelines.ingest.formats import RAW_BYTES, Layout
from pipelines.ingest.read import VALUE

SEQ = "seq"
_INT = r"^[+-]?[0-9]+$"
_TRIM = r"^[ \t]+|[ \t]+$"


def _reason(*rules: tuple[Column, str | Column]) -> Column:
    """``CASE WHEN cond THEN reason ...`` with the first matching rule winning."""
    out: Column | None = None
    for cond, text in rules:
        value = F.lit(text) if isinstance(text, str) else text
        out = F.when(cond, value) if out is None else out.when(cond, value)
    assert out is not None
    return out


def _any(conds: list[Column]) -> Column:
    out = F.lit(False)
    for c in conds:
        out = out | c
    return out


def _id_rules(ids: dict[str, Column], *, numeric: bool) -> list[tuple[Column, str]]:
    rules = [(_any([c.isNull() | (c == "") for c in ids.values()]), "empty id")]
    if numeric:
        checked = [c for name, c in ids.items() if name != REL]
        rules.append((_any([~c.rlike(_INT) for c in checked]), "non-numeric id"))
        too_big = _any([c.try_cast("long").isNull() for c in checked])
        rules.append((too_big, "id out of int64 range"))
    return rules


def _value_rules(fields: dict[str, Column], layout: Layout) -> list[tuple[Column, str]]:
    rules: list[tuple[Column, str]] = []
    if layout.weighted:
        w = fields[WEIGHT].try_cast("double")
        rules += [
            (w.isNull(), "non-numeric weight"),
            (F.isnan(w), "NaN weight"),
            (F.abs(w) == float("inf"), "infinite weight"),
            (w < 0, "negative weight"),
        ]
    if layout.timestamped:
        rules.append((fields[TS].try_cast("long").isNull(), "non-numeric timestamp"))
    return rules


def _typed(fields: dict[str, Column], layout: Layout, *, numeric: bool) -> list[Column]:
    """The output columns: canonical id strings, weight as double, ts as long."""
    out = []
    for name in layout.id_columns:
        c = fields[name]
        if numeric and name != REL:
            c = c.try_cast("long").cast("string")
        out.append(c.alias(name))
    if layout.weighted:
        out.append(fields[WEIGHT].try_cast("double").alias(WEIGHT))
    if layout.timestamped:
        out.append(fields[TS].try_cast("long").alias(TS))
    return out


def _clean(field: Column) -> Column:
    """Trim spaces and tabs, then drop one pair of enclosing double quotes."""
    return F.regexp_replace(F.regexp_replace(field, _TRIM, ""), r'^"(.*)"$', "$1")


def quoted_fields(value: Column, delimiter: str) -> tuple[Column, Column]:
    """RFC 4180 fields of a line, and whether the line is well quoted.

    Args:
        value: The line.
        delimiter: One character (not a space nor ``"``).

    Returns:
        ``(fields, ok)``: ``array<string>`` (quoted fields unquoted and unescaped, others
        trimmed) and a boolean column.
    """
    d = re.escape(delimiter)
    ws = "[ ]" if delimiter == "\t" else r"[ \t]"
    field = f'(?:^|(?<={d}))(?:{ws}*+"([^"]*+(?:""[^"]*+)*+)"{ws}*+(?={d}|$)|(?!{ws}*")([^{d}]*+))'
    regex = F.lit(field)
    spans = F.regexp_extract_all(value, regex, F.lit(0))
    quoted = F.regexp_extract_all(value, regex, F.lit(1))
    plain = F.regexp_extract_all(value, regex, F.lit(2))
    fields = F.zip_with(
        quoted,
        plain,
        lambda q, p: F.when(
            F.coalesce(q, F.lit("")) != "", F.replace(q, F.lit('""'), F.lit('"'))
        ).otherwise(_clean(F.coalesce(p, F.lit("")))),
    )
    return fields, F.array_join(spans, delimiter) == value


def check_lines(
    lines: DataFrame,
    layout: Layout,
    *,
    pattern: str,
    numeric: bool,
    quoted: str | None = None,
) -> DataFrame:
    """Split numbered text lines into fields and attach the reason of each bad row.

    Args:
        lines: Output of :func:`pipelines.ingest.read.read_text`.
        layout: Columns expected on each line.
        pattern: Java regex between fields (:func:`pipelines.ingest.formats.split_pattern`).
        numeric: Ids must be integers.
        quoted: The delimiter of CSV and TSV lines, whose fields may be quoted (RFC 4180);
            ``None``: fields are split on ``pattern`` only.

    Schema:
        lines: ``source_file string, line_number long, value string``.
        out: ``source_file, line_number, seq long, raw string, raw_bytes binary, reason
        string`` and the layout's columns (ids as strings, ``weight double``, ``ts long``).
    """
    if layout.fmt == "lightgcn":
        return _check_lightgcn(lines, numeric=numeric)
    value = F.col(VALUE)
    ok_utf8 = F.is_valid_utf8(value)
    line = F.regexp_replace(value, _TRIM, "") if pattern.endswith("+") else value
    parts = F.transform(F.split(line, pattern, -1), _clean)
    bad_quotes = F.lit(False)
    if quoted is not None:  # only lines holding a quote pay for the CSV parser
        fields_q, ok_q = quoted_fields(value, quoted)
        has_quote = value.contains('"')
        parts = F.when(has_quote, fields_q).otherwise(parts)
        bad_quotes = has_quote & ~ok_q
    df = lines.select(SOURCE_FILE, LINE_NUMBER, value, parts.alias("_f"), bad_quotes.alias("_bq"))
    n = len(layout.columns)
    fields = {name: F.get("_f", i) for i, name in enumerate(layout.columns)}
    ids = {name: fields[name] for name in layout.id_columns}
    reason = _reason(
        (~ok_utf8, "undecodable bytes"),
        (F.col("_bq"), "malformed quotes"),
        (
            F.size("_f") != n,
            F.format_string(f"wrong column count (expected {n}, got %d)", F.size("_f")),
        ),
        *_id_rules(ids, numeric=numeric),
        *_value_rules(fields, layout),
    )
    return df.select(
        SOURCE_FILE,
        LINE_NUMBER,
        F.lit(0).cast("long").alias(SEQ),
        F.make_valid_utf8(value).alias(RAW),
        F.when(~ok_utf8, value.cast("binary")).alias(RAW_BYTES),
        reason.alias(REASON),
        *_typed(fields, layout, numeric=numeric),
    )


def check_parquet_rows(rows: DataFrame, layout: Layout, *, numeric: bool) -> DataFrame:
    """Attach the reason of each bad Parquet row (ids, weight and timestamp rules).

    Schema:
        rows: output of :func:`pipelines.ingest.read.read_parquet`.
        out: as :func:`check_lines`.
    """
    fields = {name: _clean(F.col(name)) for name in layout.columns}
    ids = {name: fields[name] for name in layout.id_columns}
    reason = _reason(*_id_rules(ids, numeric=numeric), *_value_rules(fields, layout))
    return rows.select(
        SOURCE_FILE,
        LINE_NUMBER,
        F.lit(0).cast("long").alias(SEQ),
        F.col(RAW),
        F.lit(None).cast("binary").alias(RAW_BYTES),
        reason.alias(REASON),
        *_typed(fields, layout, numeric=numeric),
    )


def _check_lightgcn(lines: DataFrame, *, numeric: bool) -> DataFrame:
    value = F.col(VALUE)
    ok_utf8 = F.is_valid_utf8(value)
    parts = F.split(F.regexp_replace(value, _TRIM, ""), r"[ \t]+", -1)
    user = F.get("_p", 0)
    line_rules: list[tuple[Column, str]] = [(~ok_utf8, "undecodable bytes")]
    if numeric:
        line_rules += [
            (~user.rlike(_INT), "non-numeric id"),
            (user.try_cast("long").isNull(), "id out of int64 range"),
        ]
    line_rules.append((F.size("_p") < 2, "no items"))
    staged = lines.select(SOURCE_FILE, LINE_NUMBER, value, parts.alias("_p")).select(
        SOURCE_FILE, LINE_NUMBER, value, "_p", _reason(*line_rules).alias("_lr")
    )
    items = F.when(F.col("_lr").isNull(), F.slice("_p", 2, F.size("_p") - 1)).otherwise(
        F.array(F.lit(None).cast("string"))
    )
    exploded = staged.select(
        SOURCE_FILE, LINE_NUMBER, value, "_p", "_lr", F.posexplode(items).alias(SEQ, "_item")
    )
    item = F.col("_item")
    item_rules = (
        [
            (~item.rlike(_INT), "non-numeric id"),
            (item.try_cast("long").isNull(), "id out of int64 range"),
        ]
        if numeric
        else [(F.lit(False), "")]
    )
    line_bad = F.col("_lr").isNotNull()
    canon = (lambda c: c.try_cast("long").cast("string")) if numeric else (lambda c: c)
    return exploded.select(
        SOURCE_FILE,
        LINE_NUMBER,
        F.col(SEQ).cast("long").alias(SEQ),
        F.when(line_bad, F.make_valid_utf8(value))
        .otherwise(F.concat_ws(" ", user, item))
        .alias(RAW),
        F.when(~ok_utf8, value.cast("binary")).alias(RAW_BYTES),
        F.coalesce(F.col("_lr"), _reason(*item_rules)).alias(REASON),
        canon(user).alias("user"),
        canon(item).alias("item"),
    )
