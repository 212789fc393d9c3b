"""Approximate top-K over item vectors with faiss: build, save, load, query (no Spark).

Scores are inner products (LightGCN's ``e_u · e_i``). ``flat`` is an exact inner-product index
and ``hnsw`` (Malkov & Yashunin 2018) a graph built and searched with the inner product itself.
IVF clusters with k-means in Euclidean space, so for ``ivf`` the item vectors are lifted into
``d + 1`` dimensions with the MIPS-to-L2 reduction of Bachrach et al. 2014 ("Speeding up the
Xbox recommender system...", Sec. 3, Theorem 1): ``x' = [x, sqrt(M^2 - |x|^2)]`` with
``M = max |x|`` and ``q' = [q, 0]``, so that ``|q' - x'|^2 = |q|^2 + M^2 - 2 q·x`` orders items
exactly as ``q·x`` does. (The lift also works for HNSW, but on Gowalla LightGCN vectors, whose
norms spread from 0.8 to 11, it cost recall: 0.92 against 0.96 at efSearch 128, see
bench/results/ann.md.) Candidates are re-scored exactly and ordered by (score desc, item id asc).

Layout written by :func:`save_index` under ``<export_dir>/ann/``::

    index.faiss       the faiss index; position p is the p-th item in node_id order
    item_ids.parquet  position, node_id, original_id
    meta.json         kind, dim, max_norm, parameters, counts

The user vectors and seen items come from ``<export_dir>/embeddings`` and
``<export_dir>/seen`` (Parquet written by :mod:`pipelines.serve.ann_export`). faiss is imported
lazily: it is only needed to build or load an index.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from pipelines.serve.seam import topk_block

INDEX_FILE, IDS_FILE, META_FILE = "index.faiss", "item_ids.parquet", "meta.json"
KINDS = ("hnsw", "ivf", "flat")


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("faiss is needed for the ANN index: pip install faiss-cpu") from exc
    return faiss


@dataclass(frozen=True)
class AnnSettings:
    """Index settings (the ``export`` section of the pipeline config holds the same fields)."""

    kind: str = "hnsw"
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 128
    ivf_lists: int = 0
    ivf_probe: int = 16
    threads: int = 0

    @classmethod
    def from_export(cls, export: Any, **overrides: Any) -> AnnSettings:
        """From :class:`pipelines.core.config.ExportConfig` (``ann_index``, ``hnsw_m``, ...)."""
        return cls(
            kind=export.ann_index,
            hnsw_m=export.hnsw_m,
            hnsw_ef_search=export.hnsw_ef_search,
            ivf_lists=export.ivf_lists,
            ivf_probe=export.ivf_probe,
            **overrides,
        )

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind: must be one of {KINDS}, got {self.kind!r}")


def lift_items(items: np.ndarray, max_norm: float) -> np.ndarray:
    """Items ``[n, d]`` -> ``[n, d + 1]`` for the MIPS-to-L2 reduction (see module doc)."""
    items = np.ascontiguousarray(items, dtype=np.float32)
    sq = np.maximum(np.float32(max_norm) ** 2 - np.einsum("ij,ij->i", items, items), 0.0)
    return np.hstack([items, np.sqrt(sq, dtype=np.float32)[:, None]]).astype(np.float32)


def lift_queries(queries: np.ndarray) -> np.ndarray:
    """Queries ``[n, d]`` -> ``[n, d + 1]`` (a zero appended)."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    return np.hstack([q, np.zeros((len(q), 1), np.float32)])


def build_index(items: np.ndarray, settings: AnnSettings) -> tuple[Any, dict[str, Any]]:
    """A faiss index over ``items`` (positions = row numbers) and its metadata.

    Shapes:
        items: ``[n, d]`` float32.
    """
    faiss = _faiss()
    if settings.threads:
        faiss.omp_set_num_threads(settings.threads)
    n, d = items.shape
    started = time.perf_counter()
    max_norm = float(np.sqrt((items.astype(np.float64) ** 2).sum(1).max())) if n else 0.0
    meta: dict[str, Any] = {
        "kind": settings.kind,
        "space": "l2 (MIPS lift)" if settings.kind == "ivf" else "inner product",
        "dim": d,
        "items": n,
        "max_norm": max_norm,
    }
    if settings.kind == "flat":
        index = faiss.IndexFlatIP(d)
        index.add(np.ascontiguousarray(items, dtype=np.float32))
    elif settings.kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = settings.hnsw_ef_construction
        index.add(np.ascontiguousarray(items, dtype=np.float32))
    else:
        nlist = settings.ivf_lists or max(1, round(4 * math.sqrt(n)))
        nlist = max(1, min(nlist, n))
        quantizer = faiss.IndexFlatL2(d + 1)
        index = faiss.IndexIVFFlat(quantizer, d + 1, nlist, faiss.METRIC_L2)
        lifted = lift_items(items, max_norm)
        index.train(lifted)
        index.add(lifted)
        meta["ivf_lists"] = nlist
    meta["settings"] = asdict(settings)
    meta["build_seconds"] = round(time.perf_counter() - started, 3)
    return index, meta


def save_index(
    ann_dir: str | Path,
    index: Any,
    meta: dict[str, Any],
    node_ids: np.ndarray,
    original_ids: Sequence[str] | None = None,
) -> Path:
    """Write the index, its id map (position -> node_id, original_id) and metadata."""
    out = Path(ann_dir)
    out.mkdir(parents=True, exist_ok=True)
    _faiss().write_index(index, str(out / INDEX_FILE))
    originals = [str(i) for i in node_ids] if original_ids is None else list(original_ids)
    table = pa.table(
        {
            "position": pa.array(np.arange(len(node_ids), dtype=np.int64)),
            "node_id": pa.array(np.asarray(node_ids, dtype=np.int64)),
            "original_id": pa.array(originals, pa.string()),
        }
    )
    pq.write_table(table, out / IDS_FILE)
    (out / META_FILE).write_text(json.dumps(meta, indent=2))
    return out


def _exclusion_mask(cand: np.ndarray, exclude: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """``[n, c]`` True where ``cand[r, j]`` (a position) is in ``exclude[r]``."""
    rows = np.repeat(np.arange(len(exclude), dtype=np.int64), [len(e) for e in exclude])
    if not len(rows):
        return np.zeros(cand.shape, dtype=bool)
    ex_keys = rows * n_items + np.concatenate(exclude).astype(np.int64)
    keys = np.arange(len(cand), dtype=np.int64)[:, None] * n_items + cand
    return np.isin(keys, ex_keys)


class AnnIndex:
    """A loaded index plus item vectors (for exact re-scoring) and the id maps.

    Positions are item rows in ``node_id`` order; results are ``node_id`` / original ids.
    """

    def __init__(
        self,
        index: Any,
        meta: dict[str, Any],
        item_vectors: np.ndarray,
        item_node_ids: np.ndarray,
        item_original_ids: Sequence[str],
    ) -> None:
        self.index = index
        self.meta = meta
        self.kind = str(meta["kind"])
        self.items = np.ascontiguousarray(item_vectors, dtype=np.float32)
        self.item_node_ids = np.asarray(item_node_ids, dtype=np.int64)
        self.item_original_ids = list(item_original_ids)
        self.users: np.ndarray | None = None
        self.user_original_ids: list[str] = []
        self._user_pos: dict[str, int] = {}
        self._seen_ptr = np.zeros(1, np.int64)
        self._seen_pos = np.zeros(0, np.int64)

    # ---- loading ---------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        export_dir: str | Path,
        *,
        ef_search: int | None = None,
        nprobe: int | None = None,
        with_users: bool = True,
    ) -> AnnIndex:
        """Load ``<export_dir>/ann`` and (``with_users``) the user vectors and seen items."""
        export_dir = Path(export_dir)
        ann_dir = export_dir / "ann"
        meta = json.loads((ann_dir / META_FILE).read_text())
        index = _faiss().read_index(str(ann_dir / INDEX_FILE))
        ids = pq.read_table(ann_dir / IDS_FILE).sort_by("position")
        node_ids = ids.column("node_id").to_numpy()
        emb = ds.dataset(export_dir / "embeddings", format="parquet")
        items = emb.to_table(filter=pc.field("kind") == "item", columns=["node_id", "vector"])
        items = items.sort_by("node_id")
        if not np.array_equal(items.column("node_id").to_numpy(), node_ids):
            raise ValueError(f"{ann_dir}: item ids differ from {export_dir / 'embeddings'}")
        vectors = _matrix(items.column("vector"), int(meta["dim"]))
        out = cls(index, meta, vectors, node_ids, ids.column("original_id").to_pylist())
        out.set_search_params(
            ef_search=ef_search or meta["settings"]["hnsw_ef_search"],
            nprobe=nprobe or meta["settings"]["ivf_probe"],
        )
        if with_users:
            out._load_users(emb, export_dir / "seen")
        return out

    def _load_users(self, emb: ds.Dataset, seen_dir: Path) -> None:
        users = emb.to_table(
            filter=pc.field("kind") == "user", columns=["node_id", "original_id", "vector"]
        ).sort_by("node_id")
        user_nodes = users.column("node_id").to_numpy()
        self.users = _matrix(users.column("vector"), int(self.meta["dim"]))
        self.user_original_ids = users.column("original_id").to_pylist()
        self._user_pos = {u: p for p, u in enumerate(self.user_original_ids)}
        ptr = np.zeros(len(user_nodes) + 1, np.int64)
        pos = np.zeros(0, np.int64)
        if seen_dir.is_dir():
            seen = ds.dataset(seen_dir, format="parquet").to_table(columns=["user", "item"])
            u = np.searchsorted(user_nodes, seen.column("user").to_numpy())
            i = np.searchsorted(self.item_node_ids, seen.column("item").to_numpy())
            ok = (u < len(user_nodes)) & (i < len(self.item_node_ids))
            ok[ok] &= (user_nodes[u[ok]] == seen.column("user").to_numpy()[ok]) & (
                self.item_node_ids[i[ok]] == seen.column("item").to_numpy()[ok]
            )
            order = np.lexsort((i[ok], u[ok]))
            u, pos = u[ok][order], i[ok][order]
            ptr[1:] = np.cumsum(np.bincount(u, minlength=len(user_nodes)))
        self._seen_ptr, self._seen_pos = ptr, pos

    def set_search_params(self, *, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """HNSW ``efSearch`` / IVF ``nprobe`` for later searches."""
        if self.kind == "hnsw" and ef_search:
            self.index.hnsw.efSearch = int(ef_search)
        if self.kind == "ivf" and nprobe:
            self.index.nprobe = int(nprobe)

    # ---- queries ---------------------------------------------------------------------------
    def seen_positions(self, user_pos: int) -> np.ndarray:
        """Item positions the user interacted with in training."""
        return self._seen_pos[self._seen_ptr[user_pos] : self._seen_ptr[user_pos + 1]]

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        exclude: Sequence[np.ndarray] | None = None,
        batch_size: int = 256,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item positions per query, excluded positions masked.

        Queries are searched in batches (sorted by the number of exclusions, so each batch
        over-fetches ``k + max exclusions`` candidates), candidates are re-scored exactly and
        ordered by (score desc, position asc). Missing results are ``-1`` / ``-inf``.

        Shapes:
            queries: ``[n, d]``; exclude: ``n`` arrays of positions. Returns ``[n, k]`` twice.
        """
        n, n_items = len(queries), len(self.items)
        exclude = exclude if exclude is not None else [np.zeros(0, np.int64)] * n
        out_pos = np.full((n, k), -1, np.int64)
        out_score = np.full((n, k), -np.inf, np.float32)
        order = np.argsort([len(e) for e in exclude], kind="stable")
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            ex = [np.asarray(exclude[r], np.int64) for r in rows]
            fetch = min(n_items, k + max((len(e) for e in ex), default=0))
            if fetch == 0:
                continue
            q = np.ascontiguousarray(queries[rows], dtype=np.float32)
            cand = self._candidates(q, fetch)
            valid = cand >= 0
            safe = np.where(valid, cand, 0)
            scores = np.einsum("nd,ncd->nc", q, self.items[safe])
            scores[~valid | _exclusion_mask(safe, ex, n_items)] = -np.inf
            rank = np.lexsort((safe, -scores), axis=-1)[:, :k]
            top_pos = np.take_along_axis(safe, rank, 1)
            top_score = np.take_along_axis(scores, rank, 1)
            top_pos[~np.isfinite(top_score)] = -1
            kk = top_pos.shape[1]
            out_pos[rows, :kk], out_score[rows, :kk] = top_pos, top_score
        return out_pos, out_score

    def _candidates(self, q: np.ndarray, fetch: int) -> np.ndarray:
        if self.kind == "ivf":
            return self.index.search(lift_queries(q), fetch)[1]
        return self.index.search(q, fetch)[1]  # flat; hnsw searches with max(efSearch, fetch)

    def exact(
        self, queries: np.ndarray, k: int, *, exclude: Sequence[np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Brute-force top-``k`` positions (same order and masking as :meth:`search`)."""
        positions = np.arange(len(self.items), dtype=np.int64)
        exclude = exclude if exclude is not None else [np.zeros(0, np.int64)] * len(queries)
        outs, scores = [], []
        for start in range(0, len(queries), 1024):
            o, s = topk_block(
                queries[start : start + 1024],
                self.items,
                positions,
                list(exclude[start : start + 1024]),
                k,
            )
            outs.append(o)
            scores.append(s)
        return np.vstack(outs), np.vstack(scores)

    def recommend(
        self, user_id: str, k: int = 20, *, mask_seen: bool = True
    ) -> list[tuple[str, float]]:
        """Top-``k`` (original item id, score) for one user given by original id.

        Raises:
            KeyError: unknown user.
        """
        if self.users is None:
            raise ValueError("loaded with with_users=False")
        p = self._user_pos[str(user_id)]
        ex = [self.seen_positions(p)] if mask_seen else None
        pos, score = self.search(self.users[p : p + 1], k, exclude=ex)
        return [
            (self.item_original_ids[i], float(s))
            for i, s in zip(pos[0], score[0], strict=True)
            if i >= 0
        ]


def _matrix(column: pa.ChunkedArray, dim: int) -> np.ndarray:
    values = column.to_pylist()
    if not values:
        return np.zeros((0, dim), np.float32)
    return np.frombuffer(b"".join(values), dtype=np.float32).reshape(len(values), dim).copy()
