"""Train job: LightGCN per partition leaf inside Spark tasks, rounds of shared-node averaging.

Reads <run-dir>/ingest (and <run-dir>/partition when present), writes
<run-dir>/train/{ego,leaf_logs}
(see pipelines/train/stage.py).

    spark-submit jobs/train.py --config deploy/configs/local.yaml --run-dir runs/demo

Exit codes: 0 done (or already done with the same config), 2 bad input, bad config or a
missing upstream stage.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from jobs.common import job_main, stage_main


@job_main("train")
def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(argv, "train", __doc__ or "train")


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
