"""Partitioned NBFNet inference inside Spark tasks vs the same inference in one torch process.

    python -m bench.nbfnet_spark --triples ../shared/data/fb15k-237 --k 16 \\
        --assignment-cache bench/results/nbfnet_partitioned_assignments \\
        [--checkpoint FILE] [--test-queries 200] --json

Ranks the same test queries (tail and head) of a KG three ways, with one parameter set: the
full-graph model (:func:`gnn.eval.nbfnet.evaluate_kg`), the partitioned inference in this
process (:func:`gnn.eval.nbfnet_partitioned.evaluate_kg_partitioned`, each query on its source's
leaf + 1-hop halo, outward edges) and the same partitioned inference as a Spark job
(:func:`pipelines.kg.seam.rank_queries` on ``local[N]``: one task per leaf builds its
subgraph from the triples, the assignment and the leaf's halo edges). The two partitioned
rankings agree up to float summation order (a leaf's edges arrive in another order, so a score
can differ in its last bits and break a tie the other way: ``mrr_abs_diff``, ``mr_abs_diff``);
the bench reports queries per second of each and the Spark job's overhead. The weights come
from ``--checkpoint`` (a ``bench.nbfnet_partitioned
--full-checkpoint`` file) or are a seeded initialisation: throughput and agreement do not depend
on training. ``--train-rounds R --train-steps S`` also trains from the seeded start: ``R`` Spark
rounds of ``S`` Adam steps per leaf, averaged by query count
(:func:`pipelines.kg.seam_train.train_rounds`), against the torch leaf-by-leaf loop
(:func:`gnn.engine.nbfnet_partitioned.fit_partitioned`) with as many steps in all, both scored on
the
leaves. Ends with one JSON line ``{"k", "queries", "full": {...}, "torch": {...}, "spark":
{...}, "spark_vs_torch", "mrr_abs_diff", "mr_abs_diff", "speedup_vs_full"[, "training"]}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from bench.common import add_json_flag, add_model_size, log, parser, print_json
from bench.nbfnet_setup import KGData, assignment_file, kg_data, task_preset
from gnn.engine.nbfnet import NBFNetTrainConfig, build_model
from gnn.engine.nbfnet_partitioned import PartitionedGraph, fit_partitioned
from gnn.eval.nbfnet import evaluate_kg
from gnn.eval.nbfnet_partitioned import evaluate_kg_partitioned


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser("python -m bench.nbfnet_spark", __doc__)
    p.add_argument("--triples", required=True, help="folder with train/valid/test.txt")
    p.add_argument("--k", type=int, default=16)
    p.add_argument(
        "--assignment-cache",
        required=True,
        help="folder of bench.nbfnet_partitioned's cached Spark assignments",
    )
    p.add_argument("--checkpoint", default="", help="bench.nbfnet_partitioned --full-checkpoint")
    p.add_argument("--test-queries", type=int, default=200, help="test triples (x2 queries)")
    p.add_argument("--batch-size", type=int, default=32, help="queries per Bellman-Ford pass")
    add_model_size(p, dim=32, layers=6)
    p.add_argument("--master", default="local[2]")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the torch runs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-full", action="store_true")
    p.add_argument(
        "--train-rounds",
        type=int,
        default=0,
        help="also train from the seeded start: this many Spark rounds of averaged "
        "leaf updates, against the torch leaf-by-leaf loop with as many steps",
    )
    p.add_argument("--train-steps", type=int, default=10, help="steps per leaf and round")
    add_json_flag(p, "end with the JSON line")
    return p.parse_args(argv)


def _model(args: argparse.Namespace, num_relations: int, cfg: NBFNetTrainConfig) -> tuple[Any, str]:
    """The model to rank with (``--checkpoint``'s weights or a seeded start) and its source."""
    torch.manual_seed(args.seed)
    model = build_model(num_relations, cfg)
    source = "seeded initialisation"
    if args.checkpoint:
        saved = torch.load(args.checkpoint, map_location="cpu")
        model.load_state_dict(saved["state_dict"])
        source = args.checkpoint
    return model.eval(), source


def _spark_runs(
    args: argparse.Namespace, data: KGData, assignment: torch.Tensor, pg: PartitionedGraph,
    model: Any, cfg: NBFNetTrainConfig,
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:  # fmt: skip
    """The Spark inference (and, with ``--train-rounds``, training) on a fresh session."""
    from pipelines.core.session import build_spark

    work = Path(tempfile.mkdtemp(prefix="bench-nbfnet-spark-"))
    spark = build_spark("bench-nbfnet-spark", master=args.master, checkpoint_dir=str(work / "ckpt"))
    trained: dict[str, dict[str, float]] = {}
    try:
        frames = spark_frames(spark, data.ds, assignment, args.k)
        ranked = spark_ranks(spark, frames, args, data.ds, data.test, model, cfg)
        if args.train_rounds:
            trained = training(spark, frames, args, data.ds, pg, data.test, data.every, cfg)
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)
    return ranked, trained


def _report(
    args: argparse.Namespace, dataset: str, queries: int, source: str,
    rows: dict[str, dict[str, Any]], trained: dict[str, dict[str, float]],
) -> dict[str, Any]:  # fmt: skip
    """Print the table; the JSON figures."""
    print(f"{'run':>6} {'MRR':>8} {'hits@10':>8} {'coverage':>8} {'queries/s':>10} {'s':>8}")
    for name, r in rows.items():
        print(
            f"{name:>6} {r['mrr']:8.4f} {r['hits@10']:8.4f} {r.get('coverage', 1.0):8.3f} "
            f"{r['qps']:10.2f} {r['seconds']:8.1f}"
        )
    out = {
        "dataset": dataset,
        "k": args.k,
        "queries": queries,
        "weights": source,
        **{name: {k: round(float(v), 4) for k, v in r.items()} for name, r in rows.items()},
        "spark_vs_torch": round(rows["spark"]["qps"] / rows["torch"]["qps"], 3),
        "mrr_abs_diff": abs(rows["spark"]["mrr"] - rows["torch"]["mrr"]),
        "mr_abs_diff": abs(rows["spark"]["mr"] - rows["torch"]["mr"]),
    }
    if "full" in rows:
        out["speedup_vs_full"] = round(rows["spark"]["qps"] / rows["full"]["qps"], 2)
    if trained:
        out["training"] = {
            name: {k: round(v, 4) for k, v in r.items()} for name, r in trained.items()
        }
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    data = kg_data(args.triples, args.seed, args.test_queries)
    ds, graph, test, every = data
    dataset = Path(args.triples).name
    cfg = NBFNetTrainConfig(
        **task_preset(kg=True, gpu=False), dim=args.dim, layers=args.layers, seed=args.seed
    )
    model, source = _model(args, graph.num_relations, cfg)
    cache = assignment_file(args.assignment_cache, dataset, "spark", args.k, args.seed)
    assignment = torch.load(cache)
    print(
        f"[bench] {dataset}: {graph.num_nodes} nodes, {len(ds.train)} train triples, "
        f"{2 * len(test)} queries, k = {args.k} ({cache}), weights: {source}",
        flush=True,
    )
    rows: dict[str, dict[str, Any]] = {}
    if not args.skip_full:
        rows["full"] = evaluate_kg(
            model, graph, test, filter_triples=every, batch_size=args.batch_size
        )
    pg = PartitionedGraph(graph, assignment, halo_hops=1, halo_edges="outward")
    rows["torch"] = evaluate_kg_partitioned(
        model, pg, test, filter_triples=every, batch_size=args.batch_size
    )
    rows["spark"], trained = _spark_runs(args, data, assignment, pg, model, cfg)
    out = _report(args, dataset, 2 * len(test), source, rows, trained)
    if args.json:
        print_json(out)
    return 0


def spark_frames(spark: Any, ds: Any, assignment: torch.Tensor, k: int) -> dict[str, Any]:
    """Train triples, all known triples, the assignment and every leaf's triples as DataFrames."""
    from pyspark.sql import functions as F

    from pipelines.core.schema import DST, LEAF_ID, NODE_ID, REL, SRC
    from pipelines.kg.seam import leaf_triples

    def frame(t: torch.Tensor) -> Any:
        return spark.createDataFrame(
            pd.DataFrame({SRC: t[:, 0].numpy(), REL: t[:, 1].numpy(), DST: t[:, 2].numpy()})
        )

    train = frame(ds.train)
    known = frame(torch.cat([ds.train, ds.valid, ds.test]))
    assign = spark.createDataFrame(
        pd.DataFrame({NODE_ID: range(len(assignment)), LEAF_ID: assignment.numpy().astype("int32")})
    )
    # h = 1 halo edges, as pipelines.partition.output.halo ships them: each cut triple once per
    # side
    ls = assign.select(F.col(NODE_ID).alias(SRC), F.col(LEAF_ID).alias("_ls"))
    ld = assign.select(F.col(NODE_ID).alias(DST), F.col(LEAF_ID).alias("_ld"))
    halo = (
        train.join(ls, SRC)
        .join(ld, DST)
        .where(F.col("_ls") != F.col("_ld"))
        .select(F.explode(F.array("_ls", "_ld")).alias(LEAF_ID), SRC, REL, DST)
    )
    edges = leaf_triples(train, assign, halo).repartition(k, LEAF_ID).localCheckpoint()
    edges.count()
    return {"known": known, "assign": assign, "edges": edges}


def spark_ranks(
    spark: Any,
    frames: dict[str, Any],
    args: argparse.Namespace,
    ds: Any,
    test: torch.Tensor,
    model: Any,
    cfg: NBFNetTrainConfig,
) -> dict[str, float]:
    """The Spark inference job: one task per leaf ranks the queries whose source it owns."""
    from pipelines.core.schema import REL, SRC
    from pipelines.kg.seam import NBFNetScoring, model_bytes, mrr_and_hits, rank_queries

    h, r, t = test.t()
    nrel = ds.num_relations
    queries = spark.createDataFrame(
        pd.DataFrame(
            {
                "query_id": range(2 * len(test)),
                SRC: torch.cat([h, t]).numpy(),
                REL: torch.cat([r, r + nrel]).numpy(),
                "answer": torch.cat([t, h]).numpy(),
            }
        )
    )
    scoring = NBFNetScoring(
        model_bytes(model),
        cfg,
        ds.num_entities,
        nrel,
        batch_size=args.batch_size,
        device="cpu",
        threads=1,
    )
    t0 = time.perf_counter()
    ranks = rank_queries(
        frames["edges"], frames["assign"], queries, frames["known"], scoring
    ).localCheckpoint()
    metrics = mrr_and_hits(ranks)
    secs = time.perf_counter() - t0
    metrics.update(seconds=secs, qps=metrics["queries"] / secs)
    return metrics


def training(
    spark: Any,
    frames: dict[str, Any],
    args: argparse.Namespace,
    ds: Any,
    pg: PartitionedGraph,
    test: torch.Tensor,
    every: torch.Tensor,
    cfg: NBFNetTrainConfig,
) -> dict[str, dict[str, float]]:
    """Spark rounds of averaged leaf updates vs the torch leaf-by-leaf loop, equal steps."""
    from pipelines.kg.seam import load_model
    from pipelines.kg.seam_train import NBFNetRounds, train_rounds

    steps = args.train_rounds * args.train_steps * args.k
    rounds = NBFNetRounds(
        cfg,
        ds.num_entities,
        ds.num_relations,
        rounds=args.train_rounds,
        steps=args.train_steps,
        device="cpu",
        threads=1,
    )
    t0 = time.perf_counter()
    state, history = train_rounds(frames["edges"], frames["assign"], rounds, log=log)
    spark_secs = time.perf_counter() - t0
    spark_model = load_model(state, cfg, ds.num_relations).eval()
    t0 = time.perf_counter()
    torch_cfg = dataclasses.replace(cfg, max_steps=steps, epochs=1000, log_every=0)
    torch_run = fit_partitioned(pg, torch_cfg, log=lambda m: None)
    torch_secs = time.perf_counter() - t0
    out = {}
    for name, model, secs, queries in (
        ("spark_rounds", spark_model, spark_secs, float(steps * cfg.batch_size)),
        ("torch_leaf_by_leaf", torch_run.model.eval(), torch_secs, torch_run.queries),
    ):
        ev = evaluate_kg_partitioned(
            model, pg, test, filter_triples=every, batch_size=args.batch_size
        )
        out[name] = {
            "mrr": ev["mrr"],
            "hits@10": ev["hits@10"],
            "train_seconds": secs,
            "steps": float(steps),
            "queries_trained": float(queries),
            "final_loss": history[-1]["loss"]
            if name == "spark_rounds"
            else sum(torch_run.losses[-20:]) / max(1, len(torch_run.losses[-20:])),
        }
        print(
            f"[bench] {name}: MRR {ev['mrr']:.4f} hits@10 {ev['hits@10']:.4f}, "
            f"{steps} steps in {secs:.1f} s",
            flush=True,
        )
    return out


if __name__ == "__main__":
    sys.exit(main())
