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
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from gnn.data.kg import (
    RelationalGraph,
    cora_link_split,
    homogeneous_graph,
    kg_graph,
    load_planetoid_edges,
    load_triples_dir,
)
from gnn.engine.device import select_device
from gnn.engine.nbfnet import NBFNetResult, NBFNetTrainConfig, build_model, fit_nbfnet
from gnn.engine.nbfnet_partitioned import PartitionedGraph, fit_partitioned
from gnn.eval.nbfnet import evaluate_link_auc, kg_metrics, kg_ranks
from gnn.eval.nbfnet_partitioned import (
    evaluate_kg_partitioned,
    evaluate_link_auc_partitioned,
    pair_subgraph,
    restriction_ceiling,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.nbfnet_partitioned", description=__doc__.split("\n")[0]
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--planetoid", metavar="DIR", help="folder with Planetoid ind.NAME.* files")
    src.add_argument("--triples", metavar="DIR", help="folder with train/valid/test.txt")
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
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--eval-batch-size", type=int, default=None)
    p.add_argument("--num-negative", type=int, default=None)
    p.add_argument(
        "--negative-sources",
        type=float,
        default=1.0,
        help="Planetoid: all-negative queries from random sources per positive",
    )
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=50)
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
    p.add_argument("--json", action="store_true", help="end with the JSON line (always printed)")
    return p.parse_args(argv)


def query_caps(spec: str, full_queries: int) -> list[int]:
    """The ``--partitioned-queries`` caps: ``full`` = the full model's count, ``budget`` = no cap
    (0: the time budget alone); empty = ``[0]``."""
    if not spec:
        return [0]
    named = {"full": full_queries, "budget": 0}
    caps = []
    for token in (t.strip() for t in spec.split(",")):
        if token not in named and not (token.isdigit() and int(token) > 0):
            raise SystemExit(
                f"--partitioned-queries: {token!r} is not a positive count, 'full' or 'budget'"
            )
        caps.append(named[token] if token in named else int(token))
    return caps


def capped(cfg: NBFNetTrainConfig, cap: int) -> NBFNetTrainConfig:
    """``cfg`` stopped after ``cap`` training queries (0: unchanged), rounded up to whole steps:
    ``ceil(cap / batch)`` steps, so up to ``batch - 1`` queries more (fewer where a leaf's last
    batch is short); the rows report the queries actually trained on."""
    return cfg if cap == 0 else dataclasses.replace(cfg, max_steps=-(-cap // cfg.batch_size))


def _config(args: argparse.Namespace, kg: bool, gpu: bool) -> NBFNetTrainConfig:
    if kg:
        base: dict[str, Any] = dict(
            task="kg",
            dependent=True,
            num_negative=32,
            adversarial_temperature=0.5,
            batch_size=64 if gpu else 4,
        )
    else:
        base = dict(
            task="link",
            dependent=False,
            num_negative=8,
            adversarial_temperature=0.0,
            batch_size=64 if gpu else 16,
            negative_sources=args.negative_sources,
        )
    for key in ("batch_size", "num_negative"):
        if getattr(args, key) is not None:
            base[key] = getattr(args, key)
    return NBFNetTrainConfig(
        **base,
        dim=args.dim,
        layers=args.layers,
        epochs=args.epochs,
        seed=args.seed,
        time_budget_seconds=60.0 * args.budget_minutes,
        max_steps=args.max_steps,
        log_every=args.log_every,
    )


def spark_assignment(pairs: Tensor, num_nodes: int, k: int, seed: int) -> Tensor:
    """Leaf of every node from :func:`pipelines.partition.stage.partition_graph` on ``local[2]``.

    Only the per-node assignment (``O(nodes)``) comes back to the driver.
    """
    import pandas as pd

    from pipelines.core.schema import DST, KIND, LEAF_ID, NODE_ID, SRC
    from pipelines.core.session import build_spark
    from pipelines.partition.stage import PartitionSettings, partition_graph

    work = Path(tempfile.mkdtemp(prefix="nbfnet-part-"))
    spark = build_spark(
        "bench-nbfnet-partitioned", master="local[2]", checkpoint_dir=str(work / "ckpt")
    )
    try:
        edges = spark.createDataFrame(
            pd.DataFrame({SRC: pairs[:, 0].numpy(), DST: pairs[:, 1].numpy()})
        )
        nodes = spark.createDataFrame(pd.DataFrame({NODE_ID: range(num_nodes), KIND: "node"}))
        res = partition_graph(
            spark,
            edges,
            PartitionSettings(num_leaves=k, seed=seed, work_dir=str(work)),
            node_kinds=nodes,
        )
        table: pd.DataFrame = res.assignment.select(NODE_ID, LEAF_ID).toPandas()
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)
    out = torch.full((num_nodes,), -1, dtype=torch.long)
    out[torch.as_tensor(table[NODE_ID].to_numpy())] = torch.as_tensor(
        table[LEAF_ID].to_numpy(), dtype=torch.long
    )
    if bool((out < 0).any()):
        raise RuntimeError(f"partitioner left {int((out < 0).sum())} nodes without a leaf")
    return out


def metis_assignment(pairs: Tensor, num_nodes: int, k: int, seed: int) -> Tensor:
    """Leaf of every node from pymetis (``part_graph`` on the undirected adjacency)."""
    import numpy as np
    import pymetis

    und = torch.cat([pairs, pairs.flip(1)]).numpy()
    order = np.lexsort((und[:, 1], und[:, 0]))
    und = und[order]
    xadj = np.zeros(num_nodes + 1, dtype=np.int64)
    np.add.at(xadj, und[:, 0] + 1, 1)
    opts = pymetis.Options(seed=seed)
    _, parts = pymetis.part_graph(k, xadj=np.cumsum(xadj), adjncy=und[:, 1], options=opts)
    return torch.as_tensor(np.asarray(parts), dtype=torch.long)


def assignment(
    args: argparse.Namespace, pairs: Tensor, num_nodes: int, k: int, dataset: str
) -> tuple[Tensor, float]:
    """The k-leaf assignment (from the cache when present) and seconds spent computing it."""
    cache = (
        Path(args.assignment_cache) / f"{dataset}-{args.partitioner}-k{k}-s{args.seed}.pt"
        if args.assignment_cache
        else None
    )
    if cache is not None and cache.is_file():
        return torch.load(cache), 0.0
    t0 = time.perf_counter()
    make = spark_assignment if args.partitioner == "spark" else metis_assignment
    a = make(pairs, num_nodes, k, args.seed)
    secs = time.perf_counter() - t0
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(a, cache)
    return a, secs


def scope_sizes(pg: PartitionedGraph, pairs: Tensor, scope: str) -> dict[str, float]:
    """Mean nodes and edges of the subgraphs the pairs ran on (weighted by pairs)."""
    if scope == "source":
        leaves = pg.node_leaf[pairs[:, 0].to(pg.node_leaf.device)].cpu()
        sizes = [(lf.graph.num_nodes, lf.graph.num_edges) for lf in pg.leaves]
        got = [sizes[i] for i in leaves.tolist()]
    else:
        ends = pg.node_leaf[pairs.to(pg.node_leaf.device)].cpu()
        memo: dict[tuple[int, int], tuple[int, int]] = {}
        got = []
        for a, b in ends.tolist():
            key = (min(a, b), max(a, b))
            if key not in memo:
                _, sub = pair_subgraph(pg, *key)
                memo[key] = (sub.num_nodes, sub.num_edges)
            got.append(memo[key])
    return {
        "scope_nodes": sum(n for n, _ in got) / len(got),
        "scope_edges": sum(e for _, e in got) / len(got),
    }


def full_model(
    args: argparse.Namespace,
    graph: RelationalGraph,
    cfg: NBFNetTrainConfig,
    dev: torch.device,
    train_triples: Tensor | None,
) -> NBFNetResult:
    """The full-graph model: trained, or read from ``--full-checkpoint`` when that file exists.

    A checkpoint holds the weights, the config it was trained with and the training figures;
    one trained with another config is refused rather than silently compared.
    """
    path = Path(args.full_checkpoint) if args.full_checkpoint else None
    if path is not None and path.is_file():
        saved = torch.load(path, map_location="cpu")
        if saved["config"] != repr(cfg):
            raise SystemExit(f"{path}: trained with {saved['config']}, not {cfg!r}")
        model = build_model(graph.num_relations, cfg).to(dev)
        model.load_state_dict(saved["state_dict"])
        print(f"[bench] full graph: read from {path}", flush=True)
        return NBFNetResult(
            state_dict=saved["state_dict"],
            losses=[],
            seconds=saved["seconds"],
            history=[],
            steps=saved["steps"],
            queries=saved["queries"],
            model=model.eval(),
        )
    full = fit_nbfnet(graph, cfg, device=dev, train_triples=train_triples)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "state_dict": full.state_dict,
                "config": repr(cfg),
                "seconds": full.seconds,
                "steps": full.steps,
                "queries": full.queries,
            },
            path,
        )
    return full


def _pairs(edge_index: Tensor) -> Tensor:
    """Distinct undirected non-loop pairs ``u < v`` of a graph's edges, ``[M, 2]``."""
    u, v = edge_index
    lo, hi = torch.minimum(u, v), torch.maximum(u, v)
    keep = lo != hi
    return torch.unique(torch.stack([lo[keep], hi[keep]], dim=1), dim=0)


def _ceiling_line(setting: str, c: dict[str, float], full_mrr: float) -> str:
    """One progress line of :func:`gnn.eval.nbfnet_partitioned.restriction_ceiling`'s figures."""
    return (
        f"[bench] {setting}: coverage {c['coverage']:.4f}, the full model keeps MRR "
        f"{c['ceiling_mrr']:.4f} of {full_mrr:.4f} (loss {c['ceiling_loss']:.1%}) with the "
        f"answers outside leaf + halo counted as misses; its MRR on the covered queries "
        f"{c.get('covered_mrr', 0.0):.4f}, on the others {c.get('uncovered_mrr', 0.0):.4f}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    dev = select_device(args.device)
    kg = args.triples is not None
    t_all = time.perf_counter()
    if kg:
        ds = load_triples_dir(args.triples)
        dataset = Path(args.triples).name
        graph = kg_graph(ds.train, ds.num_entities, ds.num_relations)
        test = ds.test[
            torch.randperm(len(ds.test), generator=torch.Generator().manual_seed(args.seed))
        ]
        test = test[: args.test_queries] if args.test_queries else test
        every = torch.cat([ds.train, ds.valid, ds.test])
        train_triples, metric = ds.train, "mrr"
    else:
        edges, n = load_planetoid_edges(args.planetoid, args.name)
        dataset = args.name
        split = cora_link_split(edges, n, seed=args.seed)
        graph = homogeneous_graph(split.train, n)
        train_triples, metric = None, "auroc"
    cfg = _config(args, kg, dev.type == "cuda")
    ebs = args.eval_batch_size or (64 if (dev.type == "cuda" or not kg) else 8)
    pairs = _pairs(graph.edge_index)
    print(
        f"[bench] {dataset}: {graph.num_nodes} nodes, {graph.num_edges} directed edges, "
        f"{len(pairs)} undirected pairs; device {dev}; {cfg}",
        flush=True,
    )
    parts = {}
    for k in (int(x) for x in args.k.split(",")):
        a, secs = assignment(args, pairs, graph.num_nodes, k, dataset)
        cut = float((a[pairs[:, 0]] != a[pairs[:, 1]]).double().mean())
        for hops, rule in itertools.product(
            (int(x) for x in args.halo_hops.split(",")), args.halo_edges.split(",")
        ):
            pg = PartitionedGraph(graph, a, halo_hops=hops, halo_edges=rule)
            st = pg.stats()
            print(
                f"[bench] k={k} halo {hops} {rule} ({args.partitioner}, {secs:.1f}s): edge "
                f"cut {cut:.3f}; leaf+halo nodes {[s['nodes'] for s in st]}, edges "
                f"{[s['edges'] for s in st]}",
                flush=True,
            )
            parts[k, hops, rule] = (pg, cut, st)

    scopes = args.scope.split(",")
    if kg and scopes != ["source"]:
        raise SystemExit("--scope pair needs --planetoid: a KG query's answer is unknown")

    full_ranks: list[Tensor] = []  # the full model's full-graph ranks (triples)

    def evaluate(model, pg: PartitionedGraph | None, scope: str = "source") -> dict[str, float]:
        if pg is None:
            graph.index()  # build the CSR views outside the timed loop, as the leaves do
            if kg:
                ranks, secs = kg_ranks(
                    model, graph, test, filter_triples=every, batch_size=ebs, device=dev
                )
                full_ranks.append(ranks)
                return kg_metrics(ranks, secs)
            return evaluate_link_auc(
                model, graph, split.test, split.test_neg, batch_size=ebs, device=dev
            )
        if kg:
            return evaluate_kg_partitioned(model, pg, test, filter_triples=every, batch_size=ebs)
        out = evaluate_link_auc_partitioned(
            model, pg, split.test, split.test_neg, batch_size=ebs, scope=scope
        )
        out.update(scope_sizes(pg, torch.cat([split.test, split.test_neg]), scope))
        return out

    graph = graph.to(dev)
    full = full_model(args, graph, cfg, dev, train_triples)
    print(
        f"[bench] full graph: {full.steps} steps, {full.queries} queries in "
        f"{full.seconds:.1f}s; evaluating ...",
        flush=True,
    )
    fm = evaluate(full.model, None)
    print(f"[bench] full graph: {metric} {fm[metric]:.4f}, {fm['qps']:.1f} queries/s", flush=True)
    out_full = {
        metric: fm[metric],
        "queries_per_second": fm["qps"],
        "train_seconds": full.seconds,
        "train_queries": full.queries,
        "test_queries": int(fm["queries"]),
    }
    if args.ceiling_only:
        if not kg:
            raise SystemExit("--ceiling-only needs --triples (the MRR ceiling of KG queries)")
        rows = []
        for (k, hops, rule), (pg, cut, _) in parts.items():
            c = restriction_ceiling(pg.to(dev), test, full_ranks[0])
            print(_ceiling_line(f"k={k} halo {hops} {rule}", c, fm[metric]), flush=True)
            rows.append(
                {
                    "k": k,
                    "halo_hops": hops,
                    "halo_edges": rule,
                    "edge_cut": cut,
                    **{f"restriction_{n}" if n != "coverage" else n: v for n, v in c.items()},
                }
            )
        print(
            json.dumps(
                {"dataset": dataset, "device": str(dev), "full": out_full, "ceilings": rows}
            ),
            flush=True,
        )
        return 0
    results = []
    caps = query_caps(args.partitioned_queries, full.queries)
    for (k, hops, rule), (pg, cut, st) in parts.items():
        pg = pg.to(dev)
        # the restriction's ceiling and the full model on the leaves do not depend on the cap
        ceiling = restriction_ceiling(pg, test, full_ranks[0]) if kg else {}
        if ceiling:
            print(_ceiling_line(f"k={k} halo {hops} {rule}", ceiling, fm[metric]), flush=True)
        full_on_leaves: dict[str, dict[str, float]] = {}
        for cap in caps:
            res = fit_partitioned(pg, capped(cfg, cap), device=dev, train_triples=train_triples)
            print(
                f"[bench] k={k} halo {hops} {rule}: {res.steps} steps, {res.queries} queries in "
                f"{res.seconds:.1f}s (cap {cap or 'none'}); evaluating ...",
                flush=True,
            )
            for (name, model), scope in itertools.product(
                (("partitioned", res.model), ("full", full.model)), scopes
            ):
                if name == "full" and scope in full_on_leaves:
                    m = full_on_leaves[scope]
                else:
                    m = evaluate(model, pg, scope)
                    print(
                        f"[bench] k={k} halo {hops} {rule} {name} on {scope} scope: "
                        f"{metric} {m[metric]:.4f}, {m['qps']:.1f} queries/s",
                        flush=True,
                    )
                    if name == "full":
                        full_on_leaves[scope] = m
                row = {
                    "k": k,
                    "halo_hops": hops,
                    "halo_edges": rule,
                    "scope": scope,
                    "model": name,
                    metric: m[metric],
                    "relative_loss": (fm[metric] - m[metric]) / fm[metric],
                    "queries_per_second": m["qps"],
                    "speedup": m["qps"] / fm["qps"],
                    "edge_cut": cut,
                    "mean_subgraph_nodes": m.get(
                        "scope_nodes", sum(s["nodes"] for s in st) / len(st)
                    ),
                    "mean_subgraph_edges": m.get(
                        "scope_edges", sum(s["edges"] for s in st) / len(st)
                    ),
                    "train_seconds": res.seconds if name == "partitioned" else full.seconds,
                    "train_queries": res.queries if name == "partitioned" else full.queries,
                    "query_cap": cap,
                }
                row.update(
                    {c: m[c] for c in ("coverage", "coverage_pos", "coverage_neg") if c in m}
                )
                row.update({f"restriction_{c}": v for c, v in ceiling.items() if c != "coverage"})
                results.append(row)
    print(
        f"\n{dataset}, device {dev}, budget "
        f"{args.budget_minutes} min/model, total wall {time.perf_counter() - t_all:.0f}s"
    )
    print(
        f"| k | halo | model | scope | {metric} | rel. loss | queries/s | speedup | cut | "
        "mean leaf+halo nodes / edges | train queries |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| - | - | full | full graph | {fm[metric]:.4f} | - | {fm['qps']:.1f} | 1.00 | - | "
        f"{graph.num_nodes} / {graph.num_edges} | {full.queries} |"
    )
    for r in results:
        print(
            f"| {r['k']} | {r['halo_hops']} {r['halo_edges']} | {r['model']} | {r['scope']} | "
            f"{r[metric]:.4f} | "
            f"{100 * r['relative_loss']:+.2f}% | {r['queries_per_second']:.1f} | "
            f"{r['speedup']:.2f} | {r['edge_cut']:.3f} | {r['mean_subgraph_nodes']:.0f} / "
            f"{r['mean_subgraph_edges']:.0f} | {r['train_queries']} |"
        )
    print(
        json.dumps(
            {
                "dataset": dataset,
                "device": str(dev),
                "partitioner": args.partitioner,
                "full": out_full,
                "results": results,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
