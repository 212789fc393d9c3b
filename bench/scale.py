"""Scale benchmark: partition -> per-leaf embedding -> aggregation on R-MAT graphs, vs random walks.

    nice -n 10 .venv/bin/python -m bench.scale --rmat 1e6 --json --master 'local[2]'

For each size: R-MAT edges (:func:`bench.partition.rmat_graph`: Graph500 parameters, made
undirected and simple) lose ``--holdout`` of their pairs (seeded hash of the pair) as held-out
links; the rest is the training graph. Our pipeline, timed per stage:

1. ``partition``: :func:`pipelines.partition.stage.partition_graph` with leaves bounded by
   ``--max-edges-per-leaf`` (load = 2 x internal + cut edges);
2. ``embed``: :func:`pipelines.train.homogeneous.train_leaves_homogeneous` -- one Spark task
   per leaf trains the homogeneous LightGCN (:mod:`gnn.engine.homogeneous`, BPR on ``(u, v, random
   v')``) on the leaf's internal + halo edges, one torch thread;
3. ``aggregate``: weighted mean of node replicas, then the global LightGCN propagation in
   Spark (:func:`pipelines.train.homogeneous.aggregate_homogeneous`; in one task for graphs of
   at most ``--max-direct-pairs`` pairs).

``seconds`` is the sum of the three stages (R-MAT generation and the hold-out split excluded).
The peer (``graphframes_*``): GraphFrames' ``RandomWalkEmbeddings`` when its JAR is available,
otherwise the same algorithm on DataFrames (:mod:`bench.random_walk_peer`; the JSON says which
in ``peer``), timed from the same training pairs to the vector table.

AUROC: each held-out pair whose two ends are in the training graph is a positive; as many
random node pairs (two seeded samples of distinct training nodes, paired, not edges of the
graph) are negatives; the score is the dot product of the final vectors
(:func:`gnn.eval.metrics.auroc`; ``auroc_cosine``: the same with cosine similarity).
``peak_rss_mb``: the sum over the Python driver, the Spark JVM and its Python workers of each
process's peak resident memory (Linux ``VmHWM``, reset with ``clear_refs`` before each
method, :func:`bench.common.peak_rss_mb`) -- an upper bound on the peak of the sum.

Prints a table, then one JSON line
``{"results": [{"edges", "seconds", "peak_rss_mb", "auroc", "graphframes_seconds",
"graphframes_auroc", ...}]}``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from pyspark.sql import DataFrame, SparkSession

from bench.common import (
    add_json_flag,
    add_model_size,
    add_spark_args,
    bench_spark,
    format_row,
    parser,
    peak_rss_mb,
    print_json,
    reset_peak_rss,
    rounded,
    timed,
    work_folder,
)
from bench.partition import rmat_graph
from bench.random_walk_peer import PEER_LABEL
from bench.scale_eval import eval_pairs, link_auroc, split_holdout
from bench.scale_stages import add_partition_args, run_ours, run_peer
from pipelines.core.logs import setup_logging
from pipelines.core.session import graphframes_available
from pipelines.train.homogeneous_direct import DEFAULT_MAX_DIRECT_PAIRS

log = logging.getLogger("graphpipe.bench.scale")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser("python -m bench.scale", __doc__, raw=True)
    p.add_argument("--rmat", default="1e6", help="Comma-separated R-MAT edge counts.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--holdout", type=float, default=0.01, help="Share of pairs held out.")
    add_partition_args(p)
    add_model_size(p, dim=64, layers=2)
    p.add_argument("--epochs", type=int, default=10, help="Epochs per leaf.")
    p.add_argument("--batch-size", type=int, default=16384)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument(
        "--vector-dtype",
        choices=["float32", "float16"],
        default="float32",
        help="Dtype of the leaf rows' vectors (float16 halves the replica rows' bytes).",
    )
    p.add_argument("--walks-per-node", type=int, default=5)
    p.add_argument("--walk-length", type=int, default=20)
    p.add_argument("--w2v-iterations", type=int, default=1)
    p.add_argument("--skip-peer", action="store_true")
    p.add_argument(
        "--skip-ours",
        action="store_true",
        help="Run only the peer (same graph, split and labelled pairs as a run of ours).",
    )
    add_spark_args(p)
    p.add_argument(
        "--propagate-buckets",
        type=int,
        help="Edge buckets of the final propagation (default: --shuffle-partitions).",
    )
    p.add_argument(
        "--max-direct-pairs",
        type=int,
        default=DEFAULT_MAX_DIRECT_PAIRS,
        help="Graphs up to this many training pairs are aggregated in one task (0: always "
        "the Spark shuffles).",
    )
    p.add_argument(
        "--driver-max-result-size",
        default="8g",
        help="spark.driver.maxResultSize (the peer's Word2Vec collects its vectors).",
    )
    p.add_argument("--work-dir", help="Scratch folder (default: a temp dir).")
    add_json_flag(p, "End with one JSON line.")
    return p.parse_args(argv)


def _per_million(seconds: float | None, pairs: int) -> float | None:
    return None if seconds is None else round(seconds / (pairs / 1e6), 1)


def _measured(
    spark: SparkSession, name: str, n: int, labelled: DataFrame, dim: int,
    run: Callable[[], dict[str, Any]],
) -> tuple[dict[str, Any], float, float, float, int]:  # fmt: skip
    """One method's figures, its peak RSS and the AUROC (dot, cosine, pairs) of its vectors."""
    reset_peak_rss(spark)
    out = run()
    rss = peak_rss_mb(spark)
    auc, cos, scored = link_auroc(labelled, out["vectors"], dim)
    log.info("%s %d: %s, auroc %.4f", name, n, {k: v for k, v in out.items() if k != "vectors"},
             auc)  # fmt: skip
    return out, rss, auc, cos, scored


def run_size(spark: SparkSession, n: int, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    def prepare() -> tuple[DataFrame, DataFrame, int, int]:
        pairs = rmat_graph(spark, n, args.seed, work)
        train, heldout = split_holdout(pairs, args.holdout, args.seed, work / f"split-{n}")
        return train, heldout, train.count(), heldout.count()

    (train, heldout, num_train, num_held), prep = timed(prepare)
    log.info("rmat %d: %d train pairs, %d held out (%.1f s)", n, num_train, num_held, prep)
    labelled = eval_pairs(train, heldout, args.seed).localCheckpoint()
    none: tuple[dict[str, Any], Any, Any, Any, Any] = (
        {"seconds": None, "vectors": None}, None, None, None, None
    )  # fmt: skip
    ours, ours_rss, ours_auc, ours_cos, scored = none
    if not args.skip_ours:
        ours, ours_rss, ours_auc, ours_cos, scored = _measured(
            spark, "ours", n, labelled, args.dim,
            lambda: run_ours(spark, train, work / f"ours-{n}", n, args, num_train),
        )  # fmt: skip
    peer, peer_rss, peer_auc, peer_cos, peer_scored = none
    if not args.skip_peer:
        peer, peer_rss, peer_auc, peer_cos, peer_scored = _measured(
            spark, "peer", n, labelled, args.dim,
            lambda: run_peer(spark, train, work / f"peer-{n}", n, args),
        )  # fmt: skip
        scored = peer_scored if scored is None else scored
    return {
        "edges": n,
        "train_pairs": num_train,
        "heldout_pairs": num_held,
        "eval_pairs": scored,
        "seconds": ours["seconds"],
        "seconds_per_million_edges": _per_million(ours["seconds"], num_train),
        "peak_rss_mb": ours_rss,
        "auroc": rounded(ours_auc),
        "graphframes_seconds": peer["seconds"],
        "graphframes_auroc": rounded(peer_auc),
        "graphframes_peak_rss_mb": peer_rss,
        "auroc_cosine": rounded(ours_cos),
        "graphframes_auroc_cosine": rounded(peer_cos),
        "peer": "graphframes RandomWalkEmbeddings" if graphframes_available() else PEER_LABEL,
        **{k: v for k, v in ours.items() if k not in ("vectors", "seconds")},
        **{f"peer_{k}": v for k, v in peer.items() if k not in ("vectors", "seconds")},
        "prepare_seconds": round(prep, 1),
    }


COLUMNS = [  # (key, header, format)
    ("edges", "edges", "{:,}"),
    ("train_pairs", "train pairs", "{:,}"),
    ("leaves", "k", "{}"),
    ("partition_seconds", "part s", "{:.1f}"),
    ("embed_seconds", "embed s", "{:.1f}"),
    ("aggregate_seconds", "agg s", "{:.1f}"),
    ("seconds", "total s", "{:.1f}"),
    ("seconds_per_million_edges", "s/Medge", "{:.1f}"),
    ("peak_rss_mb", "rss MiB", "{:.0f}"),
    ("auroc", "AUROC", "{:.4f}"),
    ("graphframes_seconds", "peer s", "{:.1f}"),
    ("graphframes_auroc", "peer AUROC", "{:.4f}"),
    ("graphframes_peak_rss_mb", "peer rss", "{:.0f}"),
]


TABLE = [(key, head, max(len(head), 9), fmt) for key, head, fmt in COLUMNS]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    torch.set_num_threads(1)
    work = work_folder(args.work_dir, "bench-scale-")
    spark = bench_spark(
        "bench-scale",
        args,
        work,
        {
            # Delete finished stages' shuffle files within minutes, not the default 30: at 1e8
            # the replica and propagation shuffles are tens of GB each.
            "spark.cleaner.periodicGC.interval": "2min",
            # Word2Vec collects its vocabulary and every updated vector to the driver (~2 GB
            # at 1e8: 4.3M nodes x 64 floats, twice); the default cap of 1 GiB aborts it.
            "spark.driver.maxResultSize": args.driver_max_result_size,
        },
    )
    results = []
    for size in filter(None, args.rmat.split(",")):
        row = run_size(spark, int(float(size)), work, args)
        results.append(row)
        print(format_row(TABLE, None), flush=True)
        print(format_row(TABLE, row), flush=True)
    spark.stop()
    print(format_row(TABLE, None))
    for row in results:
        print(format_row(TABLE, row))
    if len(results) >= 2 and not args.skip_ours:
        first, last = results[0], results[-1]
        growth = last["seconds_per_million_edges"] / first["seconds_per_million_edges"]
        print(f"seconds per edge growth {first['edges']:,} -> {last['edges']:,}: {growth:.2f}x")
    if args.json:
        print_json({"results": results, "cpus": os.cpu_count(), "master": args.master})
    return 0


if __name__ == "__main__":
    sys.exit(main())
