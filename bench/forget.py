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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.common import add_lightgcn_files, print_json, rounded, timed


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_lightgcn_files(p)
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


@dataclass
class Deletion:
    """The forget request: what it deletes, its rows (request file) and the pairs it takes."""

    users: set[str]
    edges: set[tuple[str, str]]
    rows: list[tuple[str, str, str, str]]
    pairs: list[tuple[str, str]]


def sample_deletion(args: argparse.Namespace, train: dict[str, list[str]]) -> Deletion:
    """``--delete-users`` of the users (all their edges) or ``--delete-edges`` of the edges."""
    rng = np.random.default_rng(args.seed)
    edges = [(u, i) for u, items in train.items() for i in items]
    if args.delete_users:
        n = max(1, round(args.delete_users * len(train)))
        users = set(rng.choice(sorted(train), size=n, replace=False).tolist())
        rows = [(f"u{k}", "user", u, "") for k, u in enumerate(sorted(users))]
        return Deletion(users, set(), rows, [(u, i) for u, i in edges if u in users])
    n = max(1, round(args.delete_edges * len(edges)))
    pick = rng.choice(len(edges), size=n, replace=False)
    gone = {edges[k] for k in pick}
    rows = [(f"e{k}", "edge", u, i) for k, (u, i) in enumerate(sorted(gone))]
    return Deletion(set(), gone, rows, sorted(gone))


def write_requests(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    path.write_text(
        "request_id,kind,id,other_id,timestamp\n"
        + "".join(f"{r},{k},{a},{b},2026-11-27T00:00:00Z\n" for r, k, a, b in rows)
    )
    return path


def run_pipeline(run: Path, sets: list[str]) -> tuple[float, float]:
    """jobs.pipeline then jobs.export on ``run``: (pipeline seconds, both seconds)."""
    from jobs import export, pipeline

    t0 = time.perf_counter()
    assert pipeline.main(["--run-dir", str(run), *sets]) == 0
    pipeline_seconds = time.perf_counter() - t0
    # the forget job rewrites export too (when the run has one): the rerun must produce it
    assert export.main(["--run-dir", str(run), *sets]) == 0
    return pipeline_seconds, time.perf_counter() - t0


def run_forget(args: argparse.Namespace, run: Path, req: Path, sets: list[str], gone: Deletion
               ) -> tuple[float, Path, dict[str, Any], bool]:  # fmt: skip
    """The forget job on ``run``: seconds, the new version, its metadata and whether the
    deletion is erased everywhere (job verification, a rescan, the old version gone)."""
    from jobs import forget
    from pipelines.core.versions import current_version
    from pipelines.forget.verify import DeletedSet, verify_erased

    argv = ["--run-dir", str(run), "--requests", str(req), "--steps", str(args.steps)]
    rc, seconds = timed(
        lambda: forget.main([*argv, "--trainable-hops", str(args.trainable_hops), *sets])
    )
    version = current_version(run)
    meta = json.loads((version / "_VERSION.json").read_text()) if rc == 0 else {}
    deleted = DeletedSet(
        user_ids=frozenset(gone.users), item_ids=frozenset(), edge_ids=frozenset(gone.edges)
    )
    rescan = verify_erased(version, deleted)
    erased = (
        rc == 0
        and meta.get("verification", {}).get("passed") is True
        and rescan.ok
        and not (run / "ingest").exists()
    )
    return seconds, version, meta, bool(erased)


def kept(data: dict[str, list[str]], gone: Deletion) -> dict[str, list[str]]:
    """``data`` without the deleted users and edges."""
    return {
        u: [i for i in items if u not in gone.users and (u, i) not in gone.edges]
        for u, items in data.items()
    }


def recall(run: Path) -> float:
    return json.loads((run / "evaluate" / "metrics.json").read_text())["recall@20"]


def print_report(result: dict[str, Any]) -> None:
    rec = result["recall@20"]
    print(f"{'model':<10}{'recall@20':>10}{'deleted AUROC':>15}{'seconds':>10}")
    for name, auc, sec in (
        ("original", "original_deleted_auroc", "original_seconds"),
        ("forget", "deleted_auroc", "seconds"),
        ("rerun", "rerun_deleted_auroc", "rerun_seconds"),
    ):
        print(f"{name:<10}{rec[name]:>10.4f}{result[auc]!s:>15}{result[sec]:>10}")
    for name in ("forget", "rerun"):
        print(f"stages {name}: {result['stage_seconds'][name]}")
    print(
        f"leaves retrained {result['leaves_retrained']}/{result['leaves_total']}, "
        f"erased everywhere: {result['erased_everywhere']}"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    import torch

    torch.set_num_threads(2)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-forget-"))
    work.mkdir(parents=True, exist_ok=True)
    train = read_lines(args.train, args.max_users)
    test = {u: v for u, v in read_lines(args.test, 0).items() if u in train}
    write_lines(work / "train.txt", train)
    write_lines(work / "test.txt", test)
    gone = sample_deletion(args, train)
    req = write_requests(work / "requests.csv", gone.rows)
    edges = [(u, i) for u, items in train.items() for i in items]
    known = edges + [(u, i) for u, items in test.items() for i in items]

    def auroc(version: Path) -> float | None:
        return rounded(deleted_auroc(version, gone.pairs, known, args.seed))

    run, sets = work / "run", settings(args, work / "train.txt", work / "test.txt")
    _, original_seconds = run_pipeline(run, sets)
    original_recall, original_auroc = recall(run), auroc(run)
    if args.keep_original:
        shutil.copytree(run, work / "original", dirs_exist_ok=True)
    seconds, version, meta, erased = run_forget(args, run, req, sets, gone)

    write_lines(work / "train_kept.txt", kept(train, gone))
    write_lines(work / "test_kept.txt", kept(test, gone))
    rerun = work / "rerun"
    rerun_sets = settings(args, work / "train_kept.txt", work / "test_kept.txt")
    rerun_pipeline_seconds, rerun_seconds = run_pipeline(rerun, rerun_sets)
    rerun_auroc = auroc(rerun)
    r_forget, r_rerun = recall(version), recall(rerun)
    result = {
        "erased_everywhere": erased,
        "utility_ratio": round(r_forget / r_rerun, 4) if r_rerun else None,
        "deleted_auroc": auroc(version),
        "rerun_deleted_auroc": rerun_auroc,
        "original_deleted_auroc": original_auroc,
        "seconds": round(seconds, 1),
        "rerun_seconds": round(rerun_seconds, 1),
        "rerun_pipeline_seconds": round(rerun_pipeline_seconds, 1),
        "original_seconds": round(original_seconds, 1),
        "stage_seconds": {"forget": stage_seconds(version), "rerun": stage_seconds(rerun)},
        "leaves_retrained": len(meta.get("leaves_retrained", [])),
        "leaves_total": meta.get("leaves_total", 0),
        "recall@20": {"original": original_recall, "forget": r_forget, "rerun": r_rerun},
        "users": len(train),
        "train_edges": len(edges),
        "deleted_rows": len(gone.rows),
        "deleted_edges": len(gone.pairs),
    }
    print_report(result)
    if args.json:
        print_json(result)
    return result


if __name__ == "__main__":
    main()
