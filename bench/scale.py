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
method, :func:`bench.partition.peak_rss_mb`) -- an upper bound on the peak of the sum.

Prints a table, then one JSON line
``{"results": [{"edges", "seconds", "peak_rss_mb", "auroc", "graphframes_seconds",
"graphframes_auroc", ...}]}``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from bench.partition import peak_rss_mb, reset_peak_rss, rmat_graph
from bench.random_walk_peer import (
    PEER_LABEL,
    graphframes_vectors,
    random_walks,
    word2vec_vectors,
)
from gnn.eval.metrics import auroc
from pipelines.core.logs import setup_logging
from pipelines.core.schema import DST, NODE_ID, SRC, VECTOR
from pipelines.core.session import build_spark, graphframes_available
from pipelines.core.stages import run_stage
from pipelines.partition.stage import PartitionSettings, partition_graph
from pipelines.train.homogeneous import (
    aggregate_homogeneous,
    leaf_edge_rows,
    one_leaf_per_task,
    split_oversized_leaves,
    train_leaves_homogeneous,
)
from pipelines.train.homogeneous_direct import DEFAULT_MAX_DIRECT_PAIRS
from pipelines.train.rounds import SLOT_KEY
from pipelines.train.seam import LEAF_LOG, LeafTrainSettings

log = logging.getLogger("graphpipe.bench.scale")
LABEL = "label"
SCORE_SCHEMA = T.StructType(
    [
        T.StructField(LABEL, T.IntegerType(), False),
        T.StructField("score", T.DoubleType(), False),
        T.StructField("cosine", T.DoubleType(), False),
    ]
)


def split_holdout(
    pairs: DataFrame, fraction: float, seed: int, work: Path
) -> tuple[DataFrame, DataFrame]:
    """(train, held-out) pairs by a seeded hash of the pair, written as Parquet.

    Schema: pairs ``src, dst`` -> two tables ``src, dst``.
    """
    bucket = F.pmod(F.xxhash64(SRC, DST, F.lit(seed)), F.lit(1_000_000))
    held = bucket < F.lit(int(round(fraction * 1_000_000)))
    pairs.where(~held).write.mode("overwrite").parquet(str(work / "train"))
    pairs.where(held).write.mode("overwrite").parquet(str(work / "heldout"))
    spark = pairs.sparkSession
    return spark.read.parquet(str(work / "train")), spark.read.parquet(str(work / "heldout"))


def eval_pairs(train: DataFrame, heldout: DataFrame, seed: int) -> DataFrame:
    """Positives (held-out pairs between training nodes) and as many random non-edge pairs.

    Only O(test pairs) rows reach the driver (the sampled node ids).

    Schema: ``src, dst, label`` (1 held-out edge, 0 random pair).
    """
    spark = train.sparkSession
    nodes = (
        train.select(F.col(SRC).alias(NODE_ID))
        .unionByName(train.select(F.col(DST).alias(NODE_ID)))
        .distinct()
    )
    known = nodes.select(F.col(NODE_ID).alias(SRC))
    pos = heldout.join(known, SRC, "left_semi").join(
        known.withColumnRenamed(SRC, DST), DST, "left_semi"
    )
    pos = pos.select(SRC, DST, F.lit(1).alias(LABEL)).localCheckpoint()
    m = pos.count()

    def sample(salt: int) -> np.ndarray:
        order = F.xxhash64(NODE_ID, F.lit(seed), F.lit(salt))
        rows = nodes.orderBy(order).limit(m).collect()
        return np.array([r[NODE_ID] for r in rows], dtype=np.int64)

    a, b = sample(1), sample(2)
    n = min(len(a), len(b))
    rng = np.random.default_rng(seed)
    a, b = a[:n], b[rng.permutation(n)]
    keep = a != b
    lo, hi = np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])
    neg = spark.createDataFrame(pd.DataFrame({SRC: lo, DST: hi}), schema="src long, dst long").join(
        train.unionByName(heldout), [SRC, DST], "left_anti"
    )
    return pos.unionByName(neg.select(SRC, DST, F.lit(0).alias(LABEL)))


def link_auroc(pairs: DataFrame, vectors: DataFrame, dim: int) -> tuple[float, float, int]:
    """AUROC of dot-product scores of labelled pairs; returns (auroc, cosine auroc, scored).

    Schema: pairs ``src, dst, label``; vectors ``node_id, vector`` (float32 bytes).
    """
    vs = vectors.select(F.col(NODE_ID).alias(SRC), F.col(VECTOR).alias("vs"))
    vd = vectors.select(F.col(NODE_ID).alias(DST), F.col(VECTOR).alias("vd"))
    joined = pairs.join(vs, SRC).join(vd, DST).select(LABEL, "vs", "vd")

    def fn(batches: Iterable[pd.DataFrame]) -> Iterable[pd.DataFrame]:
        for pdf in batches:
            if len(pdf):
                a = np.frombuffer(b"".join(pdf["vs"]), np.float32).reshape(len(pdf), dim)
                b = np.frombuffer(b"".join(pdf["vd"]), np.float32).reshape(len(pdf), dim)
                a64, b64 = a.astype(np.float64), b.astype(np.float64)
                score = (a64 * b64).sum(axis=1)
                norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
                cosine = score / np.where(norms == 0, 1.0, norms)
                yield pd.DataFrame(
                    {LABEL: pdf[LABEL].astype("int32"), "score": score, "cosine": cosine}
                )

    rows = joined.mapInPandas(fn, schema=SCORE_SCHEMA).collect()
    labels = torch.tensor([r[LABEL] for r in rows])
    scores = torch.tensor([r["score"] for r in rows], dtype=torch.float64)
    cosines = torch.tensor([r["cosine"] for r in rows], dtype=torch.float64)
    return auroc(scores, labels), auroc(cosines, labels), len(rows)


def stage_hash(args: argparse.Namespace, n: int, *keys: str) -> str:
    """Config hash of a stage: the size and the named arguments (a changed one reruns it)."""
    picked = {"edges": n, **{k: getattr(args, k) for k in keys}}
    return hashlib.sha256(json.dumps(picked, sort_keys=True).encode()).hexdigest()[:16]


PARTITION_KEYS = (
    "seed", "holdout", "max_edges_per_leaf", "iterations", "max_levels", "max_initial_edges",
    "max_direct_edges", "initial_tries", "initial_iterations", "initial_refine_iterations",
)  # fmt: skip
EMBED_KEYS = (*PARTITION_KEYS, "dim", "layers", "epochs", "batch_size", "lr", "vector_dtype")
AGGREGATE_KEYS = (*EMBED_KEYS, "shuffle_partitions", "propagate_buckets", "max_direct_pairs")
WALK_KEYS = ("seed", "holdout", "walks_per_node", "walk_length")
WORD2VEC_KEYS = (*WALK_KEYS, "dim", "w2v_iterations")


def run_ours(
    spark: SparkSession,
    train: DataFrame,
    work: Path,
    n: int,
    args: argparse.Namespace,
    n_pairs: int,
) -> dict[str, Any]:
    """Partition, embed per leaf, aggregate; seconds per stage and the vector table.

    Each stage is resumable (:func:`pipelines.core.stages.run_stage` under ``work``): rerun with the
    same ``--work-dir`` and arguments, a finished stage is read back and reports the seconds it
    took when it ran.
    """
    settings = PartitionSettings(
        max_edges_per_leaf=args.max_edges_per_leaf,
        seed=args.seed,
        iterations_per_level=args.iterations,
        max_levels=args.max_levels,
        max_initial_edges=args.max_initial_edges,
        max_direct_edges=args.max_direct_edges,
        initial_tries=args.initial_tries,
        initial_iterations=args.initial_iterations,
        initial_refine_iterations=args.initial_refine_iterations,
        work_dir=str(work / "partition-work"),
    ).validate()

    def partition_body(out: Path) -> dict[str, Any]:
        part = partition_graph(spark, train, settings, out_dir=out)
        return {"quality": dict(part.quality)}

    parted = run_stage(work, "partition", stage_hash(args, n, *PARTITION_KEYS), partition_body)
    quality = parted.extra["quality"]
    assignment = spark.read.parquet(str(parted.path / "assignment"))
    halo_edges = spark.read.parquet(str(parted.path / "halo_edges"))
    k = int(quality["num_leaves"])
    leaf_settings = LeafTrainSettings(
        dim=args.dim,
        layers=args.layers,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        reg=1e-4,
        seed=args.seed,
        device="cpu",
        threads=1,
        vector_dtype=args.vector_dtype,
    )

    def embed_body(out: Path) -> dict[str, Any]:
        edges = leaf_edge_rows(train, assignment, halo_edges)
        # a hub leaf over the bound is cut by edge into sub-leaves (item 6: "split further")
        edges, split, sizes = split_oversized_leaves(edges, args.max_edges_per_leaf)
        placed = one_leaf_per_task(edges, sizes)
        rows = train_leaves_homogeneous(placed, leaf_settings, group_key=SLOT_KEY)
        rows.write.mode("overwrite").parquet(str(out / "rows"))
        return {"leaves_split": {str(leaf): parts for leaf, parts in split.items()}}

    embedded = run_stage(work, "leaf-rows", stage_hash(args, n, *EMBED_KEYS), embed_body)
    rows = spark.read.parquet(str(embedded.path / "rows"))
    leaf_logs = [json.loads(r[LEAF_LOG]) for r in rows.where(F.col(LEAF_LOG).isNotNull()).collect()]

    def aggregate_body(out: Path) -> dict[str, Any]:
        final = aggregate_homogeneous(
            rows,
            train,
            dim=args.dim,
            layers=args.layers,
            partitions=args.shuffle_partitions,
            buckets=args.propagate_buckets,
            max_direct_pairs=args.max_direct_pairs,
        )
        final.write.mode("overwrite").parquet(str(out / "vectors"))
        return {}

    aggregated = run_stage(work, "vectors", stage_hash(args, n, *AGGREGATE_KEYS), aggregate_body)
    stage_seconds = [parted.seconds, embedded.seconds, aggregated.seconds]
    return {
        "partition_seconds": round(stage_seconds[0], 1),
        "embed_seconds": round(stage_seconds[1], 1),
        "aggregate_seconds": round(stage_seconds[2], 1),
        "seconds": round(sum(stage_seconds), 1),
        "resumed_stages": [r.name for r in (parted, embedded, aggregated) if r.skipped],
        "partition_one_task": bool(quality.get("direct", False)),
        "aggregate_one_task": 0 < n_pairs <= args.max_direct_pairs,
        "leaves": k,
        "leaves_split": embedded.extra.get("leaves_split", {}),
        "edge_cut": round(float(quality["edge_cut"]), 4),
        "leaf_rows": rows.count(),
        "max_leaf_train_seconds": max(x["train_seconds"] for x in leaf_logs),
        "leaf_edges_max": max(x["edges"] for x in leaf_logs),
        "final_loss_mean": round(float(np.mean([x["losses"][-1] for x in leaf_logs])), 4),
        "vectors": spark.read.parquet(str(aggregated.path / "vectors")),
    }


def run_peer(
    spark: SparkSession, train: DataFrame, work: Path, n: int, args: argparse.Namespace
) -> dict[str, Any]:
    """Random-walk embeddings (GraphFrames when its JAR runs, else the DataFrame version).

    The DataFrame version runs as two resumable stages under ``work`` (``walks``,
    ``w2v-vectors``); a resumed stage reports the seconds its first run took.
    """
    if graphframes_available():
        t0 = time.perf_counter()
        vectors = graphframes_vectors(
            train,
            temporary_prefix=str(work / "gf-walks"),
            dim=args.dim,
            walks_per_node=args.walks_per_node,
            seed=args.seed,
        )
        vectors.write.mode("overwrite").parquet(str(work / "gf-vectors"))
        return {
            "seconds": round(time.perf_counter() - t0, 1),
            "vectors": spark.read.parquet(str(work / "gf-vectors")),
        }

    def walk_body(out: Path) -> dict[str, Any]:
        random_walks(
            train,
            walks_per_node=args.walks_per_node,
            walk_length=args.walk_length,
            restart_probability=0.1,
            seed=args.seed,
        ).write.mode("overwrite").parquet(str(out / "walks"))
        return {}

    walked = run_stage(work, "walks", stage_hash(args, n, *WALK_KEYS), walk_body)

    def word2vec_body(out: Path) -> dict[str, Any]:
        word2vec_vectors(
            spark.read.parquet(str(walked.path / "walks")),
            dim=args.dim,
            window=5,
            max_iter=args.w2v_iterations,
            partitions=1,
            seed=args.seed,
        ).write.mode("overwrite").parquet(str(out / "vectors"))
        return {}

    trained = run_stage(work, "w2v-vectors", stage_hash(args, n, *WORD2VEC_KEYS), word2vec_body)
    return {
        "walk_seconds": round(walked.seconds, 1),
        "word2vec_seconds": round(trained.seconds, 1),
        "seconds": round(walked.seconds + trained.seconds, 1),
        "resumed_stages": [r.name for r in (walked, trained) if r.skipped],
        "vectors": spark.read.parquet(str(trained.path / "vectors")),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _per_million(seconds: float | None, pairs: int) -> float | None:
    return None if seconds is None else round(seconds / (pairs / 1e6), 1)


def run_size(spark: SparkSession, n: int, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    pairs = rmat_graph(spark, n, args.seed, work)
    train, heldout = split_holdout(pairs, args.holdout, args.seed, work / f"split-{n}")
    num_train, num_held = train.count(), heldout.count()
    prep = time.perf_counter() - t0
    log.info("rmat %d: %d train pairs, %d held out (%.1f s)", n, num_train, num_held, prep)
    labelled = eval_pairs(train, heldout, args.seed).localCheckpoint()

    ours: dict[str, Any] = {"seconds": None, "vectors": None}
    ours_rss, ours_auc, ours_cos, scored = None, None, None, None
    if not args.skip_ours:
        reset_peak_rss(spark)
        ours = run_ours(spark, train, work / f"ours-{n}", n, args, num_train)
        ours_rss = peak_rss_mb(spark)
        ours_auc, ours_cos, scored = link_auroc(labelled, ours["vectors"], args.dim)
        log.info("ours %d: %s, auroc %.4f", n, {k: v for k, v in ours.items() if k != "vectors"},
                 ours_auc)  # fmt: skip

    peer: dict[str, Any] = {"seconds": None, "vectors": None}
    peer_rss, peer_auc, peer_cos = None, None, None
    if not args.skip_peer:
        reset_peak_rss(spark)
        peer = run_peer(spark, train, work / f"peer-{n}", n, args)
        peer_rss = peak_rss_mb(spark)
        peer_auc, peer_cos, peer_scored = link_auroc(labelled, peer["vectors"], args.dim)
        scored = peer_scored if scored is None else scored
        log.info("peer %d: %s, auroc %.4f", n, {k: v for k, v in peer.items() if k != "vectors"},
                 peer_auc)  # fmt: skip
    row = {
        "edges": n,
        "train_pairs": num_train,
        "heldout_pairs": num_held,
        "eval_pairs": scored,
        "seconds": ours["seconds"],
        "seconds_per_million_edges": _per_million(ours["seconds"], num_train),
        "peak_rss_mb": ours_rss,
        "auroc": _rounded(ours_auc),
        "graphframes_seconds": peer["seconds"],
        "graphframes_auroc": _rounded(peer_auc),
        "graphframes_peak_rss_mb": peer_rss,
        "auroc_cosine": _rounded(ours_cos),
        "graphframes_auroc_cosine": _rounded(peer_cos),
        "peer": "graphframes RandomWalkEmbeddings" if graphframes_available() else PEER_LABEL,
        **{k: v for k, v in ours.items() if k not in ("vectors", "seconds")},
        **{f"peer_{k}": v for k, v in peer.items() if k not in ("vectors", "seconds")},
        "prepare_seconds": round(prep, 1),
    }
    return row


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


def format_row(row: dict[str, Any] | None) -> str:
    cells = []
    for key, head, fmt in COLUMNS:
        text = head if row is None else ("-" if row.get(key) is None else fmt.format(row[key]))
        cells.append(text.rjust(max(len(head), 9)))
    return " ".join(cells)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rmat", default="1e6", help="Comma-separated R-MAT edge counts.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--holdout", type=float, default=0.01, help="Share of pairs held out.")
    p.add_argument("--max-edges-per-leaf", type=int, default=200_000)
    p.add_argument("--iterations", type=int, default=8, help="Partition refinement rounds/level.")
    p.add_argument(
        "--max-levels",
        type=int,
        default=30,
        help="Partition coarsening levels (0: refine a hash split of the graph itself).",
    )
    p.add_argument(
        "--max-initial-edges",
        type=int,
        default=10_000_000,
        help="Largest coarsest graph split in one task (0: always start from a hash split).",
    )
    p.add_argument(
        "--max-direct-edges",
        type=int,
        default=PartitionSettings.max_direct_edges,
        help="Graphs up to this many adjacency rows are partitioned whole in one task "
        "(0: always coarsen on Spark).",
    )
    p.add_argument(
        "--initial-tries",
        type=int,
        default=PartitionSettings.initial_tries,
        help="Seeded starts per bisection of the one-task partitioner.",
    )
    p.add_argument(
        "--initial-iterations",
        type=int,
        default=PartitionSettings.initial_iterations,
        help="Move rounds per start of a one-task bisection.",
    )
    p.add_argument(
        "--initial-refine-iterations",
        type=int,
        default=PartitionSettings.initial_refine_iterations,
        help="k-way rounds of the one-task partitioner.",
    )
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
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
    p.add_argument("--master", default="local[2]")
    p.add_argument("--shuffle-partitions", type=int, default=8)
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
    p.add_argument("--driver-memory", default="6g")
    p.add_argument(
        "--driver-max-result-size",
        default="8g",
        help="spark.driver.maxResultSize (the peer's Word2Vec collects its vectors).",
    )
    p.add_argument("--work-dir", help="Scratch folder (default: a temp dir).")
    p.add_argument("--json", action="store_true", help="End with one JSON line.")
    args = p.parse_args(argv)
    setup_logging()
    torch.set_num_threads(1)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    spark = build_spark(
        "bench-scale",
        master=args.master,
        checkpoint_dir=str(work / "ckpt"),
        conf={
            "spark.sql.shuffle.partitions": str(args.shuffle_partitions),
            "spark.driver.memory": args.driver_memory,
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
        print(format_row(None), flush=True)
        print(format_row(row), flush=True)
    spark.stop()
    print(format_row(None))
    for row in results:
        print(format_row(row))
    if len(results) >= 2 and not args.skip_ours:
        first, last = results[0], results[-1]
        growth = last["seconds_per_million_edges"] / first["seconds_per_million_edges"]
        print(f"seconds per edge growth {first['edges']:,} -> {last['edges']:,}: {growth:.2f}x")
    if args.json:
        print(json.dumps({"results": results, "cpus": os.cpu_count(), "master": args.master}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
