"""PostgreSQL serving tables against a real server (scripts/postgres.sh, or PG* if set)."""

import os
import subprocess
import tempfile
import threading
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs import serve_load
from pipelines.serve import serving_db
from pipelines.serve.serving_db import ServingData, table_name

REPO = Path(__file__).resolve().parents[1]
PG_VARS = ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE")


@pytest.fixture(scope="module")
def postgres():
    """PG* of a running server: the caller's, or one started here (and stopped at the end)."""
    if all(os.environ.get(v) for v in ("PGHOST", "PGUSER", "PGDATABASE")):
        yield {v: os.environ[v] for v in PG_VARS if v in os.environ}
        return
    pg_dir = Path(tempfile.mkdtemp(prefix="graphpipe-pg-"))
    pg_dir.chmod(0o755)  # the server runs as a non-root user when tests run as root
    env = {**os.environ, "PG_DIR": str(pg_dir / "pg")}
    script = str(REPO / "scripts" / "postgres.sh")
    started = subprocess.run(
        ["bash", script, "start"], env=env, capture_output=True, text=True, timeout=600
    )
    if started.returncode != 0:
        pytest.fail(f"PostgreSQL did not start:\n{started.stderr}")  # a failure, never a skip
    values = dict(
        line.removeprefix("export ").split("=", 1)
        for line in started.stdout.splitlines()
        if line.startswith("export ")
    )
    with pytest.MonkeyPatch.context() as mp:
        for key, value in values.items():
            mp.setenv(key, value)
        try:
            yield values
        finally:
            subprocess.run(["bash", script, "stop"], env={**env, "PG_CLEAN": "1"}, timeout=120)


@pytest.fixture
def prefix():
    return f"t{uuid.uuid4().hex[:10]}"


def version_data(n_users, n_items, dim=3, seed=0):
    rng = np.random.default_rng(seed)
    users = rng.normal(size=(n_users, dim)).astype(np.float32)
    items = rng.normal(size=(n_items, dim)).astype(np.float32)
    uids = [f"u{i}" for i in range(n_users)]
    iids = [f'i,"{i}"' for i in range(n_items)]  # commas and quotes survive CSV COPY
    recs = pd.DataFrame(
        {
            "user_id": np.repeat(uids, 2),
            "item_id": [iids[(u + r) % n_items] for u in range(n_users) for r in range(2)],
            "score": np.float32(users.sum(1)).repeat(2),
            "rank": np.tile([1, 2], n_users).astype(np.int32),
        }
    )
    sims = pd.DataFrame(
        {"item_id": iids, "similar_id": iids[1:] + iids[:1], "score": 0.5, "rank": 1}
    )
    data = ServingData(
        users=[pd.DataFrame({"id": uids, "vector": [r.tobytes() for r in users]})],
        items=[pd.DataFrame({"id": iids, "vector": [r.tobytes() for r in items]})],
        recommendations=[recs],
        similar_items=[sims],
        dim=dim,
    )
    return data, users, items, recs


def test_load_round_trips_vectors_ids_and_lists(postgres, prefix):
    data, users, items, recs = version_data(4, 5)
    with serving_db.connect() as conn:
        out = serving_db.load(conn, data, prefix=prefix, version="v1", run_dir="/r")
        assert out["vector_type"] == ("vector" if serving_db.pgvector_available(conn) else "real[]")
        assert {k: out[k] for k in ("user_vectors", "item_vectors", "recommendations")} == {
            "user_vectors": 4,
            "item_vectors": 5,
            "recommendations": 8,
        }
        assert serving_db.live_version(conn, prefix=prefix) == "v1"
        cur = conn.cursor()
        cur.execute(f"select user_id, vector::real[] from {prefix}_user_vectors order by user_id")
        got = cur.fetchall()
        assert [r[0] for r in got] == [f"u{i}" for i in range(4)]
        assert np.array_equal(np.array([r[1] for r in got], np.float32), users)  # float32 exact
        cur.execute(f"select item_id from {prefix}_item_vectors order by item_id")
        assert [r[0] for r in cur.fetchall()] == sorted(f'i,"{i}"' for i in range(5))
        cur.execute(f"select user_id, item_id, score, rank from {prefix}_recommendations")
        back = pd.DataFrame(cur.fetchall(), columns=list(recs.columns))
        back = back.sort_values(["user_id", "rank"]).reset_index(drop=True)
        assert back[["user_id", "item_id", "rank"]].equals(
            recs[["user_id", "item_id", "rank"]].astype({"rank": "int64"})
        )
        assert np.array_equal(back["score"].to_numpy(np.float32), recs["score"].to_numpy())
        cur.execute(f"select counts->>'similar_items', dim, run_dir from {prefix}_meta")
        assert cur.fetchone() == ("5", 3, "/r")


def test_swap_seen_from_a_concurrent_reader(postgres, prefix):
    versions = {f"v{i}": (3 + i, 4 + 2 * i) for i in range(6)}  # users, items per version
    expected = {v: (u, i, 2 * u, i) for v, (u, i) in versions.items()}
    seen, errors, stop = [], [], threading.Event()
    single = (
        f"select m.version, (select count(*) from {prefix}_user_vectors), "
        f"(select count(*) from {prefix}_item_vectors), "
        f"(select count(*) from {prefix}_recommendations), "
        f"(select count(*) from {prefix}_similar_items) from {prefix}_meta m"
    )

    def reader():
        try:
            with serving_db.connect() as conn:
                while not stop.is_set():
                    with conn.transaction(), conn.cursor() as cur:
                        # one statement: all tables of one version
                        cur.execute(single)
                        seen.append(cur.fetchone())
                    with conn.transaction(), conn.cursor() as cur:
                        # several statements pinned by lock_for_reading
                        serving_db.lock_for_reading(cur, prefix=prefix)
                        row = []
                        for t in (
                            "meta",
                            "user_vectors",
                            "item_vectors",
                            "recommendations",
                            "similar_items",
                        ):
                            sql = f"select {'version' if t == 'meta' else 'count(*)'} from "
                            cur.execute(sql + table_name(prefix, t))
                            row.append(cur.fetchone()[0])
                        seen.append(tuple(row))
        except Exception as exc:  # reported below, never swallowed
            errors.append(exc)

    with serving_db.connect() as conn:
        first, (u, i) = next(iter(versions.items()))
        serving_db.load(conn, version_data(u, i)[0], prefix=prefix, version=first)
        thread = threading.Thread(target=reader)
        thread.start()
        try:
            for v, (u, i) in list(versions.items())[1:]:
                serving_db.load(conn, version_data(u, i)[0], prefix=prefix, version=v)
        finally:
            stop.set()
            thread.join(60)
        assert serving_db.live_version(conn, prefix=prefix) == "v5"
        cur = conn.cursor()
        cur.execute(f"select version from {prefix}_meta__old")  # the previous version is kept
        assert cur.fetchone() == ("v4",)
    assert not errors
    assert seen and all(tuple(s[1:]) == expected[s[0]] for s in seen), seen
    assert len({s[0] for s in seen}) >= 2  # the reader really saw swaps happen


def write_run(root: Path, with_similar: bool = True) -> None:
    (root / "export" / "embeddings").mkdir(parents=True)
    (root / "recommend" / "recommendations").mkdir(parents=True)
    vec = [np.array([1, 2], np.float32).tobytes(), np.array([3, 4], np.float32).tobytes()]
    emb = pa.table(
        {
            "kind": ["user", "item"],
            "node_id": [0, 0],
            "original_id": ["alice", "book"],
            "vector": vec,
        }
    )
    pq.write_table(emb, root / "export" / "embeddings" / "part-0.parquet")
    recs = pa.table(
        {
            "user": [0],
            "item": [0],
            "score": pa.array([11.0], pa.float32()),
            "rank": pa.array([1], pa.int32()),
            "user_id": ["alice"],
            "item_id": ["book"],
        }
    )
    pq.write_table(recs, root / "recommend" / "recommendations" / "part-0.parquet")
    if with_similar:
        (root / "recommend" / "similar_items").mkdir()


def test_serve_load_job_loads_then_skips(postgres, tmp_path, capsys):
    run = tmp_path / "run1"
    write_run(run)
    prefix = f"j{uuid.uuid4().hex[:8]}"
    argv = ["--run-dir", str(run), "--set", f"export.serving_table_prefix={prefix}"]
    assert serve_load.main(argv) == 0
    assert "version run1" in capsys.readouterr().out
    with serving_db.connect() as conn:
        cur = conn.cursor()
        cur.execute(
            f"select u.vector::real[], r.item_id, r.score from {prefix}_recommendations r "
            f"join {prefix}_user_vectors u using (user_id)"
        )
        assert cur.fetchall() == [([1.0, 2.0], "book", 11.0)]
    assert serve_load.main(argv) == 0
    assert "skipped" in capsys.readouterr().out
    assert serve_load.main([*argv, "--force", "--version", "again"]) == 0
    with serving_db.connect() as conn:
        assert serving_db.live_version(conn, prefix=prefix) == "again"


def test_serve_load_job_errors(postgres, tmp_path, monkeypatch, capsys):
    assert serve_load.main(["--run-dir", str(tmp_path / "none")]) == 2
    assert "missing input" in capsys.readouterr().err
    write_run(tmp_path / "r")
    monkeypatch.setenv("PGPORT", "1")  # nothing listens there
    monkeypatch.setenv("PGHOST", "127.0.0.1")
    assert serve_load.main(["--run-dir", str(tmp_path / "r")]) == 2
    assert "cannot connect to PostgreSQL" in capsys.readouterr().err
