"""Serve-load job: a finished run's vectors and top-K lists into PostgreSQL, swapped in atomically.

    eval "$(scripts/postgres.sh start)"    # or any server: PGHOST, PGPORT, PGUSER, PGPASSWORD,
    python -m jobs.serve_load --config deploy/configs/local.yaml --run-dir runs/demo  # PGDATABASE

Reads the run's current version (after a forget job: <run-dir>/versions/vN, served as
"<run>-vN"): <run-dir>/export/embeddings and <run-dir>/recommend/{recommendations,similar_items}
(Parquet, no Spark needed), COPYs them into fresh <prefix>_*__new tables, then swaps them in in
one transaction (see pipelines.serve.serving_db). Records <run-dir>/serve/_STAGE.json; a rerun for
the
same server, database and prefix is skipped unless --force. Credentials come only from the PG*
environment variables. Exit codes: 0 done, 2 bad config, missing inputs or no database.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from jobs.common import JobError, fail, job_main, job_parser, load_job_config, setup_logging
from pipelines.core.versions import current_version


@job_main("serve_load")
def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser(__doc__ or "serve_load")
    parser.add_argument("--version", help="Version label served (default: run folder name).")
    parser.add_argument("--force", action="store_true", help="Load even if already loaded.")
    args = parser.parse_args(argv)
    setup_logging()
    from pipelines.core.stages import run_stage
    from pipelines.serve import serving_db

    cfg = load_job_config(args)  # a ConfigError: one line, exit 2 (job_main)
    top = Path(args.run_dir).resolve()
    run_dir = current_version(top)  # after a forget job: versions/vN
    for needed in (run_dir / "export" / "embeddings", run_dir / "recommend" / "recommendations"):
        if not needed.is_dir():
            raise JobError(f"missing input {needed}: run jobs.recommend and jobs.export first")
    prefix = cfg.export.serving_table_prefix
    target = ":".join(os.environ.get(k, "") for k in ("PGHOST", "PGPORT", "PGDATABASE"))
    if args.force:
        shutil.rmtree(run_dir / "serve", ignore_errors=True)
    try:
        conn = serving_db.connect()
    except Exception as exc:  # psycopg.OperationalError: no server, bad credentials
        return fail(f"cannot connect to PostgreSQL ({target}): {exc}".strip())
    version = args.version or (top.name if run_dir == top else f"{top.name}-{run_dir.name}")
    with conn:
        result = run_stage(
            run_dir,
            "serve",
            cfg.section_hash("export") + f"|{target}|{prefix}",
            lambda out: serving_db.load(
                conn,
                serving_db.run_data(run_dir),
                prefix=prefix,
                version=version,
                run_dir=str(run_dir),
            ),
        )
    status = "skipped (already loaded)" if result.skipped else f"done in {result.seconds:.1f} s"
    print(f"serve_load {status}: tables {prefix}_* version {result.extra.get('version')}")
    for key, value in {**result.counts, **result.extra}.items():
        print(f"  {key:<20}{value!s:>14}")
    return 0


def run() -> None:
    """Console script ``graphpipe-serve-load``."""
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
