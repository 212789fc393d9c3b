"""Serving-database bench: Gowalla-sized vectors in pgvector, HNSW build, top-20 latency, recall.

Examples::

    # a finished run's vectors (export/embeddings of its current version)
    python -m bench.serving_db --run-dir runs/demo --json
    # random vectors of Gowalla's shape (29,858 users x 40,981 items x 64 dims)
    python -m bench.serving_db --users 29858 --items 40981 --dim 64 --json

Starts its own PostgreSQL with pgvector (PyPI ``pgserver``, in a temporary folder, deleted at the
end) unless ``--use-env`` (a server from the ``PG*`` variables). Loads the user and item vectors
with :func:`pipelines.serve.serving_db.load` (COPY, primary keys, then the HNSW index on the item
vectors with ``vector_ip_ops``, all before the swap; the recommendation lists are left empty),
then asks :func:`pipelines.serve.serving_vectors.top_items` for the top-20 of ``--queries`` users
sampled with ``--seed`` (one call per user, timed on the wall clock: the user's vector, then the
index query) and compares each with the exact top-20 (NumPy inner products over all items, no
items masked). ``recall@20`` is the mean overlap of the two sets. Prints a few lines and ends with
one JSON line: ``rows``, ``dim``, ``load_seconds`` (the load without the index build),
``index_seconds``, ``query_p50_ms``, ``query_p95_ms``, ``recall@20`` (plus sizes and settings).
``--vs-spark`` (with ``--run-dir``) queries the same users again with their training items
excluded (``export/seen``) and adds ``query_seen_p50_ms``, ``query_seen_p95_ms`` and
``recall@20_vs_spark``: the overlap with the run's exact Spark top-20.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.common import add_json_flag, log, parser, print_json
from pipelines.core.vector_bytes import bytes_to_matrix, vectors_to_bytes
from pipelines.core.versions import current_version
from pipelines.serve import serving_db
from pipelines.serve.serving_vectors import VectorIndex, top_items


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser("python -m bench.serving_db", __doc__)
    p.add_argument("--run-dir", help="a finished run (export/embeddings); else random vectors")
    p.add_argument("--users", type=int, default=29_858)
    p.add_argument("--items", type=int, default=40_981)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--index", choices=["hnsw", "ivfflat", "none"], default="hnsw")
    p.add_argument("--m", type=int, default=16, help="HNSW graph degree")
    p.add_argument("--ef-construction", type=int, default=64)
    p.add_argument("--ef-search", type=int, default=100)
    p.add_argument("--lists", type=int, default=0, help="IVFFlat lists (0: sqrt(items))")
    p.add_argument("--probes", type=int, default=10, help="IVFFlat lists probed")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--queries", type=int, default=1000, help="users queried (sampled)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--use-env", action="store_true", help="the server of the PG* variables")
    p.add_argument(
        "--vs-spark",
        action="store_true",
        help="with --run-dir: also query with each user's training items excluded and compare "
        "with the run's Spark top-K (recommend/recommendations)",
    )
    add_json_flag(p)
    return p.parse_args(argv)


def vectors(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Users and items as ``id, vector`` (float32 bytes), and the dimension."""
    if args.run_dir:
        data = serving_db.run_data(current_version(Path(args.run_dir)))
        users = pd.concat(list(data.users), ignore_index=True)
        items = pd.concat(list(data.items), ignore_index=True)
        return users, items, data.dim
    rng = np.random.default_rng(args.seed)

    def table(kind: str, n: int) -> pd.DataFrame:
        matrix = rng.normal(scale=0.1, size=(n, args.dim)).astype(np.float32)
        return pd.DataFrame(
            {"id": [f"{kind}{i}" for i in range(n)], "vector": vectors_to_bytes(matrix)}
        )

    return table("u", args.users), table("i", args.items), args.dim


@contextlib.contextmanager
def server(use_env: bool) -> Iterator[None]:
    """PG* pointing at a fresh pgserver PostgreSQL (pgvector inside), or the caller's server."""
    if use_env:
        yield
        return
    import pgserver

    folder = tempfile.mkdtemp(prefix="bench-pg-")
    srv = pgserver.get_server(Path(folder) / "data", cleanup_mode="delete")
    info = srv.get_postmaster_info()
    saved = {k: os.environ.get(k) for k in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE")}
    os.environ.update(
        PGHOST=str(info.socket_dir), PGPORT=str(info.port), PGUSER="postgres", PGDATABASE="postgres"
    )
    try:
        yield
    finally:
        srv.cleanup()
        shutil.rmtree(folder, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def exact_top(user_matrix: np.ndarray, item_matrix: np.ndarray, k: int) -> np.ndarray:
    """Positions of the exact top-``k`` items per user (inner product)."""
    scores = user_matrix @ item_matrix.T
    return np.argpartition(-scores, k - 1, axis=1)[:, :k]


def spark_lists(
    run_dir: Path, user_ids: list[str], k: int
) -> tuple[list[set[str]], list[set[str]]]:
    """Per user (original ids): the run's Spark top-``k`` (recommend/recommendations, training
    items masked) and its training items (export/seen, dense ids mapped back)."""
    import pyarrow.dataset as ds

    emb = ds.dataset(run_dir / "export" / "embeddings", format="parquet")
    ids = emb.to_table(columns=["kind", "node_id", "original_id"]).to_pandas()
    names = {
        kind: dict(zip(g["node_id"], g["original_id"], strict=True))
        for kind, g in ids.groupby("kind")
    }
    dense = {name: node for node, name in names["user"].items()}
    wanted = [dense[u] for u in user_ids]
    seen = ds.dataset(run_dir / "export" / "seen", format="parquet").to_table().to_pandas()
    seen = seen[seen["user"].isin(wanted)]
    by_user = {u: {names["item"][i] for i in g["item"]} for u, g in seen.groupby("user")}
    recs = (
        ds.dataset(run_dir / "recommend" / "recommendations", format="parquet")
        .to_table(columns=["user_id", "item_id", "rank"])
        .to_pandas()
    )
    recs = recs[recs["user_id"].isin(set(user_ids)) & (recs["rank"] <= k)]
    top = {u: set(g["item_id"]) for u, g in recs.groupby("user_id")}
    return [top.get(u, set()) for u in user_ids], [by_user.get(dense[u], set()) for u in user_ids]


def query_all(
    conn: Any, prefix: str, user_ids: list[str], excludes: list[set[str]], args: argparse.Namespace
) -> tuple[np.ndarray, list[set[str]]]:
    """Milliseconds per :func:`top_items` call and the item ids it returned, per user."""
    times, found = [], []
    for user, exclude in zip(user_ids, excludes, strict=True):
        t0 = time.perf_counter()
        got = top_items(
            conn,
            prefix=prefix,
            user_id=user,
            k=args.k,
            exclude=exclude,
            ef_search=args.ef_search,
            probes=args.probes,
        )
        times.append(time.perf_counter() - t0)
        found.append({i for i, _ in got})
    return np.array(times) * 1000, found


def overlap(found: list[set[str]], truth: list[set[str]], k: int) -> float:
    """Mean ``|found ∩ truth| / k``."""
    return round(float(np.mean([len(f & t) / k for f, t in zip(found, truth, strict=True)])), 4)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    users, items, dim = vectors(args)
    log(f"{len(users)} users, {len(items)} items, {dim} dims")
    data = serving_db.ServingData(
        users=[users], items=[items], recommendations=[], similar_items=[], dim=dim
    )
    index = VectorIndex(args.index, args.m, args.ef_construction, args.lists)
    rng = np.random.default_rng(args.seed)
    sample = rng.choice(len(users), size=min(args.queries, len(users)), replace=False)
    user_ids = [str(u) for u in users["id"].iloc[sample]]
    item_ids = items["id"].astype(str).to_numpy()
    exact = exact_top(
        bytes_to_matrix(users["vector"].iloc[sample], dim),
        bytes_to_matrix(items["vector"], dim),
        args.k,
    )
    prefix, result = "bench_serving", dict[str, Any]()
    with serving_db.connect() as conn:
        started = time.perf_counter()
        out = serving_db.load(conn, data, prefix=prefix, version="bench", index=index)
        total = time.perf_counter() - started
        log(f"loaded in {total:.1f} s ({out['vector_type']}, index {out['index']})")
        ms, found = query_all(conn, prefix, user_ids, [set()] * len(user_ids), args)
        if args.vs_spark:
            spark_top, seen = spark_lists(current_version(Path(args.run_dir)), user_ids, args.k)
            ms_seen, found_seen = query_all(conn, prefix, user_ids, seen, args)
            result = {
                "query_seen_p50_ms": round(float(np.percentile(ms_seen, 50)), 2),
                "query_seen_p95_ms": round(float(np.percentile(ms_seen, 95)), 2),
                f"recall@{args.k}_vs_spark": overlap(found_seen, spark_top, args.k),
            }
    return {
        "rows": len(users) + len(items),
        "users": len(users),
        "items": len(items),
        "dim": dim,
        "vector_type": out["vector_type"],
        "index": out["index"],
        "m": args.m,
        "ef_construction": args.ef_construction,
        "ef_search": args.ef_search,
        "load_seconds": round(total - out["index_seconds"], 2),
        "copy_seconds": out["copy_seconds"],
        "index_seconds": out["index_seconds"],
        "queries": len(sample),
        "query_p50_ms": round(float(np.percentile(ms, 50)), 2),
        "query_p95_ms": round(float(np.percentile(ms, 95)), 2),
        f"recall@{args.k}": overlap(found, [set(item_ids[e]) for e in exact], args.k),
        **result,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with server(args.use_env):
        result = measure(args)
    for key, value in result.items():
        log(f"{key:<16}{value}")
    print_json(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
