"""Ingest job: edge lists, interactions or KG triples -> dense-id Parquet, bad rows quarantined.

    spark-submit jobs/ingest.py --config deploy/configs/local.yaml --run-dir runs/demo \\
        --set ingest.train_path=../shared/data/gowalla/train.txt

Writes <run-dir>/config.yaml and <run-dir>/ingest/{interactions|edges,dictionary,rejected}/
(in the current version after a forget job). Rows of users, items and edges deleted by the
forget job (the tombstones in ingest.tombstones_dir, default <run-dir>/tombstones) are dropped
and counted as ``tombstoned``.
Exit codes: 0 done (or already done), 2 bad input or config (one message on stderr).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pyspark.sql import SparkSession

from jobs.common import fail, job_parser, start_job
from pipelines.core.config import ConfigError
from pipelines.core.logs import setup_logging
from pipelines.ingest.stage import IngestError, check_counts
from pipelines.registry import run_one_stage


def main(argv: Sequence[str] | None = None) -> int:
    args = job_parser(__doc__ or "ingest").parse_args(argv)
    setup_logging()
    owns_session = SparkSession.getActiveSession() is None
    try:
        ctx = start_job(args, "ingest")
    except ConfigError as exc:
        return fail(str(exc))
    try:
        result = run_one_stage(ctx.spark, ctx.cfg, ctx.run_dir, "ingest")
        check_counts(result.counts)
    except IngestError as exc:
        return fail(str(exc))
    finally:
        if owns_session:
            ctx.spark.stop()
    status = "skipped (already done)" if result.skipped else f"done in {result.seconds:.1f} s"
    print(f"ingest {status}: {result.path}")
    for key, value in result.counts.items():
        print(f"  {key:<20}{value:>14,}")
    return 0


def run() -> None:
    """Console script ``graphpipe-ingest``."""
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
