"""The two methods ``bench.scale`` times, each as resumable stages under its work folder.

Ours: partition -> per-leaf homogeneous LightGCN -> aggregation
(:func:`run_ours`); the peer: random walks + Word2Vec, or GraphFrames when its JAR runs
(:func:`run_peer`). A stage's config hash is the graph size and the arguments it reads.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from bench.random_walk_peer import graphframes_vectors, random_walks, word2vec_vectors
from pipelines.core.session import graphframes_available
from pipelines.core.stages import StageResult, run_stage
from pipelines.partition.stage import PartitionSettings, partition_graph
from pipelines.train.homogeneous import (
    aggregate_homogeneous,
    leaf_edge_rows,
    one_leaf_per_task,
    split_oversized_leaves,
    train_leaves_homogeneous,
)
from pipelines.train.rounds import SLOT_KEY
from pipelines.train.seam import LEAF_LOG, LeafTrainSettings


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


def add_partition_args(p: argparse.ArgumentParser) -> None:
    """The partitioner's flags (:func:`partition_settings` reads them)."""
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


def partition_settings(args: argparse.Namespace, work: Path) -> PartitionSettings:
    """The partitioner's settings from the ``--max-*``, ``--initial-*`` and ``--iterations``."""
    same: tuple[str, ...] = ("max_levels", "max_initial_edges", "max_direct_edges", "initial_tries")
    same += ("initial_iterations", "initial_refine_iterations")
    return PartitionSettings(
        max_edges_per_leaf=args.max_edges_per_leaf,
        seed=args.seed,
        iterations_per_level=args.iterations,
        **{k: getattr(args, k) for k in same},
        work_dir=str(work),
    ).validate()


def _table_stage(
    spark: SparkSession,
    work: Path,
    stage: tuple[str, argparse.Namespace, int, tuple[str, ...]],
    make: Callable[[], DataFrame],
    table: str = "vectors",
) -> tuple[StageResult, DataFrame]:
    """A resumable stage that writes ``make()`` as the Parquet table ``table``. ``stage``: its
    name and what its config hash reads (arguments, size, argument names). Returns the stage's
    result and the table read back."""
    name, args, n, keys = stage

    def body(out: Path) -> dict[str, Any]:
        make().write.mode("overwrite").parquet(str(out / table))
        return {}

    done = run_stage(work, name, stage_hash(args, n, *keys), body)
    return done, spark.read.parquet(str(done.path / table))


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
    settings = partition_settings(args, work / "partition-work")

    def partition_body(out: Path) -> dict[str, Any]:
        part = partition_graph(spark, train, settings, out_dir=out)
        return {"quality": dict(part.quality)}

    parted = run_stage(work, "partition", stage_hash(args, n, *PARTITION_KEYS), partition_body)
    quality = parted.extra["quality"]
    assignment = spark.read.parquet(str(parted.path / "assignment"))
    halo_edges = spark.read.parquet(str(parted.path / "halo_edges"))
    k = int(quality["num_leaves"])
    leaf_settings = LeafTrainSettings(
        **{k: getattr(args, k) for k in ("dim", "layers", "epochs", "batch_size", "lr", "seed")},
        reg=1e-4,
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

    aggregated, vectors = _table_stage(
        spark,
        work,
        ("vectors", args, n, AGGREGATE_KEYS),
        lambda: aggregate_homogeneous(
            rows,
            train,
            dim=args.dim,
            layers=args.layers,
            partitions=args.shuffle_partitions,
            buckets=args.propagate_buckets,
            max_direct_pairs=args.max_direct_pairs,
        ),
    )
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
        "vectors": vectors,
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

    walked, walks = _table_stage(
        spark,
        work,
        ("walks", args, n, WALK_KEYS),
        lambda: random_walks(
            train,
            walks_per_node=args.walks_per_node,
            walk_length=args.walk_length,
            restart_probability=0.1,
            seed=args.seed,
        ),
        table="walks",
    )
    trained, vectors = _table_stage(
        spark,
        work,
        ("w2v-vectors", args, n, WORD2VEC_KEYS),
        lambda: word2vec_vectors(
            walks,
            dim=args.dim,
            window=5,
            max_iter=args.w2v_iterations,
            partitions=1,
            seed=args.seed,
        ),
    )
    return {
        "walk_seconds": round(walked.seconds, 1),
        "word2vec_seconds": round(trained.seconds, 1),
        "seconds": round(walked.seconds + trained.seconds, 1),
        "resumed_stages": [r.name for r in (walked, trained) if r.skipped],
        "vectors": vectors,
    }
