"""Forget job: delete users, items and edges from a finished run, as a new run version.

    spark-submit jobs/forget.py --config deploy/configs/local.yaml --run-dir runs/demo \\
        --requests requests.csv

Request file (CSV with a header, or Parquet): ``request_id, kind, id, other_id, timestamp``;
``kind`` is user, item or edge; an edge is ``id`` = user id and ``other_id`` = item id (original
ids). See :mod:`pipelines.forget.requests` and :mod:`pipelines.forget.job`. The new version lands in
<run-dir>/versions/vN and <run-dir>/CURRENT points to it; audit records in <run-dir>/audit/,
tombstones in ingest.tombstones_dir (default <run-dir>/tombstones/), which every later ingest
applies.

Exit codes: 0 applied (or every request already applied: nothing changed), 2 malformed request
file, bad config or an unfinished run (nothing changed), 3 verification failed (the new version
was discarded, CURRENT unchanged).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from jobs.common import JobError, job_main, job_parser, run_job


@job_main("forget")
def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser(__doc__ or "forget")
    parser.add_argument("--requests", required=True, help="CSV or Parquet request file.")
    parser.add_argument("--steps", type=int, default=30, help="Distill-to-delete steps per leaf.")
    parser.add_argument("--lr", type=float, default=5e-3, help="Distill-to-delete Adam rate.")
    parser.add_argument(
        "--trainable-hops",
        type=int,
        default=0,
        help="Only ego vectors within this many hops of a deleted element move (-1: all; "
        "default 0: deleted users and the endpoints of deleted interactions).",
    )
    parser.add_argument(
        "--keep-previous",
        action="store_true",
        help="Do not purge the superseded version (it still holds the deleted data).",
    )
    args = parser.parse_args(argv)
    from pipelines.forget.job import ForgetError, ForgetSettings, VerificationFailed, forget
    from pipelines.forget.requests import RequestFileError, read_requests

    try:
        requests = read_requests(args.requests)  # validated whole before anything is touched
    except RequestFileError as exc:
        raise JobError(str(exc)) from exc
    settings = ForgetSettings(
        steps=args.steps,
        lr=args.lr,
        trainable_hops=args.trainable_hops,
        purge_previous=not args.keep_previous,
    )
    try:
        result = run_job(
            args,
            "forget",
            lambda ctx: forget(ctx.spark, ctx.cfg, ctx.run_dir, requests, settings=settings),
            errors=(ForgetError,),
            did_work=lambda r: r.status != "already_applied",
        )
    except VerificationFailed as exc:
        print(f"error: verification failed: {exc}", file=sys.stderr)
        return 3
    if result.status == "already_applied":
        print(
            f"forget: every request already applied ({', '.join(result.skipped)}); nothing changed"
        )
        return 0
    print(f"forget applied {', '.join(result.applied)} in {result.seconds:.1f} s: {result.version}")
    if result.skipped:
        print(f"  already applied, skipped: {', '.join(result.skipped)}")
    print(f"  leaves retrained   {len(result.leaves_retrained)}/{result.leaves_total}")
    print(f"  unknown elements   {sum(result.unknown.values())}")
    for key, value in result.verification.items():
        print(f"  verify {key:<20}{value}")
    return 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
