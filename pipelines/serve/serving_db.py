"""Load a run's vectors and top-K lists into PostgreSQL, swapped in atomically.

Tables (``<prefix>`` from ``export.serving_table_prefix``)::

    <prefix>_meta             version, loaded_at, run_dir, vector_type, dim, counts (jsonb)
    <prefix>_user_vectors     user_id text PK, vector vector(d) | real[]
    <prefix>_item_vectors     item_id text PK, vector vector(d) | real[]
    <prefix>_recommendations  user_id, item_id, score real, rank int; PK (user_id, rank)
    <prefix>_similar_items    item_id, similar_id, score real, rank int; PK (item_id, rank)

A load writes fresh ``<table>__new`` tables with ``COPY ... FROM STDIN (FORMAT csv)`` and
commits; a second, short transaction then locks the live tables (``ACCESS EXCLUSIVE``, in the
order above), drops the previous backups, renames live -> ``<table>__old`` and new -> live, and
commits. A reader whose statement touches several tables therefore sees all of the old version
or all of the new one. Readers that need several statements to agree open a transaction and
call :func:`lock_for_reading` first (``ACCESS SHARE`` on every live table, same order: no
deadlock with the swap).

``vector`` columns use pgvector when the extension is installed in (or can be created in) the
database, else ``real[]``. With pgvector the item vectors get an HNSW index (``vector_ip_ops``:
the pipeline scores by inner product), built in the load's transaction, before the swap;
:mod:`pipelines.serve.serving_query` answers top-K queries through it (exactly, by a scan, over
``real[]``). Credentials come only from the libpq environment (``PGHOST``,
``PGPORT``, ``PGUSER``, ``PGPASSWORD``, ``PGDATABASE``); nothing is read from config files.
"""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.serve.serving_vectors import VectorIndex, build_index, table_name

__all__ = [
    "ServingData",
    "VectorIndex",
    "connect",
    "live_version",
    "load",
    "load_new_tables",
    "lock_for_reading",
    "pgvector_available",
    "run_data",
    "swap_in",
    "table_name",
]

TABLES = ("meta", "user_vectors", "item_vectors", "recommendations", "similar_items")
NEW, OLD = "__new", "__old"
_COPY_ROWS = 50_000


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - depends on the environment
        msg = "the serving database needs psycopg: pip install 'psycopg[binary]'"
        raise ImportError(msg) from exc
    return psycopg


def connect() -> Any:
    """An autocommit psycopg connection configured only by the ``PG*`` environment variables.

    The functions below take such a connection and open their own transactions.
    """
    return _psycopg().connect("", autocommit=True)


@dataclass(frozen=True)
class ServingData:
    """What one load writes; every table is an iterable of pandas batches.

    Attributes:
        users, items: ``id`` (original id) and ``vector`` (float32 bytes of ``dim`` values).
        recommendations: ``user_id, item_id, score, rank``.
        similar_items: ``item_id, similar_id, score, rank``.
        dim: Vector size.
    """

    users: Iterable[pd.DataFrame]
    items: Iterable[pd.DataFrame]
    recommendations: Iterable[pd.DataFrame]
    similar_items: Iterable[pd.DataFrame]
    dim: int


def pgvector_available(conn: Any) -> bool:
    """True when the ``vector`` type exists, creating the extension if it can be created."""
    with conn.cursor() as cur:
        cur.execute("select 1 from pg_extension where extname = 'vector'")
        if cur.fetchone():
            return True
        cur.execute("select 1 from pg_available_extensions where name = 'vector'")
        if not cur.fetchone():
            return False
    try:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("create extension if not exists vector")
        return True
    except _psycopg().Error:
        return False


def _csv_text(values: Iterable[Any]) -> list[str]:
    return ['"' + str(v).replace('"', '""') + '"' for v in values]


def _vector_lines(ids: pd.Series, vectors: pd.Series, dim: int, pgvector: bool) -> str:
    """CSV lines ``"id","{v1,...}"`` (``[v1,...]`` for pgvector); ``%.9g`` keeps float32 exact."""
    if not len(ids):
        return ""
    matrix = np.frombuffer(b"".join(vectors), dtype=np.float32).reshape(len(ids), dim)
    buf = io.StringIO()
    np.savetxt(buf, matrix, fmt="%.9g", delimiter=",")
    left, right = ("[", "]") if pgvector else ("{", "}")
    rows = buf.getvalue().splitlines()
    return "".join(f'{i},"{left}{r}{right}"\n' for i, r in zip(_csv_text(ids), rows, strict=True))


def _copy(cur: Any, table: str, columns: tuple[str, ...], chunks: Iterator[str]) -> None:
    sql = f"copy {table} ({', '.join(columns)}) from stdin (format csv)"
    with cur.copy(sql) as copy:
        for chunk in chunks:
            if chunk:
                copy.write(chunk)


def _frames(batches: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    for pdf in batches:
        for start in range(0, len(pdf), _COPY_ROWS):
            yield pdf.iloc[start : start + _COPY_ROWS]


def _ddl(dim: int, pgvector: bool) -> dict[str, str]:
    vt = f"vector({dim})" if pgvector else "real[]"
    return {
        "meta": "version text not null, loaded_at timestamptz not null, run_dir text, "
        "vector_type text not null, dim int not null, counts jsonb not null",
        "user_vectors": f"user_id text not null, vector {vt} not null",
        "item_vectors": f"item_id text not null, vector {vt} not null",
        "recommendations": "user_id text not null, item_id text not null, score real not null, "
        "rank int not null",
        "similar_items": "item_id text not null, similar_id text not null, "
        "score real not null, rank int not null",
    }


_KEYS = {
    "user_vectors": "user_id",
    "item_vectors": "item_id",
    "recommendations": "user_id, rank",
    "similar_items": "item_id, rank",
}


def _copy_tables(cur: Any, data: ServingData, prefix: str, use_vector: bool) -> dict[str, int]:
    """COPY every table of ``data`` but meta into its ``__new`` table; returns row counts."""
    counts: dict[str, int] = {}
    for t, source in (("user_vectors", data.users), ("item_vectors", data.items)):
        key = _KEYS[t]
        n = 0

        def chunks(src: Iterable[pd.DataFrame] = source) -> Iterator[str]:
            nonlocal n
            for pdf in _frames(src):
                n += len(pdf)
                yield _vector_lines(pdf["id"], pdf["vector"], data.dim, use_vector)

        _copy(cur, table_name(prefix, t, NEW), (key, "vector"), chunks())
        counts[t] = n
    for t, source, cols in (
        ("recommendations", data.recommendations, ("user_id", "item_id", "score", "rank")),
        ("similar_items", data.similar_items, ("item_id", "similar_id", "score", "rank")),
    ):
        n = 0

        def lists(src: Iterable[pd.DataFrame] = source, c: tuple = cols) -> Iterator[str]:
            nonlocal n
            for pdf in _frames(src):
                n += len(pdf)
                frame = pdf[list(c)].astype({c[0]: str, c[1]: str})
                yield frame.to_csv(
                    header=False,
                    index=False,
                    quoting=csv.QUOTE_NONNUMERIC,
                    float_format="%.9g",
                    lineterminator="\n",
                )

        _copy(cur, table_name(prefix, t, NEW), cols, lists())
        counts[t] = n
    return counts


def load_new_tables(
    conn: Any,
    data: ServingData,
    *,
    prefix: str,
    version: str,
    run_dir: str | None = None,
    pgvector: bool | None = None,
    index: VectorIndex | None = None,
) -> dict[str, Any]:
    """Write every ``<prefix>_<table>__new`` table in one transaction (nothing live changes).

    ``conn`` must be in autocommit mode (see :func:`connect`): each step opens its own
    transaction. With pgvector, ``index`` (default: HNSW, m 16, ef_construction 64) is built on
    the item vectors.

    Returns:
        Row counts per table plus ``vector_type``, ``dim``, ``version``, ``index`` (the index
        kind, ``none`` over ``real[]``), ``copy_seconds`` and ``index_seconds``.
    """
    if not conn.autocommit:
        raise ValueError("use an autocommit connection (pipelines.serve.serving_db.connect)")
    use_vector = pgvector_available(conn) if pgvector is None else pgvector
    vector_type = "vector" if use_vector else "real[]"
    index = (index or VectorIndex()) if use_vector else VectorIndex("none")
    started = time.perf_counter()
    token = uuid.uuid4().hex[:10]
    ddl = _ddl(data.dim, use_vector)
    with conn.transaction(), conn.cursor() as cur:
        for t in TABLES:
            new = table_name(prefix, t, NEW)
            cur.execute(f"drop table if exists {new}")
            cur.execute(f"create table {new} ({ddl[t]})")
        counts = _copy_tables(cur, data, prefix, use_vector)
        copy_seconds = time.perf_counter() - started
        for t, key in _KEYS.items():
            new = table_name(prefix, t, NEW)
            cur.execute(
                f"alter table {new} add constraint {prefix}_{t}_{token}_pk primary key ({key})"
            )
        cur.execute(
            f"insert into {table_name(prefix, 'meta', NEW)} values (%s, now(), %s, %s, %s, %s)",
            (version, run_dir, vector_type, data.dim, json.dumps(counts)),
        )
        for t in TABLES:
            cur.execute(f"analyze {table_name(prefix, t, NEW)}")
        index_seconds = build_index(
            cur,
            table_name(prefix, "item_vectors", NEW),
            f"{prefix}_item_vectors_{token}_{index.kind}",
            index,
            counts["item_vectors"],
        )
    return {
        **counts,
        "vector_type": vector_type,
        "dim": data.dim,
        "version": version,
        "index": index.kind,
        "copy_seconds": round(copy_seconds, 3),
        "index_seconds": round(index_seconds, 3),
    }


def swap_in(conn: Any, *, prefix: str, attempts: int = 5) -> None:
    """Make the ``__new`` tables live in one transaction (old live tables become ``__old``).

    Retries when PostgreSQL aborts the swap to break a deadlock with a reader.
    """
    psycopg = _psycopg()
    for attempt in range(attempts):
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(
                    "select c.relname from pg_class c where c.relnamespace = "
                    "current_schema()::regnamespace and c.relkind = 'r' and c.relname = any(%s)",
                    ([table_name(prefix, t) for t in TABLES],),
                )
                live = {r[0] for r in cur.fetchall()}
                ordered = [table_name(prefix, t) for t in TABLES if table_name(prefix, t) in live]
                if ordered:
                    cur.execute(f"lock table {', '.join(ordered)} in access exclusive mode")
                for t in TABLES:
                    name = table_name(prefix, t)
                    cur.execute(f"drop table if exists {name}{OLD}")
                    if name in live:
                        cur.execute(f"alter table {name} rename to {name}{OLD}")
                    cur.execute(f"alter table {name}{NEW} rename to {name}")
            return
        except psycopg.errors.DeadlockDetected:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def lock_for_reading(cur: Any, *, prefix: str) -> None:
    """Inside a reader's transaction: pin the live version for the following statements."""
    names = ", ".join(table_name(prefix, t) for t in TABLES)
    cur.execute(f"lock table {names} in access share mode")


def load(
    conn: Any,
    data: ServingData,
    *,
    prefix: str,
    version: str,
    run_dir: str | None = None,
    pgvector: bool | None = None,
    index: VectorIndex | None = None,
) -> dict[str, Any]:
    """:func:`load_new_tables` then :func:`swap_in`; returns the load's counts."""
    counts = load_new_tables(
        conn, data, prefix=prefix, version=version, run_dir=run_dir, pgvector=pgvector, index=index
    )
    swap_in(conn, prefix=prefix)
    return counts


def live_version(conn: Any, *, prefix: str) -> str | None:
    """The version currently served (None before the first load)."""
    with conn.cursor() as cur:
        cur.execute("select to_regclass(%s)", (table_name(prefix, "meta"),))
        row = cur.fetchone()
        if row is None or row[0] is None:
            return None
        cur.execute(f"select version from {table_name(prefix, 'meta')}")
        got = cur.fetchone()
    return None if got is None else str(got[0])


def run_data(run_dir: str | Path, *, batch_rows: int = _COPY_ROWS) -> ServingData:
    """A finished run's export and recommend outputs, read in Arrow batches (no Spark).

    Reads ``export/embeddings`` (kind, original_id, vector), ``recommend/recommendations`` and
    ``recommend/similar_items`` (the latter may be absent: an empty table is loaded).
    """
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    run_dir = Path(run_dir)
    emb = ds.dataset(run_dir / "export" / "embeddings", format="parquet")
    first = emb.head(1, columns=["vector"]).column("vector").to_pylist()
    dim = len(first[0]) // 4 if first else 0

    def vectors(kind: str) -> Iterator[pd.DataFrame]:
        scan = emb.to_batches(
            columns=["original_id", "vector"],
            filter=pc.field("kind") == kind,
            batch_size=batch_rows,
        )
        for b in scan:
            yield b.to_pandas().rename(columns={"original_id": "id"})

    def lists(name: str, cols: list[str]) -> Iterator[pd.DataFrame]:
        path = run_dir / "recommend" / name
        if not path.is_dir():
            return
        dset = ds.dataset(path, format="parquet")
        if not set(cols) <= set(dset.schema.names):  # no part files (an empty output)
            return
        for b in dset.to_batches(columns=cols, batch_size=batch_rows):
            yield b.to_pandas()

    return ServingData(
        users=vectors("user"),
        items=vectors("item"),
        recommendations=lists("recommendations", ["user_id", "item_id", "score", "rank"]),
        similar_items=lists("similar_items", ["item_id", "similar_id", "score", "rank"]),
        dim=dim,
    )
