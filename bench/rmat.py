"""Benchmark: R-MAT generation time (Spark tasks + numpy), with and without the Parquet write.

    nice -n 10 .venv/bin/python -m bench.rmat --edges 1e6 1e7 1e8 --master 'local[2]'

For each size: ``generate`` runs the job into Spark's ``noop`` sink (every edge is generated and
converted, nothing is written); ``generate+write`` is what ``graphpipe-rmat`` does (snappy
Parquet). Prints a table, then one JSON line with ``rmat_seconds`` (generate+write per edge
count), ``generate_seconds``, ``edges_per_second`` and ``parquet_mib``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import print_json
from jobs.rmat import _count
from pipelines.core.session import build_spark
from pipelines.generate.rmat import RmatSpec, generate_rmat


def _size_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*.parquet")) / 2**20


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--edges", type=_count, nargs="+", default=[10**6, 10**7])
    p.add_argument("--master", default="local[2]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", default=None, help="Scratch folder (default: a temp dir).")
    args = p.parse_args(argv)

    spark = build_spark("bench-rmat", master=args.master, conf={"spark.driver.memory": "2g"})
    scratch = Path(args.out_dir or tempfile.mkdtemp(prefix="bench-rmat-"))
    generate(spark, 1000, scratch / "warmup", args.seed)  # start the Python workers once
    rows = []
    for n in args.edges:
        rows.append(generate(spark, n, scratch / f"rmat-{n}", args.seed))
    shutil.rmtree(scratch, ignore_errors=True)

    print(f"{'edges':>13} {'scale':>5} {'parts':>5} {'generate s':>10} {'gen+write s':>11} "
          f"{'Medges/s':>8} {'MiB':>7}")  # fmt: skip
    for r in rows:
        rate = r["edges"] / r["write_s"] / 1e6
        print(
            f"{r['edges']:>13,} {r['scale']:>5} {r['partitions']:>5} {r['generate_s']:>10.1f} "
            f"{r['write_s']:>11.1f} {rate:>8.2f} {r['mib']:>7.1f}"
        )
    print_json(
        {
            "rmat_seconds": {str(r["edges"]): round(r["write_s"], 2) for r in rows},
            "generate_seconds": {str(r["edges"]): round(r["generate_s"], 2) for r in rows},
            "edges_per_second": {str(r["edges"]): round(r["edges"] / r["write_s"]) for r in rows},
            "parquet_mib": {str(r["edges"]): round(r["mib"], 1) for r in rows},
            "master": args.master,
            "cpus": os.cpu_count(),
        }
    )
    spark.stop()
    return 0


def generate(spark, num_edges: int, out: Path, seed: int) -> dict:
    df = generate_rmat(spark, num_edges=num_edges, seed=seed)
    partitions = df.rdd.getNumPartitions()
    started = time.perf_counter()
    df.write.format("noop").mode("overwrite").save()
    generate_s = time.perf_counter() - started
    started = time.perf_counter()
    df.write.mode("overwrite").parquet(str(out))
    write_s = time.perf_counter() - started
    mib = _size_mib(out)
    shutil.rmtree(out, ignore_errors=True)
    return {
        "edges": num_edges,
        "scale": RmatSpec.create(num_edges=num_edges).scale,
        "partitions": partitions,
        "generate_s": generate_s,
        "write_s": write_s,
        "mib": mib,
    }


if __name__ == "__main__":
    raise SystemExit(main())
