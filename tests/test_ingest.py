"""Ingest stage: every bad-input case lands in rejected/ with file, line and reason; nothing lost.

Inputs are built inline in tmp_path; expected values are worked out by hand in the comments.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.ingest import main as ingest_main
from pipelines.core.config import IngestConfig
from pipelines.core.stages import MARKER, run_stage
from pipelines.ingest import stage as ingest_io
from pipelines.ingest.formats import Layout
from pipelines.ingest.read import list_files, read_text
from pipelines.ingest.stage import IngestError, check_counts, ingest, map_back, read_ingested

PARTS = ("accepted", "rejected", "duplicates_removed", "self_loops_removed")


def run(spark, out: Path, **cfg):
    counts = ingest(spark, IngestConfig(**cfg), out)
    assert counts["rows_read"] == sum(counts[p] for p in PARTS)
    return counts, read_ingested(spark, out)


def run_in(spark, tmp_path: Path, train: str, test: str | None = None, **cfg):
    """:func:`run` on the files ``train`` (and ``test``) of ``tmp_path`` into ``tmp_path / out``."""
    if test is not None:
        cfg["test_path"] = str(tmp_path / test)
    return run(spark, tmp_path / "out", train_path=str(tmp_path / train), **cfg)


def rejected(tables) -> set[tuple[str, int, str]]:
    rows = tables["rejected"].collect()
    return {(Path(r.source_file).name, r.line_number, r.reason) for r in rows}


def rows_of(df, *cols) -> list[tuple]:
    return sorted(tuple(r[c] for c in cols) for r in df.collect())


def dictionary(tables, kind: str) -> list[tuple[str, int]]:
    d = tables["dictionary"].where(f"kind = '{kind}'")
    return sorted((r.original_id, r.node_id) for r in d.collect())


# ---------------------------------------------------------------- edge lists: every bad-row case
EDGES_CSV = (
    b"src,dst,weight\r\n"  # 1 header
    b"1,2,0.5\r\n"  # 2 ok
    b"2,3,1.5\r\n"  # 3 ok
    b"1,2,9\r\n"  # 4 duplicate of line 2 (line 2's weight is kept)
    b"3,3,1\r\n"  # 5 self-loop
    b"4,5\r\n"  # 6 wrong column count
    b",5,1\r\n"  # 7 empty id
    b"x7,5,1\r\n"  # 8 non-numeric id
    b"4,5,-1\r\n"  # 9 negative weight
    b"4,5,NaN\r\n"  # 10 NaN weight
    b"4,5,heavy\r\n"  # 11 non-numeric weight
    b"4,\xff5,1\r\n"  # 12 undecodable bytes
    b"# a comment\r\n"  # 13 skipped
    b"\r\n"  # 14 skipped
    b"5,4,inf\r\n"  # 15 infinite weight
    b"99999999999999999999,1,1\r\n"  # 16 id out of int64 range
    b' "6" , 1 ,2\r\n'  # 17 ok after trimming and unquoting: 6 -> 1
)
EDGES_TEST_TSV = (
    b"source\ttarget\tw\n"  # 1 header (ingest.header applies to every input)
    b"1\t2\t0.7\n"  # 2 ok (test)
    b"2\t8\t1\n"  # 3 node 8 not in train
    b"2\t2\t1\n"  # 4 self-loop (test)
    b"1\t2\t0.7\n"  # 5 duplicate of test line 2 (train 1->2 is another split)
)
EDGES_REJECTED = {
    ("edges.csv", 6, "wrong column count (expected 3, got 2)"),
    ("edges.csv", 7, "empty id"),
    ("edges.csv", 8, "non-numeric id"),
    ("edges.csv", 9, "negative weight"),
    ("edges.csv", 10, "NaN weight"),
    ("edges.csv", 11, "non-numeric weight"),
    ("edges.csv", 12, "undecodable bytes"),
    ("edges.csv", 15, "infinite weight"),
    ("edges.csv", 16, "id out of int64 range"),
    ("test.tsv", 3, "unknown node in test"),
}


def test_edges_csv_every_bad_row_quarantined(spark, tmp_path):
    (tmp_path / "edges.csv").write_bytes(EDGES_CSV)
    (tmp_path / "test.tsv").write_bytes(EDGES_TEST_TSV)
    counts, tables = run_in(
        spark, tmp_path, "edges.csv", "test.tsv", format="edges", header=True, weighted=True
    )
    assert rejected(tables) == EDGES_REJECTED
    # Dense ids in numeric order of the training ids 1, 2, 3, 6.
    assert dictionary(tables, "node") == [("1", 0), ("2", 1), ("3", 2), ("6", 3)]
    assert rows_of(tables["edges"], "split", "src", "dst", "weight") == [
        ("test", 0, 1, 0.7),
        ("train", 0, 1, 0.5),
        ("train", 1, 2, 1.5),
        ("train", 3, 0, 2.0),
    ]
    # 14 data rows in train (17 lines - header, comment, blank) + 4 in test (5 - header).
    assert counts == {
        "rows_read": 18,
        "accepted": 4,
        "rejected": 10,
        "duplicates_removed": 2,
        "self_loops_removed": 2,
        "tombstoned": 0,
        "lines_skipped": 4,
        "nodes": 4,
        "accepted_train": 3,
        "accepted_test": 1,
    }
    bad = {r.line_number: r for r in tables["rejected"].collect()}
    assert bad[6].raw == "4,5"  # CRLF stripped
    assert bad[12].raw == "4,\ufffd5,1"
    assert bytes(bad[12].raw_bytes) == b"4,\xff5,1"  # the exact bytes are kept
    assert bad[6].raw_bytes is None


# ------------------------------------------------- SNAP text: gzip, # comments, CRLF, two files
def test_snap_gzip_folder_line_numbers_per_file(spark, tmp_path):
    folder = tmp_path / "snap"
    folder.mkdir()
    a = b"# Directed graph: test\r\n# FromNodeId\tToNodeId\r\n1\t2\r\n2\t3\r\nbad\t1\r\n"
    (folder / "a 1.txt.gz").write_bytes(gzip.compress(a))  # names Spark must escape
    (folder / "b[1].txt.gz").write_bytes(gzip.compress(b"3 4\n4\n4  1\n"))
    (folder / "_SUCCESS").write_bytes(b"")  # hidden from readers, as in Spark
    counts, tables = run(spark, tmp_path / "out", train_path=str(folder), format="edges")
    assert rejected(tables) == {
        ("a 1.txt.gz", 5, "non-numeric id"),
        ("b[1].txt.gz", 2, "wrong column count (expected 2, got 1)"),
    }
    assert rows_of(tables["edges"], "src", "dst") == [(0, 1), (1, 2), (2, 3), (3, 0)]
    assert counts["rows_read"] == 6 and counts["accepted"] == 4 and counts["rejected"] == 2
    assert counts["lines_skipped"] == 2 and counts["nodes"] == 4


def test_line_numbers_exact_across_file_splits(spark, tmp_path):
    """Files cut into many splits (and packed together) still number every line exactly."""
    lines = [f"# c{i}" if i % 7 == 0 else f"{i}\t{i + 1}" for i in range(1, 301)]
    (tmp_path / "big.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "small.txt").write_text("# x\n5\t6\n")
    old = spark.conf.get("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.maxPartitionBytes", "256")
    try:
        files = list_files(spark, str(tmp_path), what="test")
        layout = Layout("edges", ("src", "dst"), ("node", "node"), False, False)
        text = read_text(spark, files, header=False, layout=layout, pattern="\t", what="t")
        got = {(Path(r.source_file).name, r.line_number, r.value) for r in text.lines.collect()}
        assert spark.read.text(str(tmp_path / "big.txt")).rdd.getNumPartitions() > 5
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", old)
    expected = {("big.txt", i, v) for i, v in enumerate(lines, 1) if not v.startswith("#")}
    assert got == expected | {("small.txt", 2, "5\t6")}
    assert text.lines_skipped == 300 // 7 + 1


# ---------------------------------------------------------------------------- Parquet input
def test_parquet_folder_with_aliases(spark, tmp_path):
    folder = tmp_path / "pq"
    folder.mkdir()
    table = pa.table(
        {
            "source": pa.array([1, None, 2, 3, 2], pa.int64()),
            "target": pa.array([2, 3, 3, 1, 1], pa.int64()),
            "weight": pa.array([1.0, 1.0, -2.0, math.nan, 0.0]),
        }
    )
    pq.write_table(table, folder / "part-0.parquet")
    (folder / "_SUCCESS").write_bytes(b"")
    counts, tables = run(
        spark, tmp_path / "out", train_path=str(folder), format="edges", weighted=True
    )
    assert rejected(tables) == {
        ("part-0.parquet", 2, "empty id"),
        ("part-0.parquet", 3, "negative weight"),
        ("part-0.parquet", 4, "NaN weight"),
    }
    assert rows_of(tables["edges"], "src", "dst", "weight") == [(0, 1, 1.0), (1, 0, 0.0)]
    assert counts["rows_read"] == 5 and counts["accepted"] == 2 and counts["nodes"] == 2
    raw = {r.line_number: json.loads(r.raw) for r in tables["rejected"].collect()}
    assert raw[3] == {"src": 2, "dst": 3, "weight": -2.0}


# ---------------------------------------------------------------------- knowledge-graph triples
def test_kg_triples_tsv_with_test_split(spark, tmp_path):
    (tmp_path / "train.tsv").write_text(
        "/m/a\t/r/x\t/m/b\n"  # 1
        "/m/b\t/r/y\t/m/c\n"  # 2
        "/m/c\t/r/x\n"  # 3 wrong column count
        "/m/a\t\t/m/c\n"  # 4 empty relation
    )
    (tmp_path / "test.tsv").write_text(
        "/m/a\t/r/x\t/m/c\n"  # 1 ok
        "/m/z\t/r/x\t/m/a\n"  # 2 unknown head
        "/m/a\t/r/q\t/m/b\n"  # 3 unknown relation
    )
    counts, tables = run_in(
        spark, tmp_path, "train.tsv", "test.tsv", format="triples", numeric_ids=False
    )
    assert rejected(tables) == {
        ("train.tsv", 3, "wrong column count (expected 3, got 2)"),
        ("train.tsv", 4, "empty id"),
        ("test.tsv", 2, "unknown entity in test"),
        ("test.tsv", 3, "unknown relation in test"),
    }
    assert dictionary(tables, "entity") == [("/m/a", 0), ("/m/b", 1), ("/m/c", 2)]
    assert dictionary(tables, "relation") == [("/r/x", 0), ("/r/y", 1)]
    assert rows_of(tables["edges"], "split", "src", "rel", "dst") == [
        ("test", 0, 0, 2),
        ("train", 0, 0, 1),
        ("train", 1, 1, 2),
    ]
    assert counts["entities"] == 3 and counts["relations"] == 2 and counts["rows_read"] == 7


# ---------------------------------------------------------------- LightGCN lines and pairs
def test_lightgcn_lines_pairs_and_unknown_test_ids(spark, tmp_path):
    (tmp_path / "train.txt").write_text(
        "10 5 7 5\n"  # 1: pairs (10,5) (10,7) and a duplicate (10,5)
        "11 7 x9 8\n"  # 2: (11,x9) rejected alone, (11,7) (11,8) kept
        "u12 1 2 3\n"  # 3: bad user: the whole line is ONE rejected row
        "13\n"  # 4: a user without items
        "  14 5  \n"  # 5: surrounding spaces are fine
    )
    (tmp_path / "test.txt").write_text("10 8 7\n12 5\n11 99\n")
    counts, tables = run_in(spark, tmp_path, "train.txt", "test.txt", format="lightgcn")
    assert rejected(tables) == {
        ("train.txt", 2, "non-numeric id"),
        ("train.txt", 3, "non-numeric id"),
        ("train.txt", 4, "no items"),
        ("test.txt", 2, "unknown user in test"),
        ("test.txt", 3, "unknown item in test"),
    }
    raws = {(Path(r.source_file).name, r.line_number): r.raw for r in tables["rejected"].collect()}
    assert raws[("train.txt", 2)] == "11 x9" and raws[("train.txt", 3)] == "u12 1 2 3"
    assert dictionary(tables, "user") == [("10", 0), ("11", 1), ("14", 2)]
    assert dictionary(tables, "item") == [("5", 0), ("7", 1), ("8", 2)]
    assert rows_of(tables["interactions"], "split", "user", "item") == [
        ("test", 0, 1),
        ("test", 0, 2),
        ("train", 0, 0),
        ("train", 0, 1),
        ("train", 1, 1),
        ("train", 1, 2),
        ("train", 2, 0),
    ]
    # rows: train 3 + 3 + 1 + 1 + 1 = 9, test 2 + 1 + 1 = 4.
    assert counts == {
        "rows_read": 13,
        "accepted": 7,
        "rejected": 5,
        "duplicates_removed": 1,
        "self_loops_removed": 0,
        "tombstoned": 0,
        "lines_skipped": 0,
        "users": 3,
        "items": 3,
        "accepted_train": 5,
        "accepted_test": 2,
    }


def test_pairs_csv_header_timestamps_string_ids_round_trip(spark, tmp_path):
    (tmp_path / "pairs.csv").write_text(
        "user,item,timestamp\n"  # 1 header
        "alice,book,100\nbob,film,200\nalice,film,300\n"  # 2-4 ok
        "carol,,400\n"  # 5 empty id
        "dave,book,yesterday\n"  # 6 non-numeric timestamp
    )
    counts, tables = run_in(
        spark,
        tmp_path,
        "pairs.csv",
        format="pairs",
        header=True,
        numeric_ids=False,
        timestamped=True,
    )
    assert rejected(tables) == {
        ("pairs.csv", 5, "empty id"),
        ("pairs.csv", 6, "non-numeric timestamp"),
    }
    assert dictionary(tables, "user") == [("alice", 0), ("bob", 1)]
    assert dictionary(tables, "item") == [("book", 0), ("film", 1)]
    df = tables["interactions"]
    assert df.columns == ["user", "item", "ts", "split"]
    back = map_back(
        map_back(df, tables["dictionary"], "user", "user"), tables["dictionary"], "item", "item"
    )
    assert back.columns == df.columns
    assert rows_of(back, "user", "item", "ts") == [
        ("alice", "book", 100),
        ("alice", "film", 300),
        ("bob", "film", 200),
    ]
    assert counts["accepted"] == 3 and counts["rejected"] == 2 and counts["rows_read"] == 5


def test_gowalla_lines_map_to_themselves(spark, tmp_path, data_dir):
    train = (data_dir / "gowalla" / "train.txt").read_text().splitlines()[:5]
    test = (data_dir / "gowalla" / "test.txt").read_text().splitlines()[:5]
    (tmp_path / "train.txt").write_text("\n".join(train) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(test) + "\n")
    counts, tables = run_in(spark, tmp_path, "train.txt", "test.txt")
    pairs = {
        s: [(int(t[0]), int(i)) for t in (ln.split() for ln in lines) for i in t[1:]]
        for s, lines in (("train", train), ("test", test))
    }
    items = {i for _, i in pairs["train"]}
    assert items == set(range(len(items)))  # the first users' items are 0..n-1: identity
    d = tables["dictionary"].collect()
    assert d and all(r.original_id == str(r.node_id) for r in d)
    got = rows_of(tables["interactions"], "split", "user", "item")
    known = [p for p in pairs["test"] if p[1] in items]
    assert got == sorted(
        [("train", u, i) for u, i in pairs["train"]] + [("test", u, i) for u, i in known]
    )
    assert counts["rejected"] == len(pairs["test"]) - len(known)
    assert counts["users"] == 5 and counts["items"] == len(items)
    assert {r.reason for r in tables["rejected"].collect()} == {"unknown item in test"}


# ----------------------------------------------------------------------- inputs that fail fast
def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "data", "cfg", "problem"),
    [
        ("missing.txt", None, {}, "not found"),
        ("empty.txt", b"", {}, "empty file"),
        ("comments.txt.gz", gzip.compress(b"# only\n\n# comments\n"), {}, "empty file"),
        ("header_only.csv", b"src,dst\n", {"header": True}, "empty file"),
        ("cols.csv", b"a,b,c\n1,2,3\n", {"header": True}, "wrong schema: header has 3"),
        ("names.csv", b"src,weight\n1,2\n", {"header": True}, "does not name 'dst'"),
        ("bad.parquet", None, {}, "wrong schema: missing column(s) dst"),
        ("text.parquet", b"1 2\n", {}, "cannot read as Parquet"),
        ("corrupt.txt.gz", b"\x1f\x8b\x08\x00garbage", {}, "cannot read"),
        ("all_bad.txt", b"a b\nc d\n", {}, "no valid row"),
    ],
)
def test_bad_files_fail_with_one_message(spark, tmp_path, name, data, cfg, problem):
    path = tmp_path / name
    if name == "bad.parquet":
        pq.write_table(pa.table({"src": [1], "other": [2]}), path)
    elif data is not None:
        path.write_bytes(data)
    with pytest.raises(IngestError) as err:
        ingest(spark, IngestConfig(train_path=str(path), format="edges", **cfg), tmp_path / "o")
    message = str(err.value)
    assert name in message and problem in message
    assert "\n" not in message and "Py4J" not in message and "at org.apache" not in message


def test_missing_test_file_names_the_key(spark, tmp_path):
    train = _write(tmp_path, "train.txt", b"1 2\n")
    cfg = IngestConfig(train_path=str(train), test_path=str(tmp_path / "nope.txt"))
    with pytest.raises(IngestError, match=r"ingest.test_path .*nope.txt: not found"):
        ingest(spark, cfg, tmp_path / "o")


# ------------------------------------------------------------- the job, reruns, killed stages
def test_job_policies_off_marker_and_skip_on_rerun(spark, tmp_path, capsys):
    """Policies off here; on in the edge-list test above (same self-loop and duplicate)."""
    edges = _write(tmp_path, "e.txt", b"1 2\n2 3\n3 3\n1 2\n")
    run_dir = tmp_path / "run"
    argv = [
        "--run-dir",
        str(run_dir),
        "--set",
        f"ingest.train_path={edges}",
        "--set",
        "ingest.format=edges",
        "--set",
        "spark.shuffle_partitions=4",
        "--set",
        "ingest.drop_duplicates=false",
        "--set",
        "ingest.drop_self_loops=false",
    ]
    assert ingest_main(argv) == 0
    marker = json.loads((run_dir / "ingest" / MARKER).read_text())
    check_counts(marker["counts"])
    assert marker["counts"]["accepted"] == 4 and marker["counts"]["rows_read"] == 4
    assert marker["counts"]["self_loops_removed"] == marker["counts"]["duplicates_removed"] == 0
    edges_out = read_ingested(spark, run_dir / "ingest")["edges"]
    assert rows_of(edges_out, "src", "dst") == [(0, 1), (0, 1), (1, 2), (2, 2)]
    assert "train_path: " + str(edges) in (run_dir / "config.yaml").read_text()
    assert ingest_main(argv) == 0
    assert "skipped" in capsys.readouterr().out
    assert json.loads((run_dir / "ingest" / MARKER).read_text()) == marker


def test_job_bad_input_exit_code_2(spark, tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = [
        "--run-dir",
        str(run_dir),
        "--set",
        f"ingest.train_path={tmp_path / 'gone.txt'}",
        "--set",
        "spark.shuffle_partitions=4",
    ]
    assert ingest_main(argv) == 2
    err = capsys.readouterr().err
    assert "gone.txt: not found" in err and "Traceback" not in err
    assert not (run_dir / "ingest").exists() and not list(run_dir.glob(".ingest.tmp-*"))


def test_stage_killed_midway_leaves_no_partial_output(spark, tmp_path, monkeypatch):
    edges = _write(tmp_path, "e.txt", b"1 2\n2 3\n")
    run_dir = tmp_path / "run"
    seen: list[Path] = []

    def killed(*args, **kwargs):
        seen.extend(run_dir.glob(".ingest.tmp-*/dictionary"))  # partial output exists here
        raise RuntimeError("killed")

    monkeypatch.setattr(ingest_io, "_flag", killed)
    cfg = IngestConfig(train_path=str(edges), format="edges")
    with pytest.raises(RuntimeError, match="killed"):
        run_stage(run_dir, "ingest", "h", lambda out: ingest(spark, cfg, out), spark=spark)
    assert len(seen) == 1
    assert not (run_dir / "ingest").exists() and not list(run_dir.glob(".ingest.tmp-*"))
