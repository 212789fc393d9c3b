"""The forget job: erasure over every output file, idempotence, shared items, two batches in a
row, a bad request file; plus the pieces (request validation, the per-leaf unlearning seam,
verification, tombstones) without the whole job."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs import export, forget, ingest, pipeline
from pipelines.core.config import load_config
from pipelines.core.vector_bytes import bytes_to_matrix, vectors_to_bytes
from pipelines.core.versions import current_version
from pipelines.forget.job import trained_config_differences
from pipelines.forget.requests import RequestFileError, read_requests
from pipelines.forget.seam import LeafForgetSettings, unlearn_leaf_from
from pipelines.forget.tombstones import drop_tombstoned, tombstone_key, write_tombstones
from pipelines.forget.verify import DeletedSet, verify_erased
from tests.test_pipeline_job import job_argv

SHARED_ITEM = 900  # held by users of every community, so by both leaves


def _data(root: Path) -> dict[str, list[int]]:
    """40 users (ids 100..139), 4 communities of 8 items (500..531) + one item everyone's
    neighbour: users u % 5 == 0 also hold item 900."""
    rng = np.random.default_rng(11)
    train, test, held = [], [], {}
    for u in range(40):
        pool = np.arange(8) + 8 * (u % 4)
        items = [int(i) + 500 for i in rng.choice(pool, size=7, replace=False)]
        tr = items[:5] + ([SHARED_ITEM] if u % 5 == 0 else [])
        held[u + 100] = tr
        train.append(f"{u + 100} " + " ".join(map(str, tr)))
        test.append(f"{u + 100} " + " ".join(map(str, items[5:])))
    (root / "train.txt").write_text("\n".join(train) + "\n")
    (root / "test.txt").write_text("\n".join(test) + "\n")
    return held


FORGOTTEN_RUN_DIR = ["CURRENT", "audit", "config.yaml", "tombstones", "versions"]
"""A run directory after a forget: the superseded base's stage folders are purged."""


def _argv(data: Path, run_dir: Path) -> list[str]:
    sets = ["train.epochs=3", "train.batch_size=64", "train.lr=0.02", "train.rounds=1"]
    sets += ["model.dim=8", "model.layers=2", "export.top_k=5", "export.ann_index=flat"]
    sets += ["train.threads=1", "partition.num_leaves=2", "spark.shuffle_partitions=2"]
    return job_argv(data, run_dir, *sets)


@pytest.fixture(scope="module")
def finished_run(spark, tmp_path_factory):
    """One finished, exported, two-leaf run shared by the tests (each copies it)."""
    root = tmp_path_factory.mktemp("forget")
    held = _data(root)
    run_dir = root / "run"
    assert pipeline.main(_argv(root, run_dir)) == 0
    assert export.main(_argv(root, run_dir)) == 0
    return root, run_dir, held


def _copy(finished_run, tmp_path: Path) -> tuple[Path, Path, dict[str, list[int]]]:
    root, run_dir, held = finished_run
    dst = tmp_path / "run"
    shutil.copytree(run_dir, dst)
    return root, dst, held


def _requests(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    lines = ["request_id,kind,id,other_id,timestamp"]
    lines += [f"{r},{k},{a},{b},2026-11-27T03:00:00Z" for r, k, a, b in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _parquet_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.read_bytes()[:4] == b"PAR1")


def _table(path: Path) -> pd.DataFrame:
    return pd.concat(
        [pd.read_parquet(f) for f in sorted(path.glob("*.parquet"))], ignore_index=True
    )


def _assert_erased(
    version: Path, users: set[str], items: set[str], edges: set[tuple[str, str]]
) -> dict[str, int]:
    """Independent of pipelines.forget.verify: every Parquet file, every id column; every
    other file as text. Returns the rows seen per table folder."""
    dictionary = _table(version / "ingest" / "dictionary")
    seen: dict[str, int] = {}
    for f in _parquet_files(version):
        df = pd.read_parquet(f)
        name = str(f.parent.relative_to(version))
        seen[name] = seen.get(name, 0) + len(df)
        for col in ("user_id",):
            if col in df:
                assert not set(df[col].astype(str)) & users, (f, col)
        for col in ("item_id", "similar_id"):
            if col in df:
                assert not set(df[col].astype(str)) & items, (f, col)
        if {"user_id", "item_id"} <= set(df.columns):
            assert not set(zip(df["user_id"], df["item_id"], strict=True)) & edges, f
        if "original_id" in df:
            kinds = df["kind"] if "kind" in df else pd.Series(["item"] * len(df))
            pairs = set(zip(kinds, df["original_id"].astype(str), strict=True))
            assert not pairs & ({("user", u) for u in users} | {("item", i) for i in items}), f
    assert not set(dictionary.loc[dictionary["kind"] == "user", "original_id"]) & users
    assert not set(dictionary.loc[dictionary["kind"] == "item", "original_id"]) & items
    for f in version.rglob("*.json"):
        text = f.read_text()
        for x in users | items:
            assert f'"{x}"' not in text, (f, x)
    return seen


def _dense(run_dir: Path, kind: str, original: str) -> int:
    d = _table(run_dir / "ingest" / "dictionary")
    return int(d.loc[(d["kind"] == kind) & (d["original_id"] == original), "node_id"].iloc[0])


def _dense_hits(
    version: Path, users: set[int], items: set[int], edges: set[tuple[int, int]]
) -> int:
    hits = 0
    for f in _parquet_files(version):
        df = pd.read_parquet(f)
        if "user" in df:
            hits += int(df["user"].isin(users).sum())
        for col in ("item", "similar"):
            if col in df:
                hits += int(df[col].isin(items).sum())
        if {"user", "item"} <= set(df.columns):
            hits += len(set(zip(df["user"], df["item"], strict=True)) & edges)
        if {"kind", "node_id"} <= set(df.columns):
            hits += int(((df["kind"] == "user") & df["node_id"].isin(users)).sum())
            hits += int(((df["kind"] == "item") & df["node_id"].isin(items)).sum())
        if f.name == "item_ids.parquet":
            hits += int(df["node_id"].isin(items).sum())
    return hits


def test_forget_two_batches_shared_item_idempotent(finished_run, tmp_path, capsys):
    root, run_dir, held = _copy(finished_run, tmp_path)
    argv = _argv(root, run_dir)
    before = {
        "users": {_dense(run_dir, "user", "105")},
        "items": {_dense(run_dir, "item", str(SHARED_ITEM))},
        "edges": {(_dense(run_dir, "user", "101"), _dense(run_dir, "item", str(held[101][0])))},
    }
    inter0 = _table(run_dir / "ingest" / "interactions")
    dict0 = _table(run_dir / "ingest" / "dictionary")
    emb0 = _table(run_dir / "aggregate" / "embeddings")
    assignment = _table(run_dir / "partition" / "assignment")
    halo = _table(run_dir / "partition" / "halo_nodes")
    # The shared item is held by users of both leaves.
    item_users = inter0.loc[
        (inter0["item"] == next(iter(before["items"]))) & (inter0["split"] == "train"), "user"
    ]
    leaf_of = dict(
        zip(
            assignment.loc[assignment["kind"] == "user", "node_id"],
            assignment.loc[assignment["kind"] == "user", "leaf_id"],
            strict=True,
        )
    )
    assert {leaf_of[u] for u in item_users} == {0, 1}

    # Batch 1: user 105 (with all 8 interactions), the shared item 900 (8 users), the edge
    # (101, first item of 101), and an unknown user.
    req1 = _requests(
        tmp_path / "batch1.csv",
        [
            ("del-user", "user", "105", ""),
            ("del-user", "user", "no-such-user", ""),
            ("del-item", "item", str(SHARED_ITEM), ""),
            ("del-edge", "edge", "101", str(held[101][0])),
        ],
    )
    assert forget.main([*argv, "--requests", str(req1), "--steps", "3"]) == 0
    out = capsys.readouterr().out
    assert "leaves retrained   2/2" in out and "unknown elements   1" in out
    assert (run_dir / "CURRENT").read_text() == "versions/v1\n"
    v1 = current_version(run_dir)
    assert v1 == run_dir / "versions" / "v1"
    # The superseded base is purged: its files held the deleted data.
    assert sorted(p.name for p in run_dir.iterdir()) == FORGOTTEN_RUN_DIR
    users, items = {"105"}, {str(SHARED_ITEM)}
    edges = {("101", str(held[101][0]))}
    seen = _assert_erased(v1, users, items, edges)
    assert _dense_hits(v1, before["users"], before["items"], before["edges"]) == 0
    for table in (
        "ingest/dictionary",
        "ingest/interactions",
        "partition/assignment",
        "train/ego",
        "aggregate/embeddings",
        "recommend/recommendations",
        "export/embeddings",
        "export/seen",
        "export/ann",
    ):
        assert seen.get(table, 0) > 0, table
    assert not (v1 / "_work").exists()
    # Exact counts: every interaction (train and test) of user 105 and of item 900, and the
    # one edge.
    u105, i900 = next(iter(before["users"])), next(iter(before["items"]))
    gone = (inter0["user"] == u105) | (inter0["item"] == i900)
    e = next(iter(before["edges"]))
    gone |= (inter0["user"] == e[0]) & (inter0["item"] == e[1])
    inter1 = _table(v1 / "ingest" / "interactions")
    assert len(inter1) == len(inter0) - int(gone.sum())
    assert len(_table(v1 / "ingest" / "dictionary")) == len(dict0) - 2
    emb = _table(v1 / "aggregate" / "embeddings")
    kinds0 = (emb0["kind"] == "user").sum(), (emb0["kind"] == "item").sum()
    assert ((emb["kind"] == "user").sum(), (emb["kind"] == "item").sum()) == (
        kinds0[0] - 1,
        kinds0[1] - 1,
    )
    recs = _table(v1 / "recommend" / "recommendations")
    assert set(recs["user_id"]) == {str(u) for u in range(100, 140)} - users
    meta = json.loads((v1 / "_VERSION.json").read_text())
    assert meta["leaves_retrained"] == [0, 1] and meta["verification"]["leaks"] == 0
    audit = json.loads((run_dir / "audit" / "forget-del-user.json").read_text())
    assert set(audit) == {
        "request_id",
        "requested_at",
        "applied_at",
        "version",
        "elements",
        "unknown",
        "leaves_retrained",
        "leaves_total",
        "verification",
        "seconds",
    }
    assert (audit["elements"], audit["unknown"], audit["leaves_total"]) == (2, 1, 2)
    assert audit["verification"]["passed"] is True
    assert '"105"' not in json.dumps(audit)
    tomb = pd.read_parquet(run_dir / "tombstones" / "batch-v1.parquet")
    assert set(tomb["key"]) == {
        tombstone_key("user", "105"),
        tombstone_key("user", "no-such-user"),
        tombstone_key("item", str(SHARED_ITEM)),
        tombstone_key("edge", "101", str(held[101][0])),
    }
    ego1 = _table(v1 / "train" / "ego")

    # The same file again: nothing changes.
    pointer = (run_dir / "CURRENT").read_bytes()
    assert forget.main([*argv, "--requests", str(req1)]) == 0
    assert "already applied" in capsys.readouterr().out
    assert (run_dir / "CURRENT").read_bytes() == pointer
    assert sorted(p.name for p in (run_dir / "versions").iterdir()) == ["v1"]

    # Batch 2: a user away from the shared item: only its leaf (and any leaf holding it as
    # halo) is retrained; every other leaf's nodes keep their ego vectors bit for bit.
    target = next(u for u in range(110, 140) if u % 5 != 0)
    dense_t = _dense(v1, "user", str(target))
    expected = {int(leaf_of[dense_t])} | set(
        halo.loc[(halo["kind"] == "user") & (halo["node_id"] == dense_t), "leaf_id"].astype(int)
    )
    req2 = _requests(tmp_path / "batch2.csv", [("del-2", "user", str(target), "")])
    assert forget.main([*argv, "--requests", str(req2), "--steps", "3"]) == 0
    capsys.readouterr()
    v2 = current_version(run_dir)
    assert v2.name == "v2" and not v1.exists()
    meta2 = json.loads((v2 / "_VERSION.json").read_text())
    assert meta2["leaves_retrained"] == sorted(expected) and meta2["parent"] == "v1"
    _assert_erased(v2, users | {str(target)}, items, edges)
    assert _dense_hits(v2, before["users"] | {dense_t}, before["items"], before["edges"]) == 0
    if len(expected) == 1:
        other = 1 - next(iter(expected))
        inter_v1 = _table(v2 / "ingest" / "interactions")
        other_users = {u for u, leaf in leaf_of.items() if leaf == other}
        other_items = set(inter_v1.loc[inter_v1["user"].isin(other_users), "item"])
        mine_items = set(inter_v1.loc[~inter_v1["user"].isin(other_users), "item"])
        only_other = other_items - mine_items
        ego2 = _table(v2 / "train" / "ego")
        a = ego1.set_index(["kind", "node_id"])["vector"]
        b = ego2.set_index(["kind", "node_id"])["vector"]
        keys = [("user", u) for u in other_users if ("user", u) in b.index]
        keys += [("item", i) for i in only_other]
        assert keys and all(a[k] == b[k] for k in keys)
    assert sorted(p.name for p in (run_dir / "audit").iterdir()) == [
        "forget-del-2.json",
        "forget-del-edge.json",
        "forget-del-item.json",
        "forget-del-user.json",
    ]

    # Jobs given the run dir work on its current version: the pipeline resumes v2 (every stage
    # already done there), writes no base stage folder back, and reports v2's metrics.
    markers = {p: p.read_bytes() for p in v2.glob("*/_STAGE.json")}
    assert pipeline.main(argv) == 0
    out = capsys.readouterr().out
    assert f"outputs in {v2}" in out and "done " not in out
    assert {p: p.read_bytes() for p in v2.glob("*/_STAGE.json")} == markers
    assert sorted(p.name for p in run_dir.iterdir()) == FORGOTTEN_RUN_DIR

    # A later ingest (tomorrow's scheduled run: a new run dir, the same tombstone folder)
    # drops every row naming a deleted user, item or edge, counts them, and keeps none of
    # them anywhere, not even among rejected rows.
    gone_users, gone_item = {"105", str(target)}, str(SHARED_ITEM)
    gone_edge = ("101", str(held[101][0]))
    expected = 0
    for name in ("train.txt", "test.txt"):
        for line in (root / name).read_text().split("\n"):
            if line:
                u, *its = line.split()
                expected += sum(
                    u in gone_users or i == gone_item or (u, i) == gone_edge for i in its
                )
    later = tmp_path / "later"
    tomb_dir = run_dir / "tombstones"
    assert ingest.main([*_argv(root, later), "--set", f"ingest.tombstones_dir={tomb_dir}"]) == 0
    capsys.readouterr()
    counts = json.loads((later / "ingest" / "_STAGE.json").read_text())["counts"]
    assert counts["tombstoned"] == expected > 0
    assert counts["rows_read"] == counts["accepted"] + counts["rejected"] + expected
    assert counts["rows_read"] == len(inter0)  # the first run's ingest read the same rows
    dictionary = _table(later / "ingest" / "dictionary")
    assert not set(dictionary.loc[dictionary["kind"] == "user", "original_id"]) & gone_users
    assert gone_item not in set(dictionary.loc[dictionary["kind"] == "item", "original_id"])
    inter = _table(later / "ingest" / "interactions")
    assert len(inter) == counts["accepted"] == len(inter0) - expected


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (
            "request_id,kind,id,other_id,timestamp\nr1,user,5,,2026-11-27\nr2,node,5,,2026-11-27\n",
            "row 2: kind",
        ),
        ("request_id,kind,id,other_id,timestamp\nr1,edge,5,,2026-11-27\n", "row 1: other_id"),
        ("request_id,kind,id,other_id,timestamp\nr 1,user,5,,2026-11-27\n", "row 1: request_id"),
        ("request_id,kind,id,other_id,timestamp\nr1,user,5,,yesterday\n", "row 1: timestamp"),
        ("request_id,kind,id,timestamp\nr1,user,5,2026-11-27\n", "missing column(s) other_id"),
    ],
)
def test_bad_request_file_changes_nothing(tmp_path, capsys, content, needle):
    run_dir = tmp_path / "run"
    (run_dir / "versions").mkdir(parents=True)
    (run_dir / "CURRENT").write_bytes(b"versions/v3\n")
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    argv = ["--run-dir", str(run_dir), "--requests", str(bad)]
    assert forget.main(argv) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and needle in err
    assert (run_dir / "CURRENT").read_bytes() == b"versions/v3\n"
    assert sorted(p.name for p in run_dir.rglob("*")) == ["CURRENT", "versions"]


def test_read_requests_parquet_and_csv(tmp_path):
    df = pd.DataFrame(
        {
            "request_id": ["a", "a", "b"],
            "kind": ["user", "user", "edge"],
            "id": ["1", "2", "1"],
            "other_id": [None, None, "9"],
            "timestamp": ["1764212400", "1764212400", "2026-11-27T03:00:00Z"],
        }
    )
    df.to_parquet(tmp_path / "r.parquet")
    got = read_requests(tmp_path / "r.parquet")
    assert got.request_ids == ["a", "b"]
    assert list(got.rows["other_id"]) == ["", "", "9"]
    with pytest.raises(RequestFileError, match="no such request file"):
        read_requests(tmp_path / "missing.csv")
    (tmp_path / "t.csv").write_text(
        "request_id,kind,id,other_id,timestamp\na,user,1,,2026-11-27\na,user,2,,2026-11-28\n"
    )
    with pytest.raises(RequestFileError, match="different timestamps"):
        read_requests(tmp_path / "t.csv")


def _leaf_frames():
    # Leaf 7: users 0,1; items 10,11; edges (0,10) (0,11) (1,10); user 1 deleted.
    edges = pd.DataFrame(
        {
            "leaf_id": [7, 7, 7],
            "user": [0, 0, 1],
            "item": [10, 11, 10],
            "deleted": [False, False, False],
        }
    )
    vecs = np.arange(16, dtype=np.float32).reshape(4, 4) / 10
    init = pd.DataFrame(
        {
            "leaf_id": [7] * 4,
            "kind": ["user", "user", "item", "item"],
            "node_id": [0, 1, 10, 11],
            "vector": vectors_to_bytes(vecs),
            "deleted": [False, True, False, False],
        }
    )
    return edges, init, vecs


def test_unlearn_leaf_drops_deleted_nodes_and_weights_retained():
    edges, init, vecs = _leaf_frames()
    settings = LeafForgetSettings(dim=4, layers=1, steps=0, threads=1, device="cpu")
    out = unlearn_leaf_from(edges, init, settings)
    assert list(zip(out["kind"], out["node_id"], out["w"], strict=True)) == [
        ("user", 0, 2.0),
        ("item", 10, 1.0),
        ("item", 11, 1.0),
    ]
    # Zero steps: the retained nodes keep the teacher's vectors exactly.
    np.testing.assert_array_equal(bytes_to_matrix(list(out["vector"]), 4), vecs[[0, 2, 3]])
    log = json.loads(out["leaf_log"].iloc[0])
    assert (log["interactions"], log["forgotten_interactions"]) == (2, 1)
    # With steps, the same rows (deterministic) and finite vectors.
    s2 = LeafForgetSettings(dim=4, layers=1, steps=3, threads=1, device="cpu")
    a, b = unlearn_leaf_from(edges, init, s2), unlearn_leaf_from(edges, init, s2)
    assert list(a["vector"]) == list(b["vector"]) and list(a["node_id"]) == [0, 10, 11]
    # A deleted edge only: both endpoints stay, weights drop by one.
    edges["deleted"] = [False, True, False]
    init["deleted"] = False
    out = unlearn_leaf_from(edges, init, settings)
    assert list(zip(out["node_id"], out["w"], strict=True)) == [(0, 1.0), (1, 1.0), (10, 2.0)]


def test_verify_finds_a_planted_leak(tmp_path):
    d = DeletedSet(
        users=frozenset({5}),
        items=frozenset({9}),
        edges=frozenset({(1, 2)}),
        user_ids=frozenset({"u5"}),
        item_ids=frozenset({"i9"}),
        edge_ids=frozenset({("u1", "i2")}),
    )
    clean = tmp_path / "v"
    (clean / "t").mkdir(parents=True)
    pq.write_table(
        pa.table(
            {"user": [1, 2], "item": [3, 2], "user_id": ["u1", "u2"], "item_id": ["i3", "i2"]}
        ),
        clean / "t" / "part-0.parquet",
    )
    (clean / "m.json").write_text(json.dumps({"users": 5, "note": "ok"}))
    (clean / "t" / "_SUCCESS").write_text("")
    report = verify_erased(clean, d)
    assert report.ok and report.as_dict() == {
        "files_scanned": 2,
        "files_skipped": 1,
        "parquet_rows_scanned": 2,
        "leaks": 0,
        "passed": True,
    }
    cases = [
        {"user": [5]},
        {"similar": [9]},
        {"user": [1], "item": [2]},
        {"kind": ["user"], "node_id": [5]},
        {"kind": ["item"], "original_id": ["i9"]},
        {"user_id": ["u1"], "item_id": ["i2"]},
        {"raw": ["u7 i9 i3"]},
    ]
    for i, cols in enumerate(cases):
        bad = tmp_path / f"bad{i}"
        shutil.copytree(clean, bad)
        pq.write_table(pa.table(cols), bad / "t" / "part-1.parquet")
        assert len(verify_erased(bad, d).leaks) == 1, cols
    bad = tmp_path / "badjson"
    shutil.copytree(clean, bad)
    (bad / "log.json").write_text(json.dumps([{"id": "u5"}]))
    assert not verify_erased(bad, d).ok
    # Earlier batches are checked through their tombstone hashes only.
    old = DeletedSet(
        keys=frozenset({tombstone_key("user", "u2"), tombstone_key("edge", "u1", "i3")})
    )
    assert sorted(x.split(": ")[1] for x in verify_erased(clean, old).leaks) == [
        "column user_id (tombstoned)",
        "column user_id,item_id (tombstoned)",
    ]
    # A user row with the dense id of a deleted item is no leak (ids are per kind).
    ok = tmp_path / "kinds"
    shutil.copytree(clean, ok)
    pq.write_table(pa.table({"kind": ["user"], "node_id": [9]}), ok / "t" / "part-1.parquet")
    assert verify_erased(ok, d).ok


def test_tombstones_filter_later_ingests(spark, tmp_path):
    rows = pd.DataFrame(
        {
            "kind": ["user", "item", "edge"],
            "key": [
                tombstone_key("user", "a"),
                tombstone_key("item", "x"),
                tombstone_key("edge", "b", "y"),
            ],
            "request_id": ["r1", "r1", "r2"],
            "applied_at": ["t"] * 3,
        }
    )
    write_tombstones(tmp_path, "v1", rows)
    df = spark.createDataFrame(
        [("a", "y", 1), ("b", "x", 2), ("b", "y", 3), ("b", "z", 4), ("c", "y", 5)],
        "user string, item string, line int",
    )
    kept = drop_tombstoned(spark, df, tmp_path).orderBy("line").collect()
    assert [r["line"] for r in kept] == [4, 5]
    assert drop_tombstoned(spark, df, tmp_path / "none") is df


def test_scrub_raw_drops_lines_naming_deleted_ids(spark):
    from pipelines.forget.filters import scrub_raw

    df = spark.createDataFrame(
        [(1, "u1 i2"), (2, "u1 i3"), (3, "u5\ti3"), (4, None), (5, "u1,i2,i7")],
        "line int, raw string",
    )
    d = DeletedSet(user_ids=frozenset({"u5"}), edge_ids=frozenset({("u1", "i2")}))
    # 329 edges: one Column expression per edge overflowed Spark's analyser; Python sets do not.
    many = frozenset({("u1", "i2")} | {(f"x{k}", f"y{k}") for k in range(329)})
    for edges in (d.edge_ids, many):
        got = scrub_raw(df, DeletedSet(user_ids=d.user_ids, edge_ids=edges))
        assert sorted(r["line"] for r in got.collect()) == [2, 4]


def test_forget_checks_the_trained_config_key_by_key(finished_run, tmp_path, capsys):
    """A different model setting is refused naming the key; execution-only keys are not."""
    root, run_dir, _ = _copy(finished_run, tmp_path)
    req = _requests(tmp_path / "req.csv", [("k1", "user", "103", "")])
    argv = ["--requests", str(req), *_argv(root, run_dir)]
    assert forget.main([*argv, "--set", "train.lr=0.05"]) == 2
    err = capsys.readouterr().err
    assert "train.lr: run 0.02, now 0.05" in err
    assert not (run_dir / "versions").exists() and not (run_dir / "audit").exists()
    assert forget.main([*argv, "--set", "train.threads=2"]) == 0  # how it runs, not what it is
    version = current_version(run_dir)
    marker = json.loads((version / "train" / "_STAGE.json").read_text())
    assert marker["extra"]["config"]["train.threads"] == 1  # still the trained-with config
    assert marker["extra"]["config"]["train.lr"] == 0.02


def test_trained_config_differences_ignore_execution_keys_and_later_fields():
    cfg = load_config(None, ["train.lr=0.01", "train.threads=3"])
    recorded = cfg.flat_sections("ingest", "partition", "run", "model", "train")
    assert trained_config_differences(recorded, cfg) == []
    assert trained_config_differences({**recorded, "train.threads": 1}, cfg) == []
    assert trained_config_differences({**recorded, "train.lr": 0.02}, cfg) == [
        "train.lr: run 0.02, now 0.01"
    ]
    older = {k: v for k, v in recorded.items() if k != "ingest.tombstones_dir"}
    assert trained_config_differences(older, cfg) == []  # field added later, at its default
    assert trained_config_differences({**recorded, "train.eval_every": 0}, cfg) == []  # removed
    moved = load_config(None, ["train.lr=0.01", "ingest.tombstones_dir=/x"])
    assert trained_config_differences(older, moved) == [
        "ingest.tombstones_dir: run has none, now '/x'"
    ]
