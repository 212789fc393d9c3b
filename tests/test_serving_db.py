"""PostgreSQL serving tables against a real server with pgvector (pgserver's bundled build)."""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pgserver
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs import serve_load
from pipelines.serve import serving_db
from pipelines.serve.seam import topk_block
from pipelines.serve.serving_db import ServingData, table_name
from pipelines.serve.serving_vectors import VectorIndex, similar_to_item, top_items

REPO = Path(__file__).resolve().parents[1]
PG_VARS = ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGSERVICE")


@pytest.fixture(scope="module")
def postgres():
    """PG* of a PostgreSQL with pgvector started here (pgserver, a temporary folder), then deleted.

    The PyPI wheel ``pgserver`` bundles PostgreSQL with pgvector's ``vector`` extension (Debian 12
    has no pgvector package). Run as root, the server runs as the system user ``pgserver``: the
    folder is a plain ``/tmp`` one (pytest resets its own base folder to mode 700).
    """
    folder = Path(tempfile.mkdtemp(prefix="graphpipe-pg-"))
    folder.chmod(0o755)
    server = pgserver.get_server(folder / "data", cleanup_mode="delete")
    info = server.get_postmaster_info()
    values = {
        "PGHOST": str(info.socket_dir),
        "PGPORT": str(info.port),
        "PGUSER": "postgres",
        "PGDATABASE": "postgres",
    }
    with pytest.MonkeyPatch.context() as mp:
        for key in PG_VARS:  # never the caller's server
            mp.delenv(key, raising=False)
        for key, value in values.items():
            mp.setenv(key, value)
        try:
            yield values
        finally:
            server.cleanup()
            shutil.rmtree(folder, ignore_errors=True)


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


@pytest.mark.parametrize("pgvector", [True, False])
def test_load_round_trips_vectors_ids_and_lists(postgres, prefix, pgvector):
    data, users, items, recs = version_data(4, 5)
    with serving_db.connect() as conn:
        assert serving_db.pgvector_available(conn)  # the test server really has pgvector
        out = serving_db.load(
            conn, data, prefix=prefix, version="v1", run_dir="/r", pgvector=pgvector
        )
        assert (out["vector_type"], out["index"]) == (
            ("vector", "hnsw") if pgvector else ("real[]", "none")
        )
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


def vectors_data(n_users, n_items, dim, seed=0):
    """Random user and item vectors (ids ``u00012``, ``i00034``: text order = number order)."""
    rng = np.random.default_rng(seed)
    users = rng.normal(size=(n_users, dim)).astype(np.float32)
    items = rng.normal(size=(n_items, dim)).astype(np.float32)
    empty = pd.DataFrame({c: [] for c in ("user_id", "item_id", "score", "rank")})
    data = ServingData(
        users=[pd.DataFrame({"id": uid(range(n_users)), "vector": [r.tobytes() for r in users]})],
        items=[pd.DataFrame({"id": iid(range(n_items)), "vector": [r.tobytes() for r in items]})],
        recommendations=[empty],
        similar_items=[empty.rename(columns={"user_id": "item_id", "item_id": "similar_id"})],
        dim=dim,
    )
    return data, users, items


def uid(numbers):
    return [f"u{n:05d}" for n in numbers]


def iid(numbers):
    return [f"i{n:05d}" for n in numbers]


def exact_top(users, items, seen, k):
    """The pipeline's exact top-K (seam.topk_block: inner product, seen items masked)."""
    top, scores = topk_block(users, items, np.arange(len(items)), seen, k, threads=0)
    return [
        [(iid([i])[0], float(s)) for i, s in zip(r, sr, strict=True) if i >= 0]
        for r, sr in zip(top, scores, strict=True)
    ]


def test_hnsw_top_k_agrees_with_exact(postgres, prefix):
    data, users, items = vectors_data(120, 3000, 32)
    rng = np.random.default_rng(1)
    seen = [np.sort(rng.choice(3000, size=rng.integers(0, 40), replace=False)) for _ in users]
    exact = exact_top(users, items, seen, 20)
    with serving_db.connect() as conn:
        out = serving_db.load(conn, data, prefix=prefix, version="v1")
        assert (out["vector_type"], out["index"], out["item_vectors"]) == ("vector", "hnsw", 3000)
        assert out["index_seconds"] > 0
        got = [
            top_items(conn, prefix=prefix, user_id=u, k=20, exclude=iid(s))
            for u, s in zip(uid(range(len(users))), seen, strict=True)
        ]
        cur = conn.cursor()
        literal = "[" + ",".join(f"{v:.9g}" for v in users[0]) + "]"
        cur.execute(  # the query is answered from the HNSW index, not by a scan
            f"explain select item_id from {prefix}_item_vectors "
            f"order by vector <#> '{literal}'::vector limit 20"
        )
        plan = "\n".join(r[0] for r in cur.fetchall())
        assert "Index Scan using" in plan and "_hnsw" in plan, plan
    assert all(len(g) == 20 for g in got)
    assert not any(set(iid(s)) & {i for i, _ in g} for g, s in zip(got, seen, strict=True))
    recall = np.mean(
        [len({i for i, _ in g} & {i for i, _ in e}) / 20 for g, e in zip(got, exact, strict=True)]
    )
    assert recall >= 0.95, recall
    for g in got:  # the scores are the inner products, best first
        scores = np.array([s for _, s in g])
        assert np.all(np.diff(scores) <= 0)
    first = dict(exact[0])
    for item, score in got[0]:
        if item in first:
            assert score == pytest.approx(first[item], rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("pgvector", [False, True])
def test_exact_scans_equal_the_exact_top_k(postgres, prefix, pgvector):
    """real[] (no pgvector) scans exactly; with pgvector, past ef_search's 1000 candidates too."""
    data, users, items = vectors_data(6, 1500, 8, seed=3)
    rng = np.random.default_rng(2)
    many = 1100 if pgvector else 30  # k + 1100 excluded > 1000: the index cannot answer
    seen = [np.sort(rng.choice(1500, size=many, replace=False)) for _ in users]
    exact = exact_top(users, items, seen, 10)
    with serving_db.connect() as conn:
        out = serving_db.load(conn, data, prefix=prefix, version="v1", pgvector=pgvector)
        assert out["vector_type"] == ("vector" if pgvector else "real[]")
        for u, s, e in zip(uid(range(6)), seen, exact, strict=True):
            got = top_items(conn, prefix=prefix, user_id=u, k=10, exclude=iid(s))
            assert [i for i, _ in got] == [i for i, _ in e]
            assert [s for _, s in got] == pytest.approx([s for _, s in e], rel=1e-5, abs=1e-5)


def test_similar_items_and_vector_queries(postgres, prefix):
    data, users, items = vectors_data(3, 400, 8, seed=5)
    with serving_db.connect() as conn:
        index = VectorIndex("ivfflat", lists=4)  # probes (10) >= lists: every list is scanned
        serving_db.load(conn, data, prefix=prefix, version="v1", index=index)
        got = similar_to_item(conn, prefix=prefix, item_id="i00007", k=5)
        by_vector = top_items(conn, prefix=prefix, vector=items[7], k=6)
        with pytest.raises(KeyError, match="u99999"):
            top_items(conn, prefix=prefix, user_id="u99999")
    scores = items @ items[7]
    order = [i for i in np.lexsort((np.arange(400), -scores)) if i != 7][:5]
    assert [i for i, _ in got] == iid(order)
    assert [i for i, _ in by_vector] == iid(np.lexsort((np.arange(400), -scores))[:6])


def test_real_array_fallback_without_the_extension(postgres, prefix, monkeypatch):
    """A role that cannot create pgvector (not a trusted extension) gets exact answers in real[]."""
    db, role = f"db_{prefix}", f"r_{prefix}"
    with serving_db.connect() as conn:
        conn.execute(f"create role {role} login")
        conn.execute(f"create database {db}")
    with psycopg.connect("", dbname=db, autocommit=True) as conn:
        conn.execute(f"grant create on schema public to {role}")
    monkeypatch.setenv("PGUSER", role)
    monkeypatch.setenv("PGDATABASE", db)
    data, users, items = vectors_data(2, 50, 4, seed=7)
    with serving_db.connect() as conn:
        assert not serving_db.pgvector_available(conn)
        out = serving_db.load(conn, data, prefix=prefix, version="v1")
        assert (out["vector_type"], out["index"], out["index_seconds"]) == ("real[]", "none", 0)
        got = top_items(conn, prefix=prefix, user_id="u00001", k=5)
    assert [i for i, _ in got] == [i for i, _ in exact_top(users[1:], items, [[]], 5)[0]]


def test_postgres_script_starts_a_server_with_pgvector():
    """scripts/postgres.sh (local serving) runs pgserver's PostgreSQL: pgvector is there."""
    pg_dir = Path(tempfile.mkdtemp(prefix="graphpipe-pg-"))
    pg_dir.chmod(0o755)  # run as root, the server runs as the user postgres
    env = {k: v for k, v in os.environ.items() if k not in PG_VARS}
    env.update(PG_DIR=str(pg_dir / "pg"), GRAPHPIPE_PYTHON=sys.executable)
    script = str(REPO / "scripts" / "postgres.sh")
    try:
        started = subprocess.run(
            ["bash", script, "start"], env=env, capture_output=True, text=True, timeout=300
        )
        assert started.returncode == 0, started.stderr
        assert "PostgreSQL) 16" in started.stderr  # pgserver's build, not Debian's 15
        values = dict(
            line.removeprefix("export ").split("=", 1)
            for line in started.stdout.splitlines()
            if line.startswith("export ")
        )
        params = {"PGHOST": "host", "PGPORT": "port", "PGUSER": "user", "PGPASSWORD": "password"}
        kwargs = {name: values[key] for key, name in params.items()}
        with psycopg.connect(dbname=values["PGDATABASE"], autocommit=True, **kwargs) as conn:
            assert serving_db.pgvector_available(conn)
            row = conn.execute("select '[1,2]'::vector <#> '[3,4]'::vector").fetchone()
        assert row == (-11.0,)
    finally:
        subprocess.run(["bash", script, "stop"], env={**env, "PG_CLEAN": "1"}, timeout=120)
        shutil.rmtree(pg_dir, ignore_errors=True)
