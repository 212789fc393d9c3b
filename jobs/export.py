"""Export job: embeddings with original ids, seen items and a faiss index over the items.

    spark-submit jobs/export.py --config deploy/configs/local.yaml --run-dir runs/demo

Needs finished ``ingest`` and ``train`` (or ``aggregate``) stages. Writes
<run-dir>/export/{embeddings,seen}/ (Parquet) and <run-dir>/export/ann/ (index.faiss,
item_ids.parquet, meta.json), then the stage marker. Query it from another process with
``python -m pipelines.ann_query --run-dir DIR --user ID``. Exit codes: 0 done, 2 bad config or
missing inputs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from jobs.common import fail, job_parser, start_job
from pipelines.config import ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    args = job_parser(__doc__ or "export").parse_args(argv)
    from pipelines.ann import AnnSettings
    from pipelines.ann_export import EXPORT_SECTIONS, export_body
    from pipelines.recommend_stage import embeddings_path
    from pipelines.stages import run_stage

    try:
        ctx = start_job(args, "export")
    except ConfigError as exc:
        return fail(str(exc))
    try:
        for needed in (ctx.run_dir / "ingest", embeddings_path(ctx.run_dir)):
            if not needed.is_dir():
                return fail(f"missing input {needed}: run ingest and train first")
        settings = AnnSettings.from_export(ctx.cfg.export, threads=ctx.cfg.train.threads)
        result = run_stage(
            ctx.run_dir,
            "export",
            ctx.cfg.section_hash(*EXPORT_SECTIONS),
            lambda out: export_body(ctx.spark, settings, ctx.run_dir, out, dim=ctx.cfg.model.dim),
            spark=ctx.spark,
        )
    finally:
        ctx.close()
    status = "skipped (already done)" if result.skipped else f"done in {result.seconds:.1f} s"
    print(f"export {status}: {result.path}")
    for key, value in {**result.counts, **result.extra}.items():
        print(f"  {key:<20}{value!s:>14}")
    return 0


def run() -> None:
    """Console script ``graphpipe-export``."""
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
