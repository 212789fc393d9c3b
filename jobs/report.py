"""Report job: one HTML page for a run, <run-dir>/report/index.html (pipelines/evaluate/report.py).

    python -m jobs.report --run-dir runs/demo

After a forget job the page describes the current version (<run-dir>/versions/vN/report/).
Needs no Spark session (reads the small tables and markers with pyarrow). Sections whose stage
did not run are shown as "not run". Prints the page's path. Exit codes: 0 written, 2 the run
directory does not exist or a bad config.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from jobs.common import JobError, job_main, job_parser, load_job_config
from pipelines.core.logs import setup_logging
from pipelines.core.versions import current_version


@job_main("report")
def main(argv: Sequence[str] | None = None) -> int:
    args = job_parser(__doc__ or "report").parse_args(argv)
    setup_logging()
    from pipelines.evaluate.report import build_report

    load_job_config(args)  # a bad --config or --set is refused, as by every job
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise JobError(f"run directory {run_dir} does not exist")
    print(build_report(current_version(run_dir)).resolve())
    return 0


def run() -> None:
    """Console script ``graphpipe-report``."""
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
