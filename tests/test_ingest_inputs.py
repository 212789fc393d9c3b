"""Ingest: inputs users really have (issue 34).

Unreadable folder entries fail the run naming them; explicitly named hidden files and ``:`` in
names are read; RFC 4180 quoting in CSV and TSV; timestamp- and date-typed Parquet columns;
read errors name their root cause. Expected values are worked out by hand in the comments.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.ingest import main as ingest_main
from pipelines.core.config import IngestConfig
from pipelines.core.stages import MARKER
from pipelines.ingest.listing import list_files, spark_hides
from pipelines.ingest.stage import ALIASES, IngestError, ingest, read_ingested

PARTS = ("accepted", "rejected", "duplicates_removed", "self_loops_removed")


def run(spark, out: Path, **cfg):
    counts = ingest(spark, IngestConfig(**cfg), out)
    assert counts["rows_read"] == sum(counts[p] for p in PARTS)
    assert not (out / ALIASES).exists()  # the scratch aliases never outlive the stage
    return counts, read_ingested(spark, out)


def rejected(tables) -> set[tuple[str, int, str]]:
    rows = tables["rejected"].collect()
    return {(Path(r.source_file).name, r.line_number, r.reason) for r in rows}


def fails(spark, tmp_path: Path, path: Path, **cfg) -> str:
    with pytest.raises(IngestError) as err:
        ingest(spark, IngestConfig(train_path=str(path), **cfg), tmp_path / "out")
    message = str(err.value)
    assert "\n" not in message and "An error occurred while calling" not in message
    return message


# ------------------------------------------------- no entry of a folder is skipped silently
NOWHERE = "/nonexistent-graphpipe/nowhere.txt"


def _dangling(entry: Path) -> None:
    entry.symlink_to(NOWHERE)


def _loop(entry: Path) -> None:
    entry.symlink_to(entry)


def _fifo(entry: Path) -> None:
    os.mkfifo(entry)  # reading it would block forever


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (_dangling, "broken symlink to "),
        (_loop, "broken symlink to "),
        (_fifo, "not a regular file"),
    ],
)
def test_unreadable_folder_entry_fails_the_run(spark, tmp_path, make, problem):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "part-1.txt").write_text("1 2\n2 3\n")
    make(folder / "part-2.txt")
    message = fails(spark, tmp_path, folder)
    assert message.startswith(f"ingest.train_path {folder / 'part-2.txt'}: cannot read (")
    assert problem in message
    assert not (tmp_path / "out").exists()


def test_dangling_symlink_in_a_subfolder_and_explicitly_named(spark, tmp_path):
    sub = tmp_path / "in" / "day=1"
    sub.mkdir(parents=True)
    (sub / "a.txt").write_text("1 2\n")
    _dangling(sub / "b.txt")
    assert str(sub / "b.txt") in fails(spark, tmp_path, tmp_path / "in")
    message = fails(spark, tmp_path, sub / "b.txt")
    expected = f"ingest.train_path {sub / 'b.txt'}: cannot read (broken symlink to {NOWHERE})"
    assert message == expected


def test_hidden_names_inside_a_folder_stay_ignored(spark, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("1 2\n")
    (folder / ".b.txt").write_text("3 4\n")
    (folder / "_c.txt").write_text("5 6\n")
    _dangling(folder / ".d.txt")  # hidden: not an input, so not an error either
    files = list_files(spark, str(folder), what="t")
    assert [Path(f.display).name for f in files] == ["a.txt"]


def test_job_prints_one_error_line_for_a_dangling_symlink(spark, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "part-1.txt").write_text("1 2\n")
    _dangling(folder / "part-2.txt")
    argv = ["--run-dir", str(tmp_path / "run"), "--set", f"ingest.train_path={folder}"]
    assert ingest_main([*argv, "--set", "spark.shuffle_partitions=4"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "part-2.txt: cannot read (broken symlink" in errors[0]
    assert "Traceback" not in err


# ------------------------------------------------------- explicit hidden names, ':' in names
def test_spark_hides_names_as_spark_does():
    hidden = ["_a.txt", ".a.txt", "a.txt._COPYING_", "_"]
    visible = ["a.txt", "a_b.txt", "_x=1", "_metadata", "_common_metadata", "a.b"]
    assert [spark_hides(n) for n in hidden] == [True] * len(hidden)
    assert [spark_hides(n) for n in visible] == [False] * len(visible)


@pytest.mark.parametrize("name", ["_edges.txt", ".edges.txt", ".edges.txt.gz", "e.txt._COPYING_"])
def test_explicit_hidden_file_is_read(spark, tmp_path, name):
    data = b"1 2\n2 3\nx 1\n"  # line 3 rejected
    (tmp_path / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    counts, tables = run(spark, tmp_path / "out", train_path=str(tmp_path / name))
    assert counts["rows_read"] == 3 and counts["accepted"] == 2 and counts["rejected"] == 1
    assert rejected(tables) == {(name, 3, "non-numeric id")}
    assert tables["rejected"].first().source_file == str(tmp_path / name)


def test_job_reads_an_explicit_hidden_file(spark, tmp_path):
    """Through the job: the stage folder is ``.ingest.tmp-*`` while the aliases are read."""
    (tmp_path / ".edges.txt").write_text("1 2\n2 3\n")
    run_dir = tmp_path / "run"
    argv = ["--run-dir", str(run_dir), "--set", f"ingest.train_path={tmp_path / '.edges.txt'}"]
    assert ingest_main([*argv, "--set", "ingest.format=edges"]) == 0
    marker = json.loads((run_dir / "ingest" / MARKER).read_text())
    assert marker["counts"]["accepted"] == 2 and marker["counts"]["rows_read"] == 2
    assert not (run_dir / "ingest" / ALIASES).exists()


def test_explicit_hidden_parquet_file_and_test_file_are_read(spark, tmp_path):
    pq.write_table(pa.table({"src": [1, 2, 3], "dst": [2, 3, 1]}), tmp_path / "_train.parquet")
    (tmp_path / ".test.txt").write_text("1 3\n1 9\n")  # 9 is unknown
    counts, tables = run(
        spark,
        tmp_path / "out",
        train_path=str(tmp_path / "_train.parquet"),
        test_path=str(tmp_path / ".test.txt"),
        format="edges",
    )
    assert counts["accepted_train"] == 3 and counts["accepted_test"] == 1
    assert rejected(tables) == {(".test.txt", 2, "unknown node in test")}


def test_colons_in_file_names_inside_a_folder(spark, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "2024-01-01T00:00:00.txt").write_text("1 2\nbad\n")
    (folder / "a:b.txt.gz").write_bytes(gzip.compress(b"2 3\n3 4\n"))
    (folder / "plain.txt").write_text("4 5\n")
    counts, tables = run(spark, tmp_path / "out", train_path=str(folder), format="edges")
    assert counts["rows_read"] == 5 and counts["accepted"] == 4
    assert rejected(tables) == {
        ("2024-01-01T00:00:00.txt", 2, "wrong column count (expected 2, got 1)")
    }
    counts, _ = run(spark, tmp_path / "out2", train_path=str(folder / "a:b.txt.gz"), format="edges")
    assert counts["accepted"] == 2


# ------------------------------------------------------------------- RFC 4180 CSV quoting
QUOTED_CSV = (
    "user,item,weight\n"  # 1 header
    '"a,b",c,1\n'  # 2 ok: user "a,b"
    '"say ""hi""",c,2\n'  # 3 ok: user 'say "hi"'
    ' "d" , "e" ,3\n'  # 4 ok: spaces around quoted fields dropped
    'a"b,"c",4\n'  # 5 ok: a quote inside an unquoted field is a character
    '"a,b",c,9\n'  # 6 duplicate of line 2
    '"unclosed,c,1\n'  # 7 malformed quotes
    '"x"y,c,1\n'  # 8 malformed quotes (text after the closing quote)
    '"a,b",c\n'  # 9 wrong column count (expected 3, got 2)
    '"",c,1\n'  # 10 empty id (quoted)
    ',"c",1\n'  # 11 empty id (first field empty, quoted line)
    '"f","g,h","0.5"\n'  # 12 ok: item "g,h", weight 0.5
    '"a,b",c,"x"\n'  # 13 non-numeric weight
    "plain,line,7\n"  # 14 ok (no quotes: split as before)
)


def test_csv_quoting_rfc4180_with_exact_quarantine(spark, tmp_path):
    (tmp_path / "pairs.csv").write_text(QUOTED_CSV)
    counts, tables = run(
        spark,
        tmp_path / "out",
        train_path=str(tmp_path / "pairs.csv"),
        format="pairs",
        header=True,
        weighted=True,
        numeric_ids=False,
    )
    assert rejected(tables) == {
        ("pairs.csv", 7, "malformed quotes"),
        ("pairs.csv", 8, "malformed quotes"),
        ("pairs.csv", 9, "wrong column count (expected 3, got 2)"),
        ("pairs.csv", 10, "empty id"),
        ("pairs.csv", 11, "empty id"),
        ("pairs.csv", 13, "non-numeric weight"),
    }
    d = tables["dictionary"]
    users = sorted(r.original_id for r in d.where("kind = 'user'").collect())
    items = sorted(r.original_id for r in d.where("kind = 'item'").collect())
    assert users == ['a"b', "a,b", "d", "f", "plain", 'say "hi"']
    assert items == ["c", "e", "g,h", "line"]
    weights = sorted(r.weight for r in tables["interactions"].collect())
    assert weights == [0.5, 1.0, 2.0, 3.0, 4.0, 7.0]
    # 13 data rows: 6 accepted, 6 rejected, 1 duplicate.
    assert (counts["rows_read"], counts["accepted"], counts["rejected"]) == (13, 6, 6)
    assert counts["duplicates_removed"] == 1 and counts["lines_skipped"] == 1
    raw = {r.line_number: r.raw for r in tables["rejected"].collect()}
    assert raw[7] == '"unclosed,c,1' and raw[9] == '"a,b",c'


def test_tsv_and_explicit_delimiter_quoting(spark, tmp_path):
    (tmp_path / "t.tsv").write_text('"a\tb"\tc\n"q ""x"""\td\nx\t"y\n')  # line 3 malformed
    (tmp_path / "s.csv").write_text('"1;2";3\n4;"5"\n')
    counts, tables = run(
        spark,
        tmp_path / "out",
        train_path=str(tmp_path / "t.tsv"),
        format="pairs",
        numeric_ids=False,
    )
    users = sorted(r.original_id for r in tables["dictionary"].where("kind = 'user'").collect())
    assert users == ["a\tb", 'q "x"'] and counts["accepted"] == 2
    assert rejected(tables) == {("t.tsv", 3, "malformed quotes")}
    counts, tables = run(
        spark,
        tmp_path / "out2",
        train_path=str(tmp_path / "s.csv"),
        format="edges",
        delimiter=";",
        numeric_ids=False,
    )
    nodes = sorted(r.original_id for r in tables["dictionary"].collect())
    assert nodes == ["1;2", "3", "4", "5"] and counts["accepted"] == 2


def test_long_quoted_line_does_not_overflow_the_regex(spark, tmp_path):
    long_field = '"' + 'x""y,' * 20_000 + '"'
    (tmp_path / "long.csv").write_text(f"{long_field},1\n" + ",".join(['"1"'] * 5000) + "\n2,3\n")
    counts, tables = run(
        spark,
        tmp_path / "out",
        train_path=str(tmp_path / "long.csv"),
        format="edges",
        numeric_ids=False,
    )
    assert counts["accepted"] == 2
    assert rejected(tables) == {("long.csv", 2, "wrong column count (expected 2, got 5000)")}


# ------------------------------------------------------ Parquet timestamp and date columns
# 2024-01-01T00:00:30Z = 1704067230 epoch seconds; 2024-01-01 = 1704067200.
T30 = dt.datetime(2024, 1, 1, 0, 0, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("arrow_type", "value", "expected"),
    [
        (pa.timestamp("us", tz="UTC"), T30, 1704067230),
        (
            pa.timestamp("ms", tz="America/New_York"),
            dt.datetime(2024, 1, 1, 0, 0, 30, 500000, tzinfo=dt.UTC),
            1704067230,
        ),
        (pa.timestamp("us"), dt.datetime(2024, 1, 1, 0, 0, 30), 1704067230),  # read as UTC
        (pa.date32(), dt.date(2024, 1, 1), 1704067200),
    ],
)
def test_parquet_timestamp_and_date_columns(spark, tmp_path, arrow_type, value, expected):
    table = pa.table(
        {
            "user": pa.array([1, 2], pa.int64()),
            "item": pa.array([5, 6], pa.int64()),
            "timestamp": pa.array([value, None], arrow_type),
        }
    )
    pq.write_table(table, tmp_path / "i.parquet")
    old = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", "Asia/Kolkata")  # must not matter
    try:
        counts, tables = run(
            spark,
            tmp_path / "out",
            train_path=str(tmp_path / "i.parquet"),
            format="pairs",
            timestamped=True,
        )
    finally:
        spark.conf.set("spark.sql.session.timeZone", old)
    assert [r.ts for r in tables["interactions"].collect()] == [expected]
    assert rejected(tables) == {("i.parquet", 2, "non-numeric timestamp")}  # the null
    assert counts["accepted"] == 1


# ------------------------------------------------------------ read errors name their cause
def _checksum_mismatch(spark, tmp_path: Path) -> Path:
    """A folder written by Hadoop's checksummed local file system, one data byte changed."""
    out = tmp_path / "crc"
    spark.createDataFrame([("1 2",), ("2 3",)], "value string").coalesce(1).write.text(str(out))
    part = next(p for p in out.iterdir() if p.name.startswith("part-"))
    assert (out / f".{part.name}.crc").exists()
    part.write_bytes(part.read_bytes().replace(b"3", b"4"))
    return out


@pytest.mark.parametrize(
    ("name", "cause"),
    [
        ("truncated.txt.gz", r"EOFException: Unexpected end of (input|deflate|ZLIB input) stream"),
        ("not_gzip.txt.gz", r"\(not gzip data: no gzip magic bytes at the start; \w+Exception: "),
        ("crc", r"ChecksumException: Checksum error: .*part-"),
    ],
)
def test_read_errors_name_their_root_cause(spark, tmp_path, name, cause):
    if name == "crc":
        path = read = _checksum_mismatch(spark, tmp_path)
    else:  # the bad file comes after three good ones: the message names it, not them
        read = tmp_path / "in"
        read.mkdir()
        for i in range(3):
            (read / f"a{i}.txt").write_text("1 2\n")
        path = read / name
        data = "".join(f"{i} {i + 1}\n" for i in range(20_000)).encode()
        path.write_bytes(gzip.compress(data)[:5000] if "truncated" in name else b"1 2\n3 4\n")
    message = fails(spark, tmp_path, read)
    assert message.startswith(f"ingest.train_path {path}")
    assert "a0.txt" not in message
    assert "cannot read (" in message
    assert re.search(cause, message), message
    assert not re.search(r"\bo\d+\.", message)  # no Py4J object names
