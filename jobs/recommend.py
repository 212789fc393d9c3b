"""Recommend job: top-K unseen items per user and similar items per item, original ids restored.

    spark-submit jobs/recommend.py --config deploy/configs/local.yaml --run-dir runs/demo

Needs a run with finished ``ingest`` and ``train`` (or ``aggregate``) stages. Writes
<run-dir>/recommend/{recommendations,similar_items}/ (Parquet) and its _STAGE.json marker; a
rerun with the same config is skipped. Exit codes: 0 done, 2 bad config or missing inputs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from jobs.common import fail, job_parser, start_job
from pipelines.config import ConfigError
from pipelines.recommend_stage import RECOMMEND_SECTIONS, embeddings_path, recommend_body
from pipelines.stages import run_stage


def main(argv: Sequence[str] | None = None) -> int:
    args = job_parser(__doc__ or "recommend").parse_args(argv)
    try:
        ctx = start_job(args, "recommend")
    except ConfigError as exc:
        return fail(str(exc))
    try:
        for needed in (ctx.run_dir / "ingest", embeddings_path(ctx.run_dir)):
            if not needed.is_dir():
                return fail(f"missing input {needed}: run ingest and train first")
        result = run_stage(
            ctx.run_dir,
            "recommend",
            ctx.cfg.section_hash(*RECOMMEND_SECTIONS),
            lambda out: recommend_body(ctx.spark, ctx.cfg, ctx.run_dir, out),
            spark=ctx.spark,
        )
    finally:
        ctx.close()
    status = "skipped (already done)" if result.skipped else f"done in {result.seconds:.1f} s"
    print(f"recommend {status}: {result.path}")
    for key, value in result.counts.items():
        print(f"  {key:<20}{value:>14,}")
    return 0


def run() -> None:
    """Console script ``graphpipe-recommend``."""
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
