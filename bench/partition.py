"""Benchmark the Spark partitioner against METIS (pymetis) and hashing.

    python -m bench.partition --edges ../shared/data/soc-epinions1/soc-Epinions1.txt.gz \\
        --format snap --k 8,16,32,64 --json
    python -m bench.partition --edges ../shared/data/gowalla/train.txt --format lightgcn --k 16 \
        --max-direct-edges 4000000,0
    python -m bench.partition --rmat 1e6,1e7 --k 16 --json

Every graph is read through the project's ingest (SNAP text with ``#`` comments, LF or CRLF,
``.gz``, CSV, Parquet, LightGCN lines), made undirected and simple (self-loops and duplicate
pairs dropped; user-item graphs stay bipartite), then partitioned by
:func:`pipelines.partition.stage.partition_graph` (or ``partition_interactions``) and, for the
comparison only, by METIS on the driver with the same balance criterion (vertex weight =
degree, METIS's default 3% imbalance); ``metis_vertex_edge_cut`` is METIS balancing vertex
counts instead. Edge cuts are fractions of the undirected edges. ``peak_rss_mb`` is the peak
resident memory of the Spark JVM plus the Python driver and workers during the run.
``--max-direct-edges A,B`` runs each value of ``partition.max_direct_edges`` in turn (graphs up
to that many adjacency rows are partitioned whole in one task; 0 forces the Spark coarsening
path), so both paths are compared in one run; the ``direct`` column says which one ran.
Prints a table, then one JSON line ``{"results": [...]}``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from bench.common import (
    add_json_flag,
    add_spark_args,
    bench_spark,
    format_row,
    peak_rss_mb,
    print_json,
    reset_peak_rss,
    work_folder,
)
from bench.common import parser as bench_parser
from pipelines.core.config import IngestConfig
from pipelines.core.logs import setup_logging
from pipelines.core.schema import DST, ITEM, SRC, USER
from pipelines.partition.stage import PartitionSettings, partition_graph, partition_interactions

FORMATS: dict[str, dict[str, Any]] = {
    "snap": {"format": "edges", "file_type": "text"},
    "csv": {"format": "edges", "file_type": "csv"},
    "parquet": {"format": "edges", "file_type": "parquet"},
    "lightgcn": {"format": "lightgcn"},
}


def _undirected(df: DataFrame) -> DataFrame:
    """``src < dst`` pairs of the edges, self-loops dropped (duplicates kept)."""
    return df.where(F.col(SRC) != F.col(DST)).select(
        F.least(SRC, DST).alias(SRC), F.greatest(SRC, DST).alias(DST)
    )


def load_graph(spark: SparkSession, path: str, fmt: str, work: Path) -> tuple[DataFrame, bool]:
    """Read ``path`` through the ingest stage; returns simple undirected pairs and bipartite."""
    from pipelines.ingest.stage import ingest

    out = work / f"ingest-{abs(hash(path))}"
    if not out.is_dir():
        ingest(spark, IngestConfig(train_path=path, **FORMATS[fmt]), out)
    if fmt == "lightgcn":
        df = spark.read.parquet(str(out / "interactions")).where("split = 'train'")
        return df.select(USER, ITEM).distinct(), True
    df = spark.read.parquet(str(out / "edges")).where("split = 'train'")
    return _undirected(df).distinct(), False


def rmat_graph(spark: SparkSession, num_edges: int, seed: int, work: Path) -> DataFrame:
    """R-MAT edges from :func:`pipelines.generate.rmat.generate_rmat`, written once, made simple."""
    from pipelines.generate.rmat import generate_rmat

    out = work / f"rmat-{num_edges}-{seed}"
    if not out.is_dir():
        generate_rmat(spark, num_edges=num_edges, seed=seed).write.parquet(str(out))
    pairs = _undirected(spark.read.parquet(str(out)))
    simple = work / f"rmat-{num_edges}-{seed}-simple"
    if not simple.is_dir():
        pairs.distinct().write.parquet(str(simple))
    return spark.read.parquet(str(simple))


def metis(edges: np.ndarray, k: int, *, degree_balanced: bool) -> tuple[np.ndarray, float]:
    """METIS k-way partition of undirected pairs (dense ids) and the seconds it took."""
    import pymetis

    n = int(edges.max()) + 1
    s = np.r_[edges[:, 0], edges[:, 1]]
    d = np.r_[edges[:, 1], edges[:, 0]]
    order = np.argsort(s, kind="stable")
    xadj = np.r_[0, np.cumsum(np.bincount(s, minlength=n))]
    adjacency = pymetis.CSRAdjacency(xadj, d[order])
    degree = np.diff(xadj)
    started = time.perf_counter()
    _, parts = pymetis.part_graph(
        k,
        adjacency,
        vweights=np.maximum(degree, 1) if degree_balanced else None,
        options=pymetis.Options(seed=0),
    )
    return np.asarray(parts), time.perf_counter() - started


def dense_pairs(pairs: DataFrame, bipartite: bool) -> np.ndarray:
    """Collect the pairs with dense ids (benchmark only: METIS runs on the driver)."""
    cols = (USER, ITEM) if bipartite else (SRC, DST)
    pdf: pd.DataFrame = pairs.select(*cols).toPandas()  # Arrow transfer
    arr = pdf.to_numpy(dtype=np.int64).reshape(-1, 2)
    if bipartite:
        arr = np.c_[arr[:, 0], arr[:, 1] + arr[:, 0].max() + 1]
    _, inv = np.unique(arr, return_inverse=True)
    return inv.reshape(-1, 2)


def cut_and_balance(edges: np.ndarray, parts: np.ndarray, k: int) -> tuple[float, float]:
    cut = float((parts[edges[:, 0]] != parts[edges[:, 1]]).mean())
    degree = np.bincount(edges.ravel(), minlength=len(parts))
    loads = np.bincount(parts, weights=degree, minlength=k)
    return cut, float(loads.max() / loads.mean())


def hash_cut(pairs: DataFrame, bipartite: bool, k: int) -> float:
    a, b = (F.col(USER) * 2, F.col(ITEM) * 2 + 1) if bipartite else (F.col(SRC), F.col(DST))
    row = pairs.select(
        F.avg((F.pmod(F.xxhash64(a), F.lit(k)) != F.pmod(F.xxhash64(b), F.lit(k))).cast("double"))
    ).first()
    assert row is not None
    return float(row[0])


def run_one(
    spark: SparkSession,
    name: str,
    pairs: DataFrame,
    bipartite: bool,
    k: int,
    args: argparse.Namespace,
    max_direct_edges: int = PartitionSettings.max_direct_edges,
) -> dict[str, Any]:
    pairs = pairs.cache()
    num_edges = pairs.count()
    settings = PartitionSettings(
        num_leaves=k,
        seed=args.seed,
        iterations_per_level=args.iterations,
        max_direct_edges=max_direct_edges,
        work_dir=args.work_dir,
    )
    out = Path(args.work_dir) / f"out-{name}-{k}"
    reset_peak_rss(spark)
    started = time.perf_counter()
    if bipartite:
        result = partition_interactions(spark, pairs, settings, out_dir=out)
    else:
        result = partition_graph(spark, pairs, settings, out_dir=out)
    seconds = time.perf_counter() - started
    peak = peak_rss_mb(spark)
    shutil.rmtree(out, ignore_errors=True)
    q = result.quality
    row: dict[str, Any] = {
        "graph": name,
        "nodes": q["nodes"],
        "edges": num_edges,
        "k": k,
        "edge_cut": round(q["edge_cut"], 4),
        "metis_edge_cut": None,
        "metis_vertex_edge_cut": None,
        "hash_edge_cut": round(hash_cut(pairs, bipartite, k), 4),
        "balance": round(q["balance"], 4),
        "metis_balance": None,
        "seconds": round(seconds, 1),
        "metis_seconds": None,
        "seconds_per_million_edges": round(seconds / (num_edges / 1e6), 2),
        "peak_rss_mb": peak,
        "levels": q.get("levels"),
        "direct": bool(q.get("direct")),
        "halo_replication": round(q["halo_replication"], 3),
    }
    if num_edges <= args.metis_max_edges:
        dense = dense_pairs(pairs, bipartite)
        parts, metis_seconds = metis(dense, k, degree_balanced=True)
        row["metis_edge_cut"], row["metis_balance"] = (
            round(x, 4) for x in cut_and_balance(dense, parts, k)
        )
        row["metis_seconds"] = round(metis_seconds, 2)
        vparts, _ = metis(dense, k, degree_balanced=False)
        row["metis_vertex_edge_cut"] = round(cut_and_balance(dense, vparts, k)[0], 4)
    pairs.unpersist()
    return row


COLUMNS = [  # (key, header, width, format)
    ("graph", "graph", 18, "{}"),
    ("edges", "edges", 11, "{:,}"),
    ("k", "k", 4, "{}"),
    ("direct", "direct", 6, "{}"),
    ("edge_cut", "cut", 7, "{:.4f}"),
    ("metis_edge_cut", "metis", 7, "{:.4f}"),
    ("hash_edge_cut", "hash", 7, "{:.4f}"),
    ("balance", "balance", 7, "{:.3f}"),
    ("metis_balance", "m.bal", 7, "{:.3f}"),
    ("seconds", "seconds", 8, "{:.1f}"),
    ("metis_seconds", "m.sec", 7, "{:.2f}"),
    ("seconds_per_million_edges", "s/Medge", 8, "{:.2f}"),
    ("peak_rss_mb", "rss MiB", 8, "{:.0f}"),
]


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser("python -m bench.partition", __doc__, raw=True)
    parser.add_argument("--edges", help="Edge list or interactions file (or folder).")
    parser.add_argument("--format", choices=sorted(FORMATS), default="snap")
    parser.add_argument("--name", help="Graph name in the table (default: file name).")
    parser.add_argument("--k", default="16", help="Comma-separated leaf counts.")
    parser.add_argument(
        "--rmat", default="", help="Comma-separated R-MAT edge counts, e.g. 1e6,1e7."
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iterations", type=int, default=8, help="Refinement rounds per level.")
    parser.add_argument(
        "--max-direct-edges",
        default=str(PartitionSettings.max_direct_edges),
        help="Comma-separated partition.max_direct_edges values, each run in turn (e.g. "
        "4000000,0: the one-task path, then the Spark coarsening path).",
    )
    parser.add_argument("--metis-max-edges", type=float, default=2e7)
    add_spark_args(parser)
    parser.add_argument("--work-dir", help="Folder for generated graphs and intermediate files.")
    add_json_flag(parser, "End with one JSON line.")
    args = parser.parse_args(argv)
    setup_logging()
    if not args.edges and not args.rmat:
        parser.error("give --edges PATH and/or --rmat SIZES")
    work = work_folder(args.work_dir, "bench-partition-")
    args.work_dir = str(work / "spark")
    spark = bench_spark("bench-partition", args, work)
    graphs: list[tuple[str, DataFrame, bool]] = []
    if args.edges:
        pairs, bipartite = load_graph(spark, args.edges, args.format, work)
        graphs.append((args.name or Path(args.edges).name.split(".")[0], pairs, bipartite))
    for size in filter(None, args.rmat.split(",")):
        n = int(float(size))
        graphs.append((f"rmat-{size}", rmat_graph(spark, n, args.seed, work), False))
    print(format_row(COLUMNS, None, left="graph"), flush=True)
    results = []
    for name, pairs, bipartite in graphs:
        for k in (int(x) for x in args.k.split(",")):
            for direct in (int(float(x)) for x in args.max_direct_edges.split(",")):
                row = run_one(spark, name, pairs, bipartite, k, args, direct)
                results.append(row)
                print(format_row(COLUMNS, row, left="graph"), flush=True)
    spark.stop()
    if args.json:
        print_json({"results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
