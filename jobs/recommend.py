"""Recommend job: top-K unseen items per user and similar items per item, original ids restored.

    spark-submit jobs/recommend.py --config deploy/configs/local.yaml --run-dir runs/demo

Needs a finished ``aggregate`` stage. Writes <run-dir>/recommend/{recommendations,similar_items}/
(Parquet) and its _STAGE.json marker; a rerun with the same config is skipped. Exit codes: 0
done, 2 bad config or a missing upstream stage.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from jobs.common import job_main, stage_main


@job_main("recommend")
def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(argv, "recommend", __doc__ or "recommend")


def run() -> None:
    """Console script ``graphpipe-recommend``."""
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
