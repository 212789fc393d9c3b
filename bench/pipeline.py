"""Full-graph LightGCN against the partitioned pipeline (leaf training in Spark tasks).

    python -m bench.pipeline --train ../shared/data/gowalla/train.txt \
        --test ../shared/data/gowalla/test.txt --k 8,16,32 --budget-minutes 10 --json

The full-graph model trains with the same loop (gnn.engine.lightgcn.fit_lightgcn) in one process
with all
cores; the partitioned run partitions the bipartite graph on Spark (pipelines.partition.stage), then
runs rounds of per-leaf training inside Spark tasks with federated averaging of shared nodes
(pipelines.train.rounds) under the same wall-clock training budget. After every round the
global ego table is propagated over the whole graph and scored (evaluation time excluded from
both clocks). Ends with one JSON line:
{"full": {"recall@20", "ndcg@20", "seconds"}, "results": [{"k", "recall@20", "ndcg@20",
"seconds", "seconds_to_full_recall", "partition_seconds", "rounds"}, ...]}
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bench.common import (
    LightGCNSplit,
    add_lightgcn_files,
    add_model_size,
    int_list,
    load_lightgcn_split,
    print_json,
    ranking_evaluator,
    score_ego_rows,
)
from gnn.engine.lightgcn import LightGCNTrainConfig, fit_lightgcn
from gnn.models.lightgcn import build_norm_adj


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_lightgcn_files(p)
    p.add_argument("--k", default="8,16,32", help="Numbers of leaves, comma-separated.")
    p.add_argument("--budget-minutes", type=float, default=10.0)
    p.add_argument("--full-batch-size", type=int, default=16384)
    p.add_argument("--leaf-batch-size", type=int, default=2048)
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument(
        "--leaf-lr",
        type=float,
        default=None,
        help="Adam learning rate of the leaves (default: --lr, the full model's).",
    )
    p.add_argument("--epochs-per-round", type=int, default=1)
    p.add_argument(
        "--round-partitions",
        type=int,
        default=8,
        help="Spark partitions the leaves of a round run on (each task costs ~0.2 s per round).",
    )
    p.add_argument(
        "--vector-dtype",
        choices=("float32", "float16"),
        default="float32",
        help="Bytes of the vectors the rounds move (float16 halves them; sums stay float64).",
    )
    p.add_argument(
        "--shared-step",
        type=float,
        default=1.0,
        help="Server step on nodes held by several leaves (1: plain federated averaging).",
    )
    add_model_size(p, dim=64, layers=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="Cores: full model threads, Spark slots.")
    p.add_argument("--skip-full", action="store_true")
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def train_full(args: argparse.Namespace, d: LightGCNSplit) -> dict[str, Any]:
    """The full-graph model under the budget: final figures and its Recall@20 curve."""
    torch.set_num_threads(args.threads)
    cfg = LightGCNTrainConfig(
        epochs=100_000,
        batch_size=args.full_batch_size,
        lr=args.lr,
        dim=args.dim,
        layers=args.layers,
        seed=args.seed,
        time_budget_seconds=args.budget_minutes * 60,
        eval_every=2,
    )
    res = fit_lightgcn(
        d.users,
        d.items,
        d.num_users,
        d.num_items,
        cfg,
        device="cpu",
        test_users=d.test_users,
        test_items=d.test_items,
        log=print,
    )
    last = res.history[-1]
    full = {
        "recall@20": last["recall@20"],
        "ndcg@20": last["ndcg@20"],
        "seconds": round(res.seconds, 1),
        "curve": [(h["seconds"], h["recall@20"]) for h in res.history],
    }
    print(
        f"full graph: recall@20 {full['recall@20']:.4f} ndcg@20 {full['ndcg@20']:.4f} "
        f"in {full['seconds']} s, {res.epochs} epochs"
    )
    return full


def partition_leaves(spark: Any, inter: Any, k: int, args: argparse.Namespace, work: Path
                     ) -> tuple[Any, float, dict[str, Any]]:  # fmt: skip
    """Partition the bipartite graph into ``k`` leaves; every interaction goes to its user's
    leaf. Returns the leaf edges (written under ``work``), the seconds and the quality."""
    from pyspark.sql import functions as F

    from pipelines.core.schema import ITEM, KIND, LEAF_ID, NODE_ID, USER
    from pipelines.partition.stage import PartitionSettings, partition_interactions

    t0 = time.perf_counter()
    part = partition_interactions(
        spark,
        inter,
        PartitionSettings(num_leaves=k, seed=args.seed).validate(),
        out_dir=work / "partition",
    )
    owner = part.assignment.where(F.col(KIND) == USER).select(F.col(NODE_ID).alias(USER), LEAF_ID)
    leaf_edges = inter.join(owner, USER).select(LEAF_ID, USER, ITEM)
    leaf_edges.write.parquet(str(work / "leaf_edges"))
    leaf_edges = spark.read.parquet(str(work / "leaf_edges"))
    partition_seconds = time.perf_counter() - t0
    print(f"k={k}: partitioned in {partition_seconds:.1f} s, quality {part.quality}")
    return leaf_edges, partition_seconds, part.quality


def run_rounds(
    spark: Any, leaf_edges: Any, k: int, args: argparse.Namespace, work: Path,
    score: Any,
) -> tuple[float, int, list[tuple[float, float]], dict[str, float]]:  # fmt: skip
    """Rounds of leaf training until the budget is spent, each scored by ``score(pdf)``.

    Returns the training seconds, the rounds, the Recall@20 curve and the last figures."""
    from pipelines.train.rounds import iter_rounds
    from pipelines.train.seam import LeafTrainSettings

    settings = LeafTrainSettings(
        dim=args.dim,
        layers=args.layers,
        epochs=args.epochs_per_round,
        batch_size=args.leaf_batch_size,
        lr=args.leaf_lr if args.leaf_lr is not None else args.lr,
        seed=args.seed,
        threads=1,
        vector_dtype=args.vector_dtype,
        shared_step=args.shared_step,
    )
    train_seconds, rounds, curve = 0.0, 0, []
    best = {"recall@20": 0.0, "ndcg@20": 0.0}
    steps = iter_rounds(spark, leaf_edges, settings=settings, rounds=None,
                        partitions=args.round_partitions, work_dir=work / "rounds")  # fmt: skip
    for done in steps:  # the evaluation between rounds is outside every round's clock
        rounds = done.index
        train_seconds += done.seconds
        figures = score(done.ego(spark).toPandas())
        curve.append((round(train_seconds, 1), figures["recall@20"]))
        best = figures
        loss = np.mean([x["losses"][-1] for x in done.leaf_logs if x["losses"]])
        leaf_train = sum(x["train_seconds"] for x in done.leaf_logs)
        leaf_total = sum(x["seconds"] for x in done.leaf_logs)
        print(
            f"k={k} round {rounds}: recall@20 {figures['recall@20']:.4f} "
            f"ndcg@20 {figures['ndcg@20']:.4f} train {train_seconds:.1f}s "
            f"(round {done.seconds:.1f}s; leaf functions {leaf_total:.1f}s, of which "
            f"training {leaf_train:.1f}s, summed over leaves) "
            f"loss {loss:.4f}"
        )
        if train_seconds >= args.budget_minutes * 60:
            steps.close()
            break
    return train_seconds, rounds, curve, best


def partitioned(args: argparse.Namespace, d: LightGCNSplit, full: dict[str, Any]) -> list[dict]:
    """One partitioned run per ``--k`` on a Spark session; a result row each."""
    from pipelines.core.schema import ITEM, KIND, NODE_ID, USER, VECTOR
    from pipelines.core.session import build_spark
    from pipelines.core.vector_bytes import bytes_to_matrix

    spark = build_spark(
        "bench-pipeline",
        master=f"local[{args.threads}]",
        conf={"spark.sql.shuffle.partitions": "8", "spark.driver.memory": "4g"},
    )
    inter = spark.createDataFrame(pd.DataFrame({USER: d.users, ITEM: d.items})).cache()
    adj = build_norm_adj(d.users, d.items, d.num_users, d.num_items, "cpu")
    evaluator = ranking_evaluator(d, batch_size=4096)

    def score(pdf: pd.DataFrame) -> dict[str, float]:
        rows = ((pdf[KIND] == USER).to_numpy(), pdf[NODE_ID].to_numpy(),
                bytes_to_matrix(list(pdf[VECTOR]), args.dim))  # fmt: skip
        return score_ego_rows(d, evaluator, adj, rows, dim=args.dim, layers=args.layers)

    results = []
    for k in int_list(args.k):
        work = Path(tempfile.mkdtemp(prefix=f"bench-pipeline-k{k}-"))
        leaf_edges, partition_seconds, q = partition_leaves(spark, inter, k, args, work)
        train_seconds, rounds, curve, best = run_rounds(spark, leaf_edges, k, args, work, score)
        target = full["recall@20"]
        results.append(
            {
                "k": k,
                "recall@20": round(best["recall@20"], 4),
                "ndcg@20": round(best["ndcg@20"], 4),
                "seconds": round(train_seconds, 1),
                "seconds_to_full_recall": next(
                    (s for s, r in curve if target is not None and r >= target), None
                ),
                "partition_seconds": round(partition_seconds, 1),
                "rounds": rounds,
                "edge_cut": q.get("edge_cut"),
                "balance": q.get("balance"),
                "full_seconds_to_same_recall": next(
                    (s for s, r in full["curve"] if r >= best["recall@20"]), None
                ),
            }
        )
    spark.stop()
    return results


def print_table(full: dict[str, Any], results: list[dict[str, Any]]) -> None:
    print(
        f"\n{'k':>4} {'recall@20':>10} {'ndcg@20':>9} {'train s':>8} {'to full':>8} "
        f"{'rounds':>6} {'part s':>7}"
    )
    if full["recall@20"] is not None:
        print(
            f"{'full':>4} {full['recall@20']:>10.4f} {full['ndcg@20']:>9.4f} "
            f"{full['seconds']:>8} {'':>8} {'':>6} {'':>7}"
        )
    for r in results:
        print(
            f"{r['k']:>4} {r['recall@20']:>10.4f} {r['ndcg@20']:>9.4f} {r['seconds']:>8} "
            f"{str(r['seconds_to_full_recall']):>8} {r['rounds']:>6} {r['partition_seconds']:>7}"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    d = load_lightgcn_split(args.train, args.test)
    full: dict[str, Any] = {"recall@20": None, "ndcg@20": None, "seconds": None, "curve": []}
    if not args.skip_full:
        full = train_full(args, d)
    results = partitioned(args, d, full)
    print_table(full, results)
    full_out = {key: full[key] for key in ("recall@20", "ndcg@20", "seconds")}
    print_json({"full": full_out, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
