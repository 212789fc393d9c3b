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

from jobs.common import job_main, stage_main
from pipelines.ingest.stage import check_counts


@job_main("ingest")
def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(argv, "ingest", __doc__ or "ingest", check=check_counts)


def run() -> None:
    """Console script ``graphpipe-ingest``."""
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
