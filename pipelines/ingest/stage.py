"""The ingest stage: read, validate, quarantine, map ids to dense ``int64``, write Parquet.

Inputs (``IngestConfig``): edge lists (CSV, TSV, SNAP text with ``#`` comments, LF or CRLF,
``.gz``, Parquet; optional weight and timestamp), user-item pairs, LightGCN lines
(``uid iid iid ...``) and knowledge-graph triples (``head<TAB>relation<TAB>tail``), each a file
or a folder of files, with an optional test file mapped through the training dictionary.

Output under ``out_dir`` (the stage folder of :func:`pipelines.core.stages.run_stage`)::

    edges/ or interactions/   src, dst [, rel] [, weight] [, ts], split   (dense int64 ids)
                              user, item [, weight] [, ts], split         (two id spaces)
    dictionary/               kind, original_id, node_id                  (kind: node | user |
                                                                           item | entity | relation)
    rejected/                 source_file, line_number, raw, reason, raw_bytes

Nothing is lost: every data row read is accepted, rejected (with its reason), removed as a
duplicate, removed as a self-loop or removed as tombstoned, and ``rows_read = accepted +
rejected + duplicates_removed + self_loops_removed + tombstoned`` is checked before the stage
finishes. Tombstoned rows name a user, item or (user, item) edge that the forget job deleted
(:mod:`pipelines.forget.tombstones`); they are applied before anything else, so a deleted id never
reaches the dictionary, the output or the ``rejected`` table (only their count is kept).
Comment lines, blank lines and header rows are not rows (counted as ``lines_skipped``).
Self-loops are removed before duplicates; of duplicate rows (same split, ids and timestamp)
the first by file and line is kept, with its weight. Test rows whose ids are not in the
training dictionary are rejected (``unknown user in test``, ``unknown item in test``, ...).

CSV and TSV fields may be quoted as in RFC 4180 (:mod:`pipelines.ingest.rules`); a Parquet
timestamp column may be timestamp- or date-typed (epoch seconds, see
:func:`pipelines.ingest.read.epoch_seconds`). Explicitly named files are read whatever their
name (Spark's readers skip ``_*`` and ``.*`` names: such files are read through a symlink in
``out_dir/input-aliases``, removed before the stage ends).

A missing path, an empty file, an entry of an input folder that cannot be read (a broken
symlink, a pipe, no permission: :mod:`pipelines.ingest.listing`), a file that cannot be
decoded (the message gives the root cause), a header or Parquet schema that does not fit, or
input in which no row is valid raise :class:`IngestError` with one message naming the file.
"""

from __future__ import annotations

import logging
import shutil
from functools import reduce
from pathlib import Path

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from pipelines.core.config import IngestConfig
from pipelines.core.logs import stage_timer
from pipelines.core.schema import (
    DST,
    LINE_NUMBER,
    RAW,
    REASON,
    REL,
    SOURCE_FILE,
    SRC,
    TS,
    WEIGHT,
)
from pipelines.forget.tombstones import TOMBSTONED, flag_tombstoned
from pipelines.ingest.dense_ids import build_dictionary, map_back, to_dense
from pipelines.ingest.formats import (
    RAW_BYTES,
    SPLIT,
    TEST,
    TRAIN,
    IngestError,
    Layout,
    layout_for,
    quoted_delimiter,
    split_pattern,
)
from pipelines.ingest.listing import make_visible
from pipelines.ingest.read import detect_file_type, list_files, read_parquet, read_text
from pipelines.ingest.rules import SEQ, check_lines, check_parquet_rows

__all__ = ["IngestError", "check_counts", "ingest", "map_back", "read_ingested"]

log = logging.getLogger("graphpipe.ingest")

TABLES = ("edges", "interactions", "dictionary", "rejected")
PLURAL = {
    "node": "nodes",
    "user": "users",
    "item": "items",
    "entity": "entities",
    "relation": "relations",
}
_STATUS = "_status"
ALIASES = "input-aliases"  # scratch folder under out_dir, removed before the stage ends


def _read_checked(
    spark: SparkSession,
    cfg: IngestConfig,
    layout: Layout,
    path: str,
    what: str,
    scratch: Path,
) -> tuple[DataFrame, int]:
    """Rows of one input (train or test) with their reasons, and the lines skipped.

    ``scratch``: folder for the visible aliases of explicitly named hidden files.
    """
    files = make_visible(spark, list_files(spark, path, what=what), scratch, what=what)
    file_type = detect_file_type(files, cfg.file_type, what=what)
    numeric = cfg.numeric_ids
    if file_type == "parquet":
        rows = read_parquet(spark, files, layout=layout, what=what)
        return check_parquet_rows(rows, layout, numeric=numeric), 0
    pattern = split_pattern(file_type, cfg.delimiter, cfg.format)
    text = read_text(spark, files, header=cfg.header, layout=layout, pattern=pattern, what=what)
    quoted = quoted_delimiter(file_type, cfg.delimiter, cfg.format)
    checked = check_lines(text.lines, layout, pattern=pattern, numeric=numeric, quoted=quoted)
    return checked, text.lines_skipped


def _map_ids(ok: DataFrame, dictionary: DataFrame, layout: Layout) -> tuple[DataFrame, DataFrame]:
    """Dense ids for the good rows; returns (mapped rows, test rows with unknown ids)."""
    unknown = None
    for col in layout.id_columns:
        kind = layout.kind_of(col)
        ok = to_dense(ok, dictionary, col, kind, output=f"_id_{col}")
        rule = F.col(f"_id_{col}").isNull()
        unknown = (
            F.when(rule, F.lit(f"unknown {kind} in test"))
            if unknown is None
            else unknown.when(rule, F.lit(f"unknown {kind} in test"))
        )
    assert unknown is not None
    ok = ok.withColumn(REASON, unknown)
    mapped = ok.where(F.col(REASON).isNull())
    for col in layout.id_columns:
        mapped = mapped.drop(col).withColumnRenamed(f"_id_{col}", col)
    return mapped, ok.where(F.col(REASON).isNotNull())


def _flag(mapped: DataFrame, layout: Layout, cfg: IngestConfig) -> DataFrame:
    """Status of each mapped row: ``accepted``, ``self_loop`` or ``duplicate``."""
    has_loops = cfg.drop_self_loops and SRC in layout.id_columns and DST in layout.id_columns
    loop = (F.col(SRC) == F.col(DST)) if has_loops else F.lit(False)
    df = mapped.withColumn("_loop", loop)
    dup = F.lit(False)
    if cfg.drop_duplicates:
        key = [SPLIT, "_loop", *layout.id_columns, *([TS] if layout.timestamped else [])]
        order = Window.partitionBy(*key).orderBy(SOURCE_FILE, LINE_NUMBER, SEQ)
        dup = F.row_number().over(order) > 1
    status = F.when(F.col("_loop"), "self_loop").when(dup, "duplicate").otherwise("accepted")
    return df.withColumn(_STATUS, status)


def _output_columns(layout: Layout) -> list[str]:
    ids = list(layout.id_columns)
    if layout.fmt == "triples":
        ids = [SRC, DST, REL]
    extra = ([WEIGHT] if layout.weighted else []) + ([TS] if layout.timestamped else [])
    return [*ids, *extra, SPLIT]


def check_counts(counts: dict[str, int]) -> None:
    """Raise RuntimeError unless rows_read = accepted + rejected + duplicates + self-loops +
    tombstoned (a count absent from an older stage marker is 0)."""
    parts = ("accepted", "rejected", "duplicates_removed", "self_loops_removed", "tombstoned")
    total = sum(int(counts.get(p, 0)) for p in parts)
    if int(counts["rows_read"]) != total:
        detail = ", ".join(f"{p}={counts.get(p, 0)}" for p in ("rows_read", *parts))
        raise RuntimeError(f"ingest lost rows: rows_read != the sum of its parts; {detail}")


def _apply_tombstones(
    spark: SparkSession, rows: DataFrame, layout: Layout, tombstones: Path | None
) -> DataFrame:
    """``rows`` with a boolean ``_tombstoned`` (all False without tombstones)."""
    no = rows.withColumn(TOMBSTONED, F.lit(False))
    if tombstones is None or layout.table != "interactions":
        return no
    user, item = layout.id_columns[:2]
    flagged = flag_tombstoned(spark, rows, tombstones, user_col=user, item_col=item)
    return no if flagged is None else flagged


def ingest(
    spark: SparkSession, cfg: IngestConfig, out_dir: Path, *, tombstones: Path | None = None
) -> dict[str, int]:
    """Run the ingest stage and write its tables under ``out_dir``.

    Args:
        spark: The session.
        cfg: Ingest settings (input paths, format, policies).
        out_dir: Folder to write ``edges``/``interactions``, ``dictionary`` and ``rejected``.
        tombstones: The run's tombstone folder
        (:func:`pipelines.forget.tombstones.tombstones_folder`);
            rows of deleted users, items and edges are dropped and counted as ``tombstoned``.
            Applies to user-item interactions (the forget job's domain).

    Returns:
        Counts: ``rows_read, accepted, rejected, duplicates_removed, self_loops_removed,
        tombstoned, lines_skipped, accepted_train, accepted_test`` and the dictionary size of
        each kind (``nodes``, or ``users`` and ``items``, or ``entities`` and ``relations``).

    Raises:
        IngestError: Missing path, empty file, wrong header or schema, no valid row.

    Schema:
        out tables: see the module docstring.
    """
    out_dir = Path(out_dir)
    if not cfg.train_path:
        raise IngestError("ingest.train_path: not set (the input file or folder to ingest)")
    layout = layout_for(cfg)
    sources = [(TRAIN, cfg.train_path)] + ([(TEST, cfg.test_path)] if cfg.test_path else [])
    counts: dict[str, int] = {"lines_skipped": 0}
    persisted: list[DataFrame] = []
    try:
        with stage_timer("ingest: read and check", logger=log, spark=spark):
            rows = _read_all(spark, out_dir, cfg, layout, sources, tombstones, counts, persisted)
        with stage_timer("ingest: dictionary", logger=log, spark=spark):
            good_train = rows.where(F.col(REASON).isNull() & (F.col(SPLIT) == TRAIN))
            ids = [(layout.kind_of(c), good_train.select(c)) for c in layout.id_columns]
            numeric_kinds = set(layout.kinds) - {"relation"} if cfg.numeric_ids else set()
            table, sizes = build_dictionary(spark, ids, numeric_kinds=numeric_kinds)
            table.write.parquet(str(out_dir / "dictionary"))
            dictionary = spark.read.parquet(str(out_dir / "dictionary"))
            for kind in layout.output_kinds:
                counts[PLURAL[kind]] = sizes.get(kind, 0)
        with stage_timer(
            "ingest: map ids, remove duplicates and self-loops", logger=log, spark=spark
        ):
            mapped, unknown = _map_ids(rows.where(F.col(REASON).isNull()), dictionary, layout)
            flagged = _flag(mapped, layout, cfg).persist(StorageLevel.MEMORY_AND_DISK)
            persisted.append(flagged)
            by_status = {"accepted": 0, "duplicate": 0, "self_loop": 0}
            for r in flagged.groupBy(SPLIT, _STATUS).count().collect():
                by_status[r[_STATUS]] += int(r["count"])
                if r[_STATUS] == "accepted":
                    counts[f"accepted_{r[SPLIT]}"] = int(r["count"])
        with stage_timer("ingest: write", logger=log, spark=spark):
            written = _write(spark, out_dir, layout, flagged, rows, unknown)
            counts["rejected"] = written.count()
    finally:
        for df in persisted:
            df.unpersist()
        shutil.rmtree(out_dir / ALIASES, ignore_errors=True)
    counts = _ordered_counts(counts, by_status, [split for split, _ in sources])
    check_counts(counts)
    if counts["accepted"] == 0:
        raise IngestError(_nothing_accepted(written, cfg.train_path, counts["rows_read"]))
    log.info("ingest: %s", counts)
    return counts


def _read_all(
    spark: SparkSession,
    out_dir: Path,
    cfg: IngestConfig,
    layout: Layout,
    sources: list[tuple[str, str]],
    tombstones: Path | None,
    counts: dict[str, int],
    persisted: list[DataFrame],
) -> DataFrame:
    """Every source's rows, checked and split-tagged, tombstoned ones dropped (counted).

    Aliases of hidden input files go to ``out_dir / ALIASES`` (removed by :func:`ingest`).

    Adds ``lines_skipped``, ``rows_read`` and ``tombstoned`` to ``counts``; raises
    :class:`IngestError` when no train row is valid.
    """
    parts = []
    for split, path in sources:
        what = f"ingest.{split}_path"
        df, skipped = _read_checked(spark, cfg, layout, path, what, out_dir / ALIASES)
        parts.append(df.withColumn(SPLIT, F.lit(split)))
        counts["lines_skipped"] += skipped
    read = reduce(DataFrame.unionByName, parts)
    flagged_rows = _apply_tombstones(spark, read, layout, tombstones)
    flagged_rows = flagged_rows.persist(StorageLevel.MEMORY_AND_DISK)
    persisted.append(flagged_rows)
    tally = (
        flagged_rows.groupBy(
            (F.col(REASON).isNull() & (F.col(SPLIT) == TRAIN)).alias("ok"), TOMBSTONED
        )
        .count()
        .collect()
    )
    counts["rows_read"] = sum(int(r["count"]) for r in tally)
    counts["tombstoned"] = sum(int(r["count"]) for r in tally if r[TOMBSTONED])
    rows = flagged_rows.where(~F.col(TOMBSTONED)).drop(TOMBSTONED)
    if not any(r["ok"] and not r[TOMBSTONED] for r in tally):
        raise IngestError(_nothing_accepted(rows, cfg.train_path, counts["rows_read"]))
    return rows


def _write(
    spark: SparkSession,
    out_dir: Path,
    layout: Layout,
    flagged: DataFrame,
    rows: DataFrame,
    unknown: DataFrame,
) -> DataFrame:
    """Write the accepted rows and the rejected ones; return the rejected table as written."""
    accepted = flagged.where(F.col(_STATUS) == "accepted")
    accepted.select(*_output_columns(layout)).write.parquet(str(out_dir / layout.table))
    rejected_cols = [SOURCE_FILE, LINE_NUMBER, RAW, REASON, RAW_BYTES]
    rejected = (
        rows.where(F.col(REASON).isNotNull())
        .select(*rejected_cols)
        .unionByName(unknown.select(*rejected_cols))
    )
    rejected.write.parquet(str(out_dir / "rejected"))
    return spark.read.parquet(str(out_dir / "rejected"))


def _ordered_counts(
    counts: dict[str, int], by_status: dict[str, int], splits: list[str]
) -> dict[str, int]:
    """The counts with the per-status totals, ``accepted_<split>`` for every split, and the
    identity's terms first."""
    counts["accepted"] = by_status["accepted"]
    counts["duplicates_removed"] = by_status["duplicate"]
    counts["self_loops_removed"] = by_status["self_loop"]
    for split in splits:
        counts.setdefault(f"accepted_{split}", 0)
    first = [
        "rows_read",
        "accepted",
        "rejected",
        "duplicates_removed",
        "self_loops_removed",
        "tombstoned",
    ]
    return {**{k: counts[k] for k in first}, **counts}


def _nothing_accepted(rows: DataFrame, path: str, rows_read: int) -> str:
    bad = rows.where(F.col(REASON).isNotNull()).groupBy(REASON).count()
    top = bad.orderBy(F.desc("count"), REASON).limit(3).collect()
    reasons = "; ".join(f"{r[REASON]} ({r['count']} rows)" for r in top) or "none"
    return (
        f"ingest.train_path {path}: no valid row ({rows_read} rows read; top reasons: "
        f"{reasons}); check ingest.format, ingest.delimiter and ingest.numeric_ids"
    )


def read_ingested(spark: SparkSession, stage_dir: str | Path) -> dict[str, DataFrame]:
    """The tables an ingest stage wrote: ``edges`` or ``interactions``, ``dictionary``,
    ``rejected``.

    Raises:
        IngestError: ``stage_dir`` holds no ingest output.
    """
    stage_dir = Path(stage_dir)
    tables = {
        name: spark.read.parquet(str(stage_dir / name))
        for name in TABLES
        if (stage_dir / name).is_dir()
    }
    if "dictionary" not in tables:
        raise IngestError(f"{stage_dir}: no ingest output (run the ingest stage first)")
    return tables
