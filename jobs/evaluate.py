"""Evaluate job: Recall@K and NDCG@K of the run's recommendations on the test split, in Spark.
Writes <run-dir>/evaluate/metrics.json.

    spark-submit jobs/evaluate.py --config deploy/configs/local.yaml --run-dir runs/demo

Exit codes: 0 done (or already done with the same config), 2 bad input, bad config or a
missing upstream stage.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from jobs.common import job_main, stage_main


@job_main("evaluate")
def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(argv, "evaluate", __doc__ or "evaluate")


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
