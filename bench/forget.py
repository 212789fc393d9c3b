"""Forget job against a full rerun on the retained data, in one run.

    nice -n 10 python -m bench.forget --train ../shared/data/gowalla/train.txt \\
        --test ../shared/data/gowalla/test.txt --delete-users 0.01 --max-users 2000 --json

Steps: (1) the pipeline (jobs.pipeline + jobs.export) on the data, partitioned into
``--leaves`` leaves: the original, "no action"; (2) the forget job (jobs.forget) on a request
file deleting ``--delete-users`` of the training users (with all their interactions) or
``--delete-edges`` of the training interactions; (3) the pipeline from scratch on the retained
data (the gold standard). Utility is the retained users' Recall@20 of the forget version over
the rerun's (both evaluated on the same retained test interactions). ``rerun_seconds`` is
pipeline + export on the retained data (the forget job rewrites export too);
``rerun_pipeline_seconds`` without. Deleted-edge AUROC
(:func:`gnn.unlearn.eval.deleted_auroc_lightgcn`: deleted edges against random non-edges of
the same users) uses the final embeddings of each model; with user deletion the deleted users
have no vector left in either model, so both AUROCs are null. ``erased_everywhere``: the job's
own verification passed, an independent rescan of the new version finds nothing, and the
superseded version is gone. Ends with one JSON line: {"erased_everywhere", "utility_ratio",
"deleted_auroc", "rerun_deleted_auroc", "original_deleted_auroc", "seconds", "rerun_seconds",
"leaves_retrained", "leaves_total", ...}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--train", required=True)
    p.add_argument("--test", required=True)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--delete-users", type=float, help="fraction of training users to forget")
    what.add_argument("--delete-edges", type=float, help="fraction of training edges to forget")
    p.add_argument("--max-users", type=int, default=0, help="keep the first N users (0: all)")
    p.add_argument("--leaves", type=int, default=4)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=4096, help="train.batch_size of both runs")
    p.add_argument("--lr", type=float, default=0.02, help="train.lr of both runs")
    p.add_argument("--steps", type=int, default=30, help="distill-to-delete steps per leaf")
    p.add_argument(
        "--trainable-hops",
        type=int,
        default=0,
        help="ego rows within this many hops of a deleted element move (-1: all)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per Spark task (local[2] runs 2 tasks at once: with 2 "
        "threads each the cores are oversubscribed and leaves run 10x slower)",
    )
    p.add_argument("--workdir", default=None)
    p.add_argument(
        "--keep-original",
        action="store_true",
        help="copy the trained run to WORKDIR/original before forgetting (to try "
        "other forget settings on the same model later)",
    )
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def read_lines(path: str, max_users: int) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        out[parts[0]] = parts[1:]
        if max_users and len(out) >= max_users:
            break
    return out


def write_lines(path: Path, data: dict[str, list[str]]) -> None:
    path.write_text("".join(f"{u} {' '.join(items)}\n" for u, items in data.items() if items))


def settings(args: argparse.Namespace, train: Path, test: Path) -> list[str]:
    sets = [
        f"ingest.train_path={train}",
        f"ingest.test_path={test}",
        f"train.epochs={args.epochs}",
        f"train.rounds={args.rounds}",
        f"train.batch_size={args.batch_size}",
        f"train.lr={args.lr}",
        f"train.threads={args.threads}",
        f"model.dim={args.dim}",
        "model.layers=3",
        "export.top_k=20",
        "export.ann_index=flat",
        f"partition.num_leaves={args.leaves}",
        "spark.shuffle_partitions=4",
        f"run.seed={args.seed}",
    ]
    return [x for s in sets for x in ("--set", s)]


def embeddings(version: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Final user and item vectors by ORIGINAL id."""
    from pipelines.core.vector_bytes import bytes_to_matrix

    emb = pd.read_parquet(version / "aggregate" / "embeddings")
    dic = pd.read_parquet(version / "ingest" / "dictionary")
    emb = emb.merge(dic, on=["kind", "node_id"])
    dim = len(emb["vector"].iloc[0]) // 4
    out = []
    for kind in ("user", "item"):
        part = emb[emb["kind"] == kind]
        mat = bytes_to_matrix(list(part["vector"]), dim)
        out.append(dict(zip(part["original_id"], mat, strict=True)))
    return out[0], out[1]


def deleted_auroc(
    version: Path, deleted: list[tuple[str, str]], known: list[tuple[str, str]], seed: int
) -> float | None:
    import torch

    from gnn.unlearn.eval import deleted_auroc_lightgcn

    users, items = embeddings(version)
    pairs = [(u, i) for u, i in deleted if u in users and i in items]
    if not pairs:
        return None
    uid = {u: n for n, u in enumerate(sorted(users))}
    iid = {i: n for n, i in enumerate(sorted(items))}
    ue = torch.from_numpy(np.stack([users[u] for u in sorted(users)]))
    ie = torch.from_numpy(np.stack([items[i] for i in sorted(items)]))
    kn = [(uid[u], iid[i]) for u, i in known if u in uid and i in iid]
    return deleted_auroc_lightgcn(
        ue,
        ie,
        np.array([uid[u] for u, _ in pairs]),
        np.array([iid[i] for _, i in pairs]),
        np.array([k[0] for k in kn]),
        np.array([k[1] for k in kn]),
        seed=seed,
    )


def stage_seconds(run: Path) -> dict[str, float]:
    """Seconds of each finished stage of a run (version) directory, from its markers."""
    out = {}
    for marker in sorted(run.glob("*/_STAGE.json")):
        out[marker.parent.name] = round(float(json.loads(marker.read_text())["seconds"]), 1)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    import torch

    torch.set_num_threads(2)
    from jobs import export, forget, pipeline
    from pipelines.core.versions import current_version
    from pipelines.forget.verify import DeletedSet, verify_erased

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-forget-"))
    work.mkdir(parents=True, exist_ok=True)
    train = read_lines(args.train, args.max_users)
    test = {u: v for u, v in read_lines(args.test, 0).items() if u in train}
    write_lines(work / "train.txt", train)
    write_lines(work / "test.txt", test)
    rng = np.random.default_rng(args.seed)
    edges = [(u, i) for u, items in train.items() for i in items]
    if args.delete_users:
        n = max(1, round(args.delete_users * len(train)))
        gone_users = set(rng.choice(sorted(train), size=n, replace=False).tolist())
        gone_edges: set[tuple[str, str]] = set()
        rows = [(f"u{k}", "user", u, "") for k, u in enumerate(sorted(gone_users))]
        deleted_pairs = [(u, i) for u, i in edges if u in gone_users]
    else:
        n = max(1, round(args.delete_edges * len(edges)))
        pick = rng.choice(len(edges), size=n, replace=False)
        gone_users, gone_edges = set(), {edges[k] for k in pick}
        rows = [(f"e{k}", "edge", u, i) for k, (u, i) in enumerate(sorted(gone_edges))]
        deleted_pairs = sorted(gone_edges)
    req = work / "requests.csv"
    req.write_text(
        "request_id,kind,id,other_id,timestamp\n"
        + "".join(f"{r},{k},{a},{b},2026-11-27T00:00:00Z\n" for r, k, a, b in rows)
    )
    known = edges + [(u, i) for u, items in test.items() for i in items]

    run = work / "run"
    t0 = time.perf_counter()
    assert (
        pipeline.main(
            ["--run-dir", str(run), *settings(args, work / "train.txt", work / "test.txt")]
        )
        == 0
    )
    assert (
        export.main(["--run-dir", str(run), *settings(args, work / "train.txt", work / "test.txt")])
        == 0
    )
    original_seconds = time.perf_counter() - t0
    original_metrics = json.loads((run / "evaluate" / "metrics.json").read_text())
    original_auroc = deleted_auroc(run, deleted_pairs, known, args.seed)
    if args.keep_original:
        shutil.copytree(run, work / "original", dirs_exist_ok=True)

    t0 = time.perf_counter()
    rc = forget.main(
        [
            "--run-dir",
            str(run),
            "--requests",
            str(req),
            "--steps",
            str(args.steps),
            "--trainable-hops",
            str(args.trainable_hops),
            *settings(args, work / "train.txt", work / "test.txt"),
        ]
    )
    seconds = time.perf_counter() - t0
    version = current_version(run)
    meta = json.loads((version / "_VERSION.json").read_text()) if rc == 0 else {}
    deleted = DeletedSet(
        user_ids=frozenset(gone_users), item_ids=frozenset(), edge_ids=frozenset(gone_edges)
    )
    rescan = verify_erased(version, deleted)
    erased = (
        rc == 0
        and meta.get("verification", {}).get("passed") is True
        and rescan.ok
        and not (run / "ingest").exists()
    )
    forget_metrics = json.loads((version / "evaluate" / "metrics.json").read_text())

    kept_train = {
        u: [i for i in items if u not in gone_users and (u, i) not in gone_edges]
        for u, items in train.items()
    }
    kept_test = {
        u: [i for i in items if u not in gone_users and (u, i) not in gone_edges]
        for u, items in test.items()
    }
    write_lines(work / "train_kept.txt", kept_train)
    write_lines(work / "test_kept.txt", kept_test)
    rerun = work / "rerun"
    t0 = time.perf_counter()
    assert (
        pipeline.main(
            [
                "--run-dir",
                str(rerun),
                *settings(args, work / "train_kept.txt", work / "test_kept.txt"),
            ]
        )
        == 0
    )
    rerun_pipeline_seconds = time.perf_counter() - t0
    # the forget job rewrites export too (when the run has one): the rerun must produce it
    assert (
        export.main(
            [
                "--run-dir",
                str(rerun),
                *settings(args, work / "train_kept.txt", work / "test_kept.txt"),
            ]
        )
        == 0
    )
    rerun_seconds = time.perf_counter() - t0
    rerun_metrics = json.loads((rerun / "evaluate" / "metrics.json").read_text())
    rerun_auroc = deleted_auroc(rerun, deleted_pairs, known, args.seed)
    forget_auroc = deleted_auroc(version, deleted_pairs, known, args.seed)

    r_forget, r_rerun = forget_metrics["recall@20"], rerun_metrics["recall@20"]
    result = {
        "erased_everywhere": bool(erased),
        "utility_ratio": round(r_forget / r_rerun, 4) if r_rerun else None,
        "deleted_auroc": None if forget_auroc is None else round(forget_auroc, 4),
        "rerun_deleted_auroc": None if rerun_auroc is None else round(rerun_auroc, 4),
        "original_deleted_auroc": None if original_auroc is None else round(original_auroc, 4),
        "seconds": round(seconds, 1),
        "rerun_seconds": round(rerun_seconds, 1),
        "rerun_pipeline_seconds": round(rerun_pipeline_seconds, 1),
        "original_seconds": round(original_seconds, 1),
        "stage_seconds": {"forget": stage_seconds(version), "rerun": stage_seconds(rerun)},
        "leaves_retrained": len(meta.get("leaves_retrained", [])),
        "leaves_total": meta.get("leaves_total", 0),
        "recall@20": {
            "original": original_metrics["recall@20"],
            "forget": r_forget,
            "rerun": r_rerun,
        },
        "users": len(train),
        "train_edges": len(edges),
        "deleted_rows": len(rows),
        "deleted_edges": len(deleted_pairs),
    }
    print(f"{'model':<10}{'recall@20':>10}{'deleted AUROC':>15}{'seconds':>10}")
    for name, rec, auc, sec in (
        (
            "original",
            original_metrics["recall@20"],
            result["original_deleted_auroc"],
            result["original_seconds"],
        ),
        ("forget", r_forget, result["deleted_auroc"], result["seconds"]),
        ("rerun", r_rerun, result["rerun_deleted_auroc"], result["rerun_seconds"]),
    ):
        print(f"{name:<10}{rec:>10.4f}{auc!s:>15}{sec:>10}")
    for name in ("forget", "rerun"):
        print(f"stages {name}: {result['stage_seconds'][name]}")
    print(
        f"leaves retrained {result['leaves_retrained']}/{result['leaves_total']}, "
        f"erased everywhere: {result['erased_everywhere']}"
    )
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
