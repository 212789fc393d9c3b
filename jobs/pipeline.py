"""End-to-end job: ingest -> LightGCN (through Spark tasks) -> top-K -> Recall@K / NDCG@K.

spark-submit jobs/pipeline.py --config deploy/configs/local.yaml --run-dir runs/demo
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from jobs.common import job_main, job_parser, print_stage_table, run_job


@job_main("pipeline")
def main(argv: Sequence[str] | None = None) -> int:
    args = job_parser(__doc__ or "pipeline").parse_args(argv)
    from pipelines.registry import run_pipeline

    cfg, summary = run_job(
        args,
        "pipeline",
        lambda ctx: (ctx.cfg, run_pipeline(ctx.spark, ctx.cfg, ctx.run_dir)),
        did_work=lambda r: not all(st.skipped for st in r[1].stages),
    )
    k = cfg.export.top_k
    print_stage_table(summary.stages)
    print(f"\nRecall@{k}  {summary.metrics[f'recall@{k}']:.4f}")
    print(f"NDCG@{k}    {summary.metrics[f'ndcg@{k}']:.4f}")
    print(f"users evaluated {summary.metrics['users']}")
    print(f"outputs in {summary.run_dir}")
    print(f"  recommendations: {summary.run_dir / 'recommend' / 'recommendations'}")
    print(f"  embeddings:      {summary.run_dir / 'aggregate' / 'embeddings'}")
    return 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
