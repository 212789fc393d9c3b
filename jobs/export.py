"""Export job: embeddings with original ids, seen items and a faiss index over the items.

    spark-submit jobs/export.py --config deploy/configs/local.yaml --run-dir runs/demo

Needs a finished ``aggregate`` stage. Writes <run-dir>/export/{embeddings,seen}/ (Parquet) and
<run-dir>/export/ann/ (index.faiss, item_ids.parquet, meta.json), then the stage marker. Query it
from another process with ``python -m pipelines.serve.ann_query --run-dir DIR --user ID``. Exit
codes:
0 done, 2 bad config or a missing upstream stage.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from jobs.common import job_main, stage_main


@job_main("export")
def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(argv, "export", __doc__ or "export")


def run() -> None:
    """Console script ``graphpipe-export``."""
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
