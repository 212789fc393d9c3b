"""The serving tables' names, their item-vector index and top-K queries answered by PostgreSQL.

Scores are inner products (LightGCN's ``e_u · e_i``), as in :mod:`pipelines.serve.recommend` and
:mod:`pipelines.serve.ann`. With pgvector the item vectors carry an HNSW (or IVFFlat) index with
``vector_ip_ops`` and a query is ``order by vector <#> q limit n`` (``<#>`` is the negated inner
product), which PostgreSQL answers from the index: approximate, ``hnsw.ef_search`` candidates.
Over ``real[]`` (no pgvector) the same query is an exact scan that computes every inner product
in SQL (slow, but the same answer as the exact top-K).

Results are ordered by score descending, then item id; ``exclude`` (e.g. the user's seen items)
is applied after fetching ``k + len(exclude)`` candidates, so an excluded item never costs a
result. Past pgvector's ``hnsw.ef_search`` limit (1000 candidates) the query scans exactly.
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["VectorIndex", "build_index", "similar_to_item", "table_name", "top_items"]

_EF_SEARCH_MAX = 1000  # pgvector's upper bound for hnsw.ef_search


def table_name(prefix: str, table: str, suffix: str = "") -> str:
    """``<prefix>_<table><suffix>`` (prefix is validated as a lower-case identifier)."""
    if re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", prefix) is None:
        raise ValueError(f"serving table prefix must be a lower-case identifier: {prefix!r}")
    return f"{prefix}_{table}{suffix}"


@dataclass(frozen=True)
class VectorIndex:
    """The item-vector index built when the columns are pgvector's ``vector``.

    Attributes:
        kind: ``hnsw``, ``ivfflat`` or ``none`` (exact scans only).
        m: HNSW graph degree (pgvector's default 16).
        ef_construction: HNSW build depth (pgvector's default 64).
        lists: IVFFlat lists (0: about ``sqrt(items)``, at least 1).
    """

    kind: str = "hnsw"
    m: int = 16
    ef_construction: int = 64
    lists: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("hnsw", "ivfflat", "none"):
            raise ValueError(f"vector index must be hnsw, ivfflat or none: {self.kind!r}")


def build_index(cur: Any, table: str, name: str, index: VectorIndex, rows: int) -> float:
    """Create ``index`` (inner product) on ``table.vector``; returns the seconds it took."""
    if index.kind == "none":
        return 0.0
    started = time.perf_counter()
    if index.kind == "hnsw":
        opts = f"m = {int(index.m)}, ef_construction = {int(index.ef_construction)}"
    else:
        opts = f"lists = {int(index.lists) or max(1, round(rows**0.5))}"
    cur.execute(
        f"create index {name} on {table} using {index.kind} (vector vector_ip_ops) with ({opts})"
    )
    return time.perf_counter() - started


def _vector_literal(vector: Any, pgvector: bool) -> Any:
    """A query vector as the parameter its column type takes (text ``[..]`` or a float list)."""
    if isinstance(vector, str):
        return vector
    values = np.asarray(vector, dtype=np.float32).ravel()
    if pgvector:
        return "[" + ",".join(f"{v:.9g}" for v in values) + "]"
    return [float(v) for v in values]


def _search(
    cur: Any, prefix: str, query: Any, n: int, pgvector: bool, ef_search: int, probes: int
) -> list[tuple[str, float]]:
    """The ``n`` best ``(item_id, score)`` for ``query`` inside the caller's transaction."""
    items = table_name(prefix, "item_vectors")
    if not pgvector:
        cur.execute(
            f"select item_id, (select sum(a::float8 * b::float8) "
            f"from unnest(vector, %(q)s::real[]) as t(a, b)) as score "
            f"from {items} order by score desc, item_id limit %(n)s",
            {"q": query, "n": n},
        )
        return [(str(i), float(s)) for i, s in cur.fetchall()]
    if n > _EF_SEARCH_MAX:  # the index cannot return that many candidates: scan exactly
        cur.execute("select set_config('enable_indexscan', 'off', true)")
    cur.execute(
        "select set_config('hnsw.ef_search', %s, true)", (str(min(ef_search, _EF_SEARCH_MAX)),)
    )
    cur.execute("select set_config('ivfflat.probes', %s, true)", (str(probes),))
    cur.execute(
        f"select item_id, -(vector <#> %(q)s::vector) from {items} "
        f"order by vector <#> %(q)s::vector limit %(n)s",
        {"q": query, "n": n},
    )
    return [(str(i), float(s)) for i, s in cur.fetchall()]


def _vector_of(cur: Any, prefix: str, table: str, key: str, value: str) -> Any:
    cur.execute(f"select vector from {table_name(prefix, table)} where {key} = %s", (value,))
    row = cur.fetchone()
    if row is None:
        raise KeyError(f"{key} {value!r} is not in {table_name(prefix, table)}")
    return row[0]


def top_items(
    conn: Any,
    *,
    prefix: str,
    user_id: str | None = None,
    vector: Any = None,
    k: int = 20,
    exclude: Collection[str] = (),
    ef_search: int = 100,
    probes: int = 10,
) -> list[tuple[str, float]]:
    """Top-``k`` ``(item_id, score)`` by inner product for a served user or a given vector.

    Args:
        conn: A psycopg connection (autocommit, :func:`pipelines.serve.serving_db.connect`).
        prefix: The serving tables' prefix.
        user_id: Original id of a user in ``<prefix>_user_vectors`` (or give ``vector``).
        vector: A query vector of the tables' dimension.
        k: Results wanted.
        exclude: Item ids never returned (e.g. the user's training items).
        ef_search: HNSW candidates (raised to ``k + len(exclude)``, at most 1000).
        probes: IVFFlat lists probed.

    Returns:
        Up to ``k`` pairs, score descending then item id ascending.

    Raises:
        KeyError: ``user_id`` is not served.
    """
    if (user_id is None) == (vector is None):
        raise ValueError("give exactly one of user_id and vector")
    exclude = set(exclude)
    n = k + len(exclude)
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(f"select vector_type from {table_name(prefix, 'meta')}")
        pgvector = cur.fetchone()[0] == "vector"
        if user_id is not None:
            query = _vector_of(cur, prefix, "user_vectors", "user_id", user_id)
        else:
            query = vector
        found = _search(
            cur, prefix, _vector_literal(query, pgvector), n, pgvector, max(ef_search, n), probes
        )
    kept = sorted(((i, s) for i, s in found if i not in exclude), key=lambda r: (-r[1], r[0]))
    return kept[:k]


def similar_to_item(
    conn: Any, *, prefix: str, item_id: str, k: int = 20, ef_search: int = 100
) -> list[tuple[str, float]]:
    """Top-``k`` other items by inner product with ``item_id``'s vector (the item excluded)."""
    with conn.cursor() as cur:
        query = _vector_of(cur, prefix, "item_vectors", "item_id", item_id)
    return top_items(conn, prefix=prefix, vector=query, k=k, exclude={item_id}, ef_search=ef_search)
