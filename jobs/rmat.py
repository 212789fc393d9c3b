"""graphpipe-rmat: write a synthetic R-MAT edge list as Parquet.

    spark-submit jobs/rmat.py --edges 1e8 --seed 7 --out hdfs:///graphs/rmat-1e8
    graphpipe-rmat --edges 1e6 --out runs/rmat-1e6 --master 'local[2]'

Prints one JSON line with the parameters, the row count and the seconds taken. Exit codes: 0
written, 2 a bad argument or an existing ``--out`` without ``--overwrite`` (one ``error:``
line; ``--debug`` adds the traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from pyspark.errors import AnalysisException
from pyspark.sql import SparkSession

from jobs.common import JobArgumentParser, JobError, add_debug_flag, job_main
from pipelines.core.session import build_spark
from pipelines.generate.rmat import DEFAULT_CHUNK_SIZE, RmatSpec, generate_rmat


def _count(text: str) -> int:
    """Accept ``1000000``, ``1_000_000`` or ``1e6``; reject non-integers."""
    try:
        value = float(text.replace("_", ""))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not value.is_integer() or value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1: {text!r}")
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    p = JobArgumentParser(prog="graphpipe-rmat", description=__doc__.split("\n")[0])
    p.add_argument("--edges", type=_count, required=True, help="Edges to generate (1e6 ok).")
    p.add_argument("--out", required=True, help="Output Parquet folder (any Spark URI).")
    p.add_argument("--a", type=float, default=0.57, help="Top-left quadrant probability.")
    p.add_argument("--b", type=float, default=0.19, help="Top-right quadrant probability.")
    p.add_argument("--c", type=float, default=0.19, help="Bottom-left quadrant probability.")
    p.add_argument("--d", type=float, default=0.05, help="Bottom-right quadrant probability.")
    p.add_argument("--seed", type=int, default=0, help="Seed (output independent of tasks).")
    p.add_argument("--scale", type=int, default=None, help="Ids in [0, 2^scale).")
    p.add_argument("--partitions", type=int, default=None, help="Spark tasks.")
    p.add_argument("--noise", type=float, default=0.0, help="Noisy-SKG amplitude.")
    p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE, help="Seeded chunk.")
    p.add_argument("--scramble-ids", action="store_true", help="Seeded id bijection.")
    p.add_argument("--drop-self-loops", action="store_true", help="Remove src == dst rows.")
    p.add_argument("--dedupe", action="store_true", help="Remove duplicate edges.")
    p.add_argument("--compression", default="snappy", help="Parquet codec.")
    p.add_argument("--overwrite", action="store_true", help="Replace an existing --out.")
    p.add_argument("--master", default=None, help="Spark master (spark-submit's wins).")
    add_debug_flag(p)
    return p


@job_main("rmat")
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    params = {
        "num_edges": args.edges,
        "scale": args.scale,
        "a": args.a,
        "b": args.b,
        "c": args.c,
        "d": args.d,
        "seed": args.seed,
        "noise": args.noise,
        "chunk_size": args.chunk_size,
        "scramble_ids": args.scramble_ids,
    }
    try:
        spec = RmatSpec.create(**params)
    except ValueError as exc:
        raise JobError(str(exc)) from exc
    owns_session = SparkSession.getActiveSession() is None  # not when called from a test
    spark = build_spark("graphpipe-rmat", master=args.master)
    started = time.perf_counter()
    spark.sparkContext.setJobDescription(f"graphpipe rmat: {args.edges} edges -> {args.out}")
    edges = generate_rmat(
        spark,
        **params,
        partitions=args.partitions,
        drop_self_loops=args.drop_self_loops,
        dedupe=args.dedupe,
    )
    mode = "overwrite" if args.overwrite else "errorifexists"
    try:
        edges.write.mode(mode).option("compression", args.compression).parquet(args.out)
    except AnalysisException as exc:
        if owns_session:
            spark.stop()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise JobError(f"--out {args.out}: {first}") from exc
    seconds = time.perf_counter() - started
    rows = args.edges
    if args.drop_self_loops or args.dedupe:
        rows = spark.read.parquet(args.out).count()
    summary = {**params, "scale": spec.scale, "out": args.out, "rows": rows}
    print(json.dumps({**summary, "seconds": round(seconds, 3)}))
    if owns_session:
        spark.stop()
    return 0


def run() -> None:
    """Console-script entry point (``graphpipe-rmat``)."""
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
