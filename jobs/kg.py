"""Knowledge-graph job: ingest triples -> partition -> NBFNet in Spark tasks -> filtered MRR.

spark-submit jobs/kg.py --config deploy/configs/kg_local.yaml --run-dir runs/kg [--stage NAME]

Without ``--stage`` it runs (or resumes) all four stages; with it, that one stage only (the
Airflow DAG ``graphpipe_kg`` runs one task per stage).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from jobs.common import job_main, job_parser, print_stage_table, run_job


@job_main("kg")
def main(argv: Sequence[str] | None = None) -> int:
    from pipelines.kg.run import KG_STAGES

    parser = job_parser(__doc__ or "kg")
    parser.add_argument(
        "--stage", choices=list(KG_STAGES), help="Run this stage only (default: all, resuming)."
    )
    args = parser.parse_args(argv)
    from pipelines.kg.run import run_kg

    summary = run_job(
        args,
        "kg",
        lambda ctx: run_kg(
            ctx.spark, ctx.cfg, ctx.run_dir, only=args.stage, rerun_stale=args.rerun_stale
        ),
        did_work=lambda s: not all(st.skipped for st in s.stages),
    )
    print_stage_table(summary.stages)
    trained = next((st for st in summary.stages if st.name == "nbfnet-train"), None)
    if trained is not None and "final_loss" in trained.extra:
        print(
            f"\ntraining: final loss {trained.extra['final_loss']:.4f} over "
            f"{trained.counts.get('training_queries', 0)} queries in the last round"
        )
    m = summary.metrics
    if not m:
        print(f"outputs in {summary.run_dir} (no metrics yet: nbfnet-evaluate has not run)")
        return 0
    print(f"\nqueries  {int(m['queries'])} (tail + head, filtered, each on its leaf + halo)")
    print(f"MRR      {m['mrr']:.4f}")
    print(f"Hits@10  {m['hits@10']:.4f}")
    print(f"coverage {m['coverage']:.4f} (answers inside their query's subgraph)")
    print(f"outputs in {summary.run_dir}")
    return 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
