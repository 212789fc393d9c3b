"""What the NBFNet benches share: data, training presets, checkpoints and leaf assignments.

Needs only torch at import time (pyspark and pymetis are imported by the assignment makers
that use them), so ``bench/gpu_nbfnet*.sh`` runs on a machine with torch alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from bench.common import timed
from gnn.data.kg import (
    KGDataset,
    LinkSplit,
    RelationalGraph,
    cora_link_split,
    homogeneous_graph,
    kg_graph,
    load_planetoid_edges,
    load_triples_dir,
)
from gnn.engine.nbfnet import NBFNetResult, NBFNetTrainConfig, build_model, fit_nbfnet
from gnn.engine.nbfnet_partitioned import PartitionedGraph
from gnn.eval.nbfnet_partitioned import pair_subgraph


class KGData(NamedTuple):
    """A triples folder: the dataset, its training graph, the (shuffled, capped) test triples
    and every known triple (the ranking filter)."""

    ds: KGDataset
    graph: RelationalGraph
    test: Tensor
    every: Tensor


def kg_data(folder: str, seed: int, limit: int = 0) -> KGData:
    """Load ``folder``; test triples shuffled with ``seed``, the first ``limit`` kept (0: all)."""
    ds = load_triples_dir(folder)
    graph = kg_graph(ds.train, ds.num_entities, ds.num_relations)
    test = ds.test[torch.randperm(len(ds.test), generator=torch.Generator().manual_seed(seed))]
    test = test[:limit] if limit else test
    return KGData(ds, graph, test, torch.cat([ds.train, ds.valid, ds.test]))


class LinkData(NamedTuple):
    """A Planetoid graph with its 85/5/10 edge split and the graph of the training edges."""

    edges: Tensor
    num_nodes: int
    split: LinkSplit
    graph: RelationalGraph


def link_data(folder: str, name: str, seed: int) -> LinkData:
    """Load ``ind.NAME.*`` from ``folder`` and split its edges (:func:`cora_link_split`)."""
    edges, n = load_planetoid_edges(folder, name)
    split = cora_link_split(edges, n, seed=seed)
    return LinkData(edges, n, split, homogeneous_graph(split.train, n))


def task_preset(kg: bool, gpu: bool, negative_sources: float = 1.0) -> dict[str, Any]:
    """The benches' NBFNet task settings: filtered KG ranking or Planetoid link prediction."""
    preset: dict[str, Any] = {
        "task": "kg" if kg else "link",
        "dependent": kg,
        "num_negative": 32 if kg else 8,
        "adversarial_temperature": 0.5 if kg else 0.0,
        "batch_size": 64 if gpu else (4 if kg else 16),
    }
    if not kg:
        preset["negative_sources"] = negative_sources
    return preset


def train_config(
    args: argparse.Namespace, base: dict[str, Any], overrides: tuple[str, ...], **extra: Any
) -> NBFNetTrainConfig:
    """A training config: ``base`` with the ``overrides`` given on the command line, the model
    size, seed, time budget and log interval of ``args``, and ``extra``."""
    return NBFNetTrainConfig(
        **{**base, **{k: getattr(args, k) for k in overrides if getattr(args, k) is not None}},
        dim=args.dim,
        layers=args.layers,
        seed=args.seed,
        time_budget_seconds=60.0 * args.budget_minutes,
        log_every=args.log_every,
        **extra,
    )


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


# --------------------------------------------------------------------------- checkpoints


def full_model(
    path_spec: str,
    graph: RelationalGraph,
    cfg: NBFNetTrainConfig,
    dev: torch.device,
    train_triples: Tensor | None,
) -> NBFNetResult:
    """The full-graph model: trained, or read from ``path_spec`` when that file exists.

    A checkpoint holds the weights, the config it was trained with and the training figures;
    one trained with another config is refused rather than silently compared.
    """
    path = Path(path_spec) if path_spec else None
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
        saved = {"state_dict": full.state_dict, "config": repr(cfg)}
        saved.update(seconds=full.seconds, steps=full.steps, queries=full.queries)
        torch.save(saved, path)
    return full


# --------------------------------------------------------------------------- leaf assignments


def assignment_file(folder: str, dataset: str, partitioner: str, k: int, seed: int) -> Path:
    """Where ``--assignment-cache`` keeps the k-leaf assignment of a dataset."""
    return Path(folder) / f"{dataset}-{partitioner}-k{k}-s{seed}.pt"


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
        assignment_file(args.assignment_cache, dataset, args.partitioner, k, args.seed)
        if args.assignment_cache
        else None
    )
    if cache is not None and cache.is_file():
        return torch.load(cache), 0.0
    make = spark_assignment if args.partitioner == "spark" else metis_assignment
    a, secs = timed(lambda: make(pairs, num_nodes, k, args.seed))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(a, cache)
    return a, secs


def undirected_pairs(edge_index: Tensor) -> Tensor:
    """Distinct undirected non-loop pairs ``u < v`` of a graph's edges, ``[M, 2]``."""
    u, v = edge_index
    lo, hi = torch.minimum(u, v), torch.maximum(u, v)
    keep = lo != hi
    return torch.unique(torch.stack([lo[keep], hi[keep]], dim=1), dim=0)


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


def ceiling_line(setting: str, c: dict[str, float], full_mrr: float) -> str:
    """One progress line of :func:`gnn.eval.nbfnet_partitioned.restriction_ceiling`'s figures."""
    return (
        f"[bench] {setting}: coverage {c['coverage']:.4f}, the full model keeps MRR "
        f"{c['ceiling_mrr']:.4f} of {full_mrr:.4f} (loss {c['ceiling_loss']:.1%}) with the "
        f"answers outside leaf + halo counted as misses; its MRR on the covered queries "
        f"{c.get('covered_mrr', 0.0):.4f}, on the others {c.get('uncovered_mrr', 0.0):.4f}"
    )
