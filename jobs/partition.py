"""Partition job: ingested edges or interactions -> leaves, halos and per-leaf statistics.

    spark-submit jobs/partition.py --config deploy/configs/local.yaml --run-dir runs/demo \\
        --set partition.num_leaves=16

Reads <run-dir>/ingest/{edges|interactions} (train split) of the run's current version (after
a forget job: versions/vN), writes <run-dir>/partition/{assignment,leaf_stats,halo_nodes,
halo_edges}/ there and logs the quality figures (edge cut, balance, halo replication factor,
depth). Runs through pipelines.registry.run_one_stage like every stage job. Exit codes: 0 done
(or already done with the same config), 2 bad input, bad config, or an ingest stage missing or
made with another config (--rerun-stale reruns it).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from jobs.common import JobContext, job_main, job_parser, run_job
from pipelines.core.stages import StageResult

log = logging.getLogger("graphpipe.jobs.partition")


@job_main("partition")
def main(argv: Sequence[str] | None = None) -> int:
    args = job_parser(__doc__ or "partition").parse_args(argv)
    from pipelines.partition.stage import PartitionSettings
    from pipelines.registry import run_one_stage

    def body(ctx: JobContext) -> StageResult:
        PartitionSettings.from_config(ctx.cfg.partition, seed=ctx.cfg.run.seed)  # checked first
        return run_one_stage(
            ctx.spark, ctx.cfg, ctx.run_dir, "partition", rerun_stale=args.rerun_stale
        )

    # PartitionError is a ConfigError: one line, exit 2 (job_main)
    result = run_job(args, "partition", body, did_work=lambda r: not r.skipped)
    q = result.extra.get("quality", {})
    status = "skipped (already done)" if result.skipped else f"done in {result.seconds:.1f} s"
    log.info("partition quality: %s", q)
    print(f"partition {status}: {result.path}")
    for key in ("num_leaves", "depth", "edge_cut", "balance", "halo_replication", "max_leaf_edges"):
        if key in q:
            value = q[key]
            print(
                f"  {key:<18}{value:>14.4f}"
                if isinstance(value, float)
                else f"  {key:<18}{value:>14,}"
            )
    return 0


def run() -> None:
    """Console script (``graphpipe-partition`` once the lead adds it to pyproject)."""
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
