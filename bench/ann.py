"""ANN benchmark: faiss index top-20 vs exact top-20 over LightGCN item vectors.

Examples::

    # train LightGCN briefly (CPU recipe, time budget), then compare
    nice -n 10 python -m bench.ann --train ../shared/data/gowalla/train.txt \
        --test ../shared/data/gowalla/test.txt --budget-minutes 5 --json

    # reuse a run's embeddings (Parquet: kind, node_id, vector), e.g. runs/demo/aggregate/embeddings
    python -m bench.ann --train ... --test ... --embeddings runs/demo/aggregate/embeddings --json

Queries are users (all, or ``--queries N`` evenly spaced); each user's training items are
masked in both searches. Exact: :func:`pipelines.serve.seam.topk_block` (the pipeline's exact path,
NumPy) in blocks of 1024 users. ANN: :meth:`pipelines.serve.ann.AnnIndex.search` (faiss candidates,
exact re-scoring, same masking). ``ann_recall@20`` is the mean overlap of the two top-20 sets.
Prints a table and ends with one JSON line: ``ann_recall@20``, ``exact_seconds``,
``ann_seconds``, ``queries_per_second`` (plus index, build time, sizes).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from bench.common import add_json_flag, add_lightgcn_files, log, parser, print_json, timed
from pipelines.serve.ann import AnnIndex, AnnSettings, build_index


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser("python -m bench.ann", __doc__)
    add_lightgcn_files(p, described=True)
    p.add_argument("--embeddings", help="Parquet of vectors (kind, node_id, vector): no training")
    p.add_argument("--save-embeddings", help="write the trained vectors here (Parquet file)")
    p.add_argument("--budget-minutes", type=float, default=3.0, help="training time budget")
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--index", choices=["hnsw", "ivf", "flat"], default="hnsw")
    p.add_argument("--hnsw-m", type=int, default=32)
    p.add_argument("--ef-construction", type=int, default=200)
    p.add_argument("--ef-search", type=int, default=128)
    p.add_argument("--ivf-lists", type=int, default=0, help="0: about 4 * sqrt(items)")
    p.add_argument("--nprobe", type=int, default=16)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--queries", type=int, default=0, help="users queried (0: all)")
    p.add_argument("--keep-seen", action="store_true", help="do not mask training items")
    p.add_argument("--threads", type=int, default=2)
    add_json_flag(p, "end with one JSON line")
    return p.parse_args(argv)


def train_embeddings(
    args: argparse.Namespace,
    train_u: np.ndarray,
    train_i: np.ndarray,
    num_users: int,
    num_items: int,
) -> tuple[np.ndarray, np.ndarray, dict]:
    import torch

    from bench.lightgcn_files import load_lightgcn_file
    from gnn.engine.lightgcn import LightGCNTrainConfig, fit_lightgcn

    torch.set_num_threads(args.threads)
    test_u, test_i = load_lightgcn_file(args.test)
    cfg = LightGCNTrainConfig.cpu_recipe(
        epochs=args.epochs, time_budget_seconds=args.budget_minutes * 60.0, threads=args.threads
    )
    result = fit_lightgcn(
        train_u,
        train_i,
        num_users,
        num_items,
        cfg,
        device="cpu",
        test_users=test_u,
        test_items=test_i,
        log=log,
    )
    final = result.history[-1] if result.history else {}
    info = {
        "epochs": result.epochs,
        "train_seconds": round(result.seconds, 1),
        "model_recall@20": final.get("recall@20"),
    }
    return result.user_emb.numpy(), result.item_emb.numpy(), info


def load_embeddings(path: str, num_users: int, num_items: int) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow.dataset as ds

    table = ds.dataset(path, format="parquet").to_table(columns=["kind", "node_id", "vector"])
    out = {}
    for kind, n in (("user", num_users), ("item", num_items)):
        mask = np.asarray(table.column("kind").to_pylist()) == kind
        ids = table.column("node_id").to_numpy()[mask]
        vecs = [v for v, m in zip(table.column("vector").to_pylist(), mask, strict=True) if m]
        dim = len(vecs[0]) // 4
        mat = np.zeros((max(n, int(ids.max()) + 1), dim), np.float32)
        mat[ids] = np.frombuffer(b"".join(vecs), np.float32).reshape(len(vecs), dim)
        out[kind] = mat
    return out["user"], out["item"]


def save_embeddings(path: str, users: np.ndarray, items: np.ndarray) -> None:
    """One Parquet file with the columns of a run's embeddings (kind, node_id, vector)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    kinds = ["user"] * len(users) + ["item"] * len(items)
    ids = np.concatenate([np.arange(len(users)), np.arange(len(items))])
    vecs = [r.tobytes() for r in np.ascontiguousarray(np.vstack([users, items]), np.float32)]
    pq.write_table(pa.table({"kind": kinds, "node_id": ids, "vector": vecs}), path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from bench.lightgcn_files import load_lightgcn_file

    train_u, train_i = load_lightgcn_file(args.train)
    num_users, num_items = int(train_u.max()) + 1, int(train_i.max()) + 1
    info: dict[str, Any] = {}
    if args.embeddings:
        users, items = load_embeddings(args.embeddings, num_users, num_items)
        info["source"] = args.embeddings
    else:
        users, items, info = train_embeddings(args, train_u, train_i, num_users, num_items)
        info["source"] = "trained"
        if args.save_embeddings:
            save_embeddings(args.save_embeddings, users, items)
    settings = AnnSettings(
        kind=args.index,
        hnsw_m=args.hnsw_m,
        hnsw_ef_construction=args.ef_construction,
        hnsw_ef_search=args.ef_search,
        ivf_lists=args.ivf_lists,
        ivf_probe=args.nprobe,
        threads=args.threads,
    )
    index, meta = build_index(items, settings)
    ann = AnnIndex(index, meta, items, np.arange(len(items)), [str(i) for i in range(len(items))])
    ann.set_search_params(ef_search=args.ef_search, nprobe=args.nprobe)
    n_q = len(users) if args.queries <= 0 else min(args.queries, len(users))
    qrows = np.linspace(0, len(users) - 1, n_q).astype(np.int64)
    queries = users[qrows]
    order = np.argsort(train_u, kind="stable")
    bounds = np.searchsorted(train_u[order], np.arange(len(users) + 1))
    items_by_user = train_i[order]
    seen_all = [items_by_user[bounds[u] : bounds[u + 1]] for u in range(len(users))]
    exclude = None if args.keep_seen else [seen_all[u] for u in qrows]

    (exact, _), exact_seconds = timed(lambda: ann.exact(queries, args.k, exclude=exclude))
    (got, _), ann_seconds = timed(lambda: ann.search(queries, args.k, exclude=exclude))
    hits = [
        len(set(a[a >= 0]) & set(b[b >= 0])) / max(1, int((b >= 0).sum()))
        for a, b in zip(got, exact, strict=True)
    ]
    recall = float(np.mean(hits))
    result = {
        f"ann_recall@{args.k}": round(recall, 4),
        "exact_seconds": round(exact_seconds, 3),
        "ann_seconds": round(ann_seconds, 3),
        "queries_per_second": round(n_q / ann_seconds, 1),
        "index": args.index,
        "build_seconds": meta["build_seconds"],
        "queries": n_q,
        "items": len(items),
        "dim": int(items.shape[1]),
        "params": {k: v for k, v in vars(args).items() if k not in ("json", "train", "test")},
        **info,
    }
    print(
        f"\n{'index':<8}{'items':>8}{'queries':>9}{'build s':>9}{'exact s':>9}"
        f"{'ann s':>8}{'qps':>9}{'recall@' + str(args.k):>11}"
    )
    print(
        f"{args.index:<8}{len(items):>8}{n_q:>9}{meta['build_seconds']:>9.1f}"
        f"{exact_seconds:>9.2f}{ann_seconds:>8.2f}{n_q / ann_seconds:>9.0f}{recall:>11.4f}"
    )
    if args.json:
        print_json(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
