"""Partitioned NBFNet vs full-graph NBFNet: accuracy and inference speed in one run.

    python -m bench.nbfnet_partitioned (--planetoid DIR --name NAME | --triples DIR) --k 2,4,8
        [--halo-hops 1,2] [--halo-edges induced,outward] [--budget-minutes N]
        [--device cpu|cuda] [--full-checkpoint FILE] --json

One run trains (a) the full-graph NBFNet (:func:`gnn.engine.nbfnet.fit_nbfnet`) and, for every
``k``, (b) one shared NBFNet trained leaf by leaf on the leaves' core + halo subgraphs
(:func:`gnn.engine.nbfnet_partitioned.fit_partitioned`) for every ``k``, halo depth and halo edge
rule (``induced``: every edge among core and halo nodes; ``outward``: the edges within
``--halo-hops`` of the core, what the Spark partitioner ships with a leaf), each with the
same time budget; ``--full-checkpoint`` reuses a full model trained with the same settings.
On the same test queries it evaluates the full model on the full graph, the partitioned model
on leaf + halo, and the full model on leaf + halo; inference is timed as queries per second
(Planetoid: Bellman-Ford passes, two per test pair, ``symmetric``; triples: tail and head
queries).

The k-leaf assignment of the training graph comes from the project's Spark partitioner
(:func:`pipelines.partition.stage.partition_graph` on ``local[2]``; ``--partitioner spark``, the
default) or pymetis (``--partitioner metis``). ``--assignment-cache DIR`` keeps the assignments
as ``.pt`` files, so a machine with only torch can rerun with assignments made elsewhere.

Prints progress lines, a table, and a last JSON line ``{"full": {"auroc"|"mrr",
"queries_per_second", "train_seconds"}, "results": [{"k", "halo_hops", "halo_edges", "model",
"auroc"|"mrr",
"relative_loss", "queries_per_second", "speedup", ...}]}``; rows with ``model: "partitioned"``
are the trained-per-leaf models, ``model: "full"`` the full model restricted to leaf + halo.
Knowledge-graph rows also carry the restriction's ceiling
(:func:`gnn.eval.nbfnet_partitioned.restriction_ceiling`): ``restriction_ceiling_mrr`` is the full
model's full-graph MRR with every query whose answer lies outside the source's leaf + halo
counted as a miss, ``restriction_ceiling_loss`` its relative loss (what a partitioned model
ranking every covered query as the full model does would lose), and
``restriction_uncovered_mrr`` the full model's MRR on the excluded queries alone.
``--ceiling-only`` reports just these for every ``k`` (JSON ``{"full", "ceilings": [...]}``),
e.g. for a full model read from ``--full-checkpoint``, without training partitioned models.
``--partitioned-queries 288,full`` compares at equal work instead of equal time: one partitioned
model per cap, each stopped after that many training queries (``full``: as many as the full
model was trained on; ``budget``: no cap, the equal-time model), rows tagged ``query_cap``
(0 = no cap).

Planetoid pairs can also run on their *pair scope* (``--scope source,pair``): the union of the
two nodes' leaf + halo subgraphs (:func:`gnn.eval.nbfnet_partitioned.pair_subgraph`), built inside
the timed loop; every row then carries ``scope`` and the mean nodes / edges of the subgraphs
its pairs ran on.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bench.common import (
    add_graph_source,
    add_json_flag,
    add_nbfnet_args,
    int_list,
    markdown_table,
    parser,
    print_json,
)
from bench.nbfnet_setup import (
    assignment,
    capped,
    ceiling_line,
    full_model,
    kg_data,
    link_data,
    query_caps,
    scope_sizes,
    task_preset,
    train_config,
    undirected_pairs,
)
from gnn.data.kg import LinkSplit, RelationalGraph
from gnn.engine.device import select_device
from gnn.engine.nbfnet import NBFNetResult, NBFNetTrainConfig
from gnn.engine.nbfnet_partitioned import PartitionedGraph, fit_partitioned
from gnn.eval.nbfnet import evaluate_link_auc, kg_metrics, kg_ranks
from gnn.eval.nbfnet_partitioned import (
    evaluate_kg_partitioned,
    evaluate_link_auc_partitioned,
    restriction_ceiling,
)

LeafSets = dict[tuple[int, int, str], tuple[PartitionedGraph, float, list[dict[str, int]]]]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser("python -m bench.nbfnet_partitioned", __doc__)
    add_graph_source(
        p, "folder with Planetoid ind.NAME.* files", "folder with train/valid/test.txt"
    )
    p.add_argument("--name", default="cora", help="Planetoid name")
    p.add_argument("--k", default="4,8", help="comma-separated leaf counts")
    p.add_argument("--halo-hops", default="1", help="comma-separated halo depths")
    p.add_argument(
        "--halo-edges",
        default="outward",
        help="comma-separated halo edge rules: outward (edges within --halo-hops of "
        "the core, as the Spark partitioner ships them; the default) and/or "
        "induced (every edge among core and halo nodes)",
    )
    p.add_argument(
        "--full-checkpoint",
        default="",
        help="file of the full-graph model: loaded when present (its training is "
        "then not rerun), written after training otherwise",
    )
    p.add_argument(
        "--scope",
        default="source",
        help="Planetoid: comma-separated inference scopes, source (the first node's "
        "leaf + halo) and/or pair (the union of both nodes' leaf + halo)",
    )
    p.add_argument("--budget-minutes", type=float, default=5.0, help="training cap per model")
    p.add_argument("--epochs", type=int, default=100, help="epoch cap per model")
    p.add_argument(
        "--max-steps", type=int, default=0, help="optimiser step cap per model (0: none)"
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--partitioner", default="spark", choices=("spark", "metis"))
    p.add_argument("--assignment-cache", default="", help="folder of cached assignments")
    p.add_argument(
        "--test-queries",
        type=int,
        default=0,
        help="triples: test triples ranked (shuffled; 0: all); Planetoid: all",
    )
    add_nbfnet_args(
        p, negatives_help="Planetoid: all-negative queries from random sources per positive"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--ceiling-only",
        action="store_true",
        help="triples: only evaluate the full model (trained, or read from "
        "--full-checkpoint) and, for every k, the MRR the leaf + halo "
        "restriction leaves it; no partitioned training",
    )
    p.add_argument(
        "--partitioned-queries",
        default="",
        help="comma-separated caps on the partitioned models' training queries, one model per "
        "cap (full: the full model's count; budget: no cap, the time budget alone, as when "
        "empty)",
    )
    add_json_flag(p)
    return p.parse_args(argv)


def _config(args: argparse.Namespace, kg: bool, gpu: bool) -> NBFNetTrainConfig:
    base = task_preset(kg, gpu, args.negative_sources)
    extra = {"epochs": args.epochs, "max_steps": args.max_steps}
    return train_config(args, base, ("batch_size", "num_negative"), **extra)


@dataclasses.dataclass
class Bench:
    """One run's data, settings and the full model's full-graph ranks (triples)."""

    dataset: str
    kg: bool
    graph: RelationalGraph
    dev: torch.device
    cfg: NBFNetTrainConfig
    ebs: int
    metric: str
    test: Tensor = dataclasses.field(default_factory=lambda: torch.empty(0, 3))
    every: Tensor = dataclasses.field(default_factory=lambda: torch.empty(0, 3))
    train_triples: Tensor | None = None
    split: LinkSplit | None = None
    full_ranks: list[Tensor] = dataclasses.field(default_factory=list)


def load(args: argparse.Namespace, dev: torch.device) -> Bench:
    """The dataset, its training graph, the training config and the evaluation batch size."""
    kg = args.triples is not None
    cfg = _config(args, kg, dev.type == "cuda")
    ebs = args.eval_batch_size or (64 if (dev.type == "cuda" or not kg) else 8)
    if kg:
        data = kg_data(args.triples, args.seed, args.test_queries)
        return Bench(
            Path(args.triples).name, kg, data.graph, dev, cfg, ebs, "mrr",
            test=data.test, every=data.every, train_triples=data.ds.train,
        )  # fmt: skip
    link = link_data(args.planetoid, args.name, args.seed)
    return Bench(args.name, kg, link.graph, dev, cfg, ebs, "auroc", split=link.split)


def leaf_sets(args: argparse.Namespace, b: Bench, pairs: Tensor) -> LeafSets:
    """Every k, halo depth and halo edge rule: the partitioned graph, its edge cut and stats."""
    parts: LeafSets = {}
    for k in int_list(args.k):
        a, secs = assignment(args, pairs, b.graph.num_nodes, k, b.dataset)
        cut = float((a[pairs[:, 0]] != a[pairs[:, 1]]).double().mean())
        for hops, rule in itertools.product(int_list(args.halo_hops), args.halo_edges.split(",")):
            pg = PartitionedGraph(b.graph, a, halo_hops=hops, halo_edges=rule)
            st = pg.stats()
            print(
                f"[bench] k={k} halo {hops} {rule} ({args.partitioner}, {secs:.1f}s): edge "
                f"cut {cut:.3f}; leaf+halo nodes {[s['nodes'] for s in st]}, edges "
                f"{[s['edges'] for s in st]}",
                flush=True,
            )
            parts[k, hops, rule] = (pg, cut, st)
    return parts


def evaluate(
    b: Bench, model: Any, pg: PartitionedGraph | None, scope: str = "source"
) -> dict[str, float]:
    """The model's test figures on the full graph (``pg`` None) or on leaf + halo."""
    if pg is None:
        b.graph.index()  # build the CSR views outside the timed loop, as the leaves do
        if b.kg:
            ranks, secs = kg_ranks(
                model, b.graph, b.test, filter_triples=b.every, batch_size=b.ebs, device=b.dev
            )
            b.full_ranks.append(ranks)
            return kg_metrics(ranks, secs)
        assert b.split is not None
        return evaluate_link_auc(
            model, b.graph, b.split.test, b.split.test_neg, batch_size=b.ebs, device=b.dev
        )
    if b.kg:
        return evaluate_kg_partitioned(model, pg, b.test, filter_triples=b.every, batch_size=b.ebs)
    assert b.split is not None
    out = evaluate_link_auc_partitioned(
        model, pg, b.split.test, b.split.test_neg, batch_size=b.ebs, scope=scope
    )
    out.update(scope_sizes(pg, torch.cat([b.split.test, b.split.test_neg]), scope))
    return out


def ceiling_rows(b: Bench, parts: LeafSets, full_metric: float) -> list[dict[str, Any]]:
    """``--ceiling-only``: the restriction's ceiling of every leaf set, no leaf training."""
    if not b.kg:
        raise SystemExit("--ceiling-only needs --triples (the MRR ceiling of KG queries)")
    rows = []
    for (k, hops, rule), (pg, cut, _) in parts.items():
        c = restriction_ceiling(pg.to(b.dev), b.test, b.full_ranks[0])
        print(ceiling_line(f"k={k} halo {hops} {rule}", c, full_metric), flush=True)
        rows.append(
            {
                "k": k,
                "halo_hops": hops,
                "halo_edges": rule,
                "edge_cut": cut,
                **{f"restriction_{n}" if n != "coverage" else n: v for n, v in c.items()},
            }
        )
    return rows


def leaf_set_rows(
    args: argparse.Namespace,
    b: Bench,
    setting: tuple[int, int, str],
    leaf_set: tuple[PartitionedGraph, float, list[dict[str, int]]],
    full: NBFNetResult,
    fm: dict[str, float],
) -> list[dict[str, Any]]:
    """One leaf set: a partitioned model per query cap, it and the full model on leaf + halo."""
    (k, hops, rule), (pg, cut, st) = setting, leaf_set
    pg = pg.to(b.dev)
    # the restriction's ceiling and the full model on the leaves do not depend on the cap
    ceiling = restriction_ceiling(pg, b.test, b.full_ranks[0]) if b.kg else {}
    if ceiling:
        print(ceiling_line(f"k={k} halo {hops} {rule}", ceiling, fm[b.metric]), flush=True)
    common = {"k": k, "halo_hops": hops, "halo_edges": rule}
    nodes, edges = (sum(s[key] for s in st) / len(st) for key in ("nodes", "edges"))
    full_on_leaves: dict[str, dict[str, float]] = {}
    rows = []
    for cap in query_caps(args.partitioned_queries, full.queries):
        res = fit_partitioned(pg, capped(b.cfg, cap), device=b.dev, train_triples=b.train_triples)
        print(
            f"[bench] k={k} halo {hops} {rule}: {res.steps} steps, {res.queries} queries in "
            f"{res.seconds:.1f}s (cap {cap or 'none'}); evaluating ...",
            flush=True,
        )
        for (name, run), scope in itertools.product(
            (("partitioned", res), ("full", full)), args.scope.split(",")
        ):
            if name == "full" and scope in full_on_leaves:
                m = full_on_leaves[scope]
            else:
                m = evaluate(b, run.model, pg, scope)
                print(
                    f"[bench] k={k} halo {hops} {rule} {name} on {scope} scope: "
                    f"{b.metric} {m[b.metric]:.4f}, {m['qps']:.1f} queries/s",
                    flush=True,
                )
                if name == "full":
                    full_on_leaves[scope] = m
            row = {
                **common,
                "scope": scope,
                "model": name,
                b.metric: m[b.metric],
                "relative_loss": (fm[b.metric] - m[b.metric]) / fm[b.metric],
                "queries_per_second": m["qps"],
                "speedup": m["qps"] / fm["qps"],
                "edge_cut": cut,
                "mean_subgraph_nodes": m.get("scope_nodes", nodes),
                "mean_subgraph_edges": m.get("scope_edges", edges),
                "train_seconds": run.seconds,
                "train_queries": run.queries,
                "query_cap": cap,
            }
            row.update({c: m[c] for c in ("coverage", "coverage_pos", "coverage_neg") if c in m})
            row.update({f"restriction_{c}": v for c, v in ceiling.items() if c != "coverage"})
            rows.append(row)
    return rows


def print_table(b: Bench, fm: dict[str, float], full: NBFNetResult, results: list[dict]) -> None:
    """The results as one Markdown table, the full model first."""
    m = b.metric
    rows: list[list[Any]] = [
        ["-", "-", "full", "full graph", f"{fm[m]:.4f}", "-", f"{fm['qps']:.1f}", "1.00", "-",
         f"{b.graph.num_nodes} / {b.graph.num_edges}", full.queries]
    ]  # fmt: skip
    rows += [
        [r["k"], f"{r['halo_hops']} {r['halo_edges']}", r["model"], r["scope"], f"{r[m]:.4f}",
         f"{100 * r['relative_loss']:+.2f}%", f"{r['queries_per_second']:.1f}",
         f"{r['speedup']:.2f}", f"{r['edge_cut']:.3f}",
         f"{r['mean_subgraph_nodes']:.0f} / {r['mean_subgraph_edges']:.0f}", r["train_queries"]]
        for r in results
    ]  # fmt: skip
    header = ["k", "halo", "model", "scope", m, "rel. loss", "queries/s", "speedup", "cut"]
    markdown_table([*header, "mean leaf+halo nodes / edges", "train queries"], rows)


def full_figures(args: argparse.Namespace, b: Bench) -> tuple[NBFNetResult, dict, dict]:
    """The full model (trained or read back), its test figures and its JSON entry."""
    b.graph = b.graph.to(b.dev)
    full = full_model(args.full_checkpoint, b.graph, b.cfg, b.dev, b.train_triples)
    print(
        f"[bench] full graph: {full.steps} steps, {full.queries} queries in "
        f"{full.seconds:.1f}s; evaluating ...",
        flush=True,
    )
    fm = evaluate(b, full.model, None)
    print(
        f"[bench] full graph: {b.metric} {fm[b.metric]:.4f}, {fm['qps']:.1f} queries/s", flush=True
    )
    out = {b.metric: fm[b.metric], "queries_per_second": fm["qps"], "train_seconds": full.seconds}
    out.update(train_queries=full.queries, test_queries=int(fm["queries"]))
    return full, fm, out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    dev = select_device(args.device)
    t_all = time.perf_counter()
    b = load(args, dev)
    pairs = undirected_pairs(b.graph.edge_index)
    print(
        f"[bench] {b.dataset}: {b.graph.num_nodes} nodes, {b.graph.num_edges} directed edges, "
        f"{len(pairs)} undirected pairs; device {dev}; {b.cfg}",
        flush=True,
    )
    parts = leaf_sets(args, b, pairs)
    if b.kg and args.scope.split(",") != ["source"]:
        raise SystemExit("--scope pair needs --planetoid: a KG query's answer is unknown")
    full, fm, out_full = full_figures(args, b)
    head = {"dataset": b.dataset, "device": str(dev)}
    if args.ceiling_only:
        print_json({**head, "full": out_full, "ceilings": ceiling_rows(b, parts, fm[b.metric])})
        return 0
    results = [r for s, ls in parts.items() for r in leaf_set_rows(args, b, s, ls, full, fm)]
    print(
        f"\n{b.dataset}, device {dev}, budget "
        f"{args.budget_minutes} min/model, total wall {time.perf_counter() - t_all:.0f}s"
    )
    print_table(b, fm, full, results)
    print_json({**head, "partitioner": args.partitioner, "full": out_full, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
