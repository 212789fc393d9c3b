"""Aggregate job: one global embedding table from the trained ego vectors (LightGCN propagation
over the whole graph in Spark). Writes <run-dir>/aggregate/embeddings (pipelines/train/stage.py).

    spark-submit jobs/aggregate.py --config deploy/configs/local.yaml --run-dir runs/demo

Exit codes: 0 done (or already done with the same config), 2 bad input, bad config or a
missing upstream stage.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from jobs.common import job_main, stage_main


@job_main("aggregate")
def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(argv, "aggregate", __doc__ or "aggregate")


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
