"""Server-side rules of the partitioned LightGCN rounds, compared without Spark.

    python -m bench.round_rules --leaf-edges WORK/leaf_edges --train FILE --test FILE \
        --rounds 18 --rule plain --rule shared:2 --rule all:1.5 --rule sqrt --rule momentum:0.5

Replays the rounds of :mod:`pipelines.train.rounds` in one process (two worker processes
train the leaves, one torch thread each) with the same leaf function
(:func:`pipelines.train.seam._train_leaf_arrays`, same seeds) and the same weighted mean of the
replicas, so ``plain`` reproduces the Spark rounds' Recall@20 round for round (checked against
``bench.pipeline``'s log: 0.1108, 0.1168, 0.1264, ...). The Recall@20 after each round is
deterministic, so rules are compared by round, not by the box's seconds. ``--leaf-edges`` is the
``leaf_edges`` Parquet a ``bench.pipeline`` run writes into its work dir. Rules, with ``x`` the
start vector of a round and ``m`` the weighted mean of its trained replicas:

- ``plain``: ``x <- m`` (federated averaging);
- ``shared:ETA``: ``x <- x + ETA (m - x)`` for nodes held by several leaves, ``m`` otherwise
  (``LeafTrainSettings.shared_step``);
- ``all:ETA``: the same step on every node;
- ``sqrt``: ``ETA = sqrt(replicas)`` per node;
- ``momentum:BETA``: ``v <- BETA v + (m - x)``, ``x <- x + v`` (server momentum).

Ends with one JSON line ``{"results": [{"rule", "recall@20": [per round]}, ...]}``.
"""

from __future__ import annotations

import argparse
from multiprocessing import Pool
from typing import Any

import numpy as np
import pandas as pd
import torch

from bench.common import (
    LightGCNSplit,
    add_lightgcn_files,
    add_model_size,
    load_lightgcn_split,
    print_json,
    ranking_evaluator,
    score_ego_rows,
)
from gnn.models.lightgcn import build_norm_adj
from pipelines.train.seam import LeafTrainSettings, _train_leaf_arrays
from pipelines.train.seeded_init import seeded_vectors

_LEAVES: dict[int, pd.DataFrame] = {}
_SETTINGS: LeafTrainSettings | None = None


def _init_worker(leaves: dict[int, pd.DataFrame], settings: LeafTrainSettings) -> None:
    global _SETTINGS
    _LEAVES.update(leaves)
    _SETTINGS = settings
    torch.set_num_threads(1)


def _train(job: tuple[int, int, np.ndarray, np.ndarray, np.ndarray]) -> tuple[Any, ...]:
    leaf, r, kinds, ids, vecs = job
    assert _SETTINGS is not None
    cols, ego = _train_leaf_arrays(_LEAVES[leaf], kinds, ids, vecs, _SETTINGS, r)
    return np.asarray(cols["kind"]), cols["node_id"], cols["w"], ego


def _step(rule: str, start: np.ndarray, mean: np.ndarray, replicas: np.ndarray,
          velocity: np.ndarray) -> np.ndarray:  # fmt: skip
    name, _, arg = rule.partition(":")
    delta = mean - start
    if name == "plain":
        return mean
    if name == "shared":
        eta = np.where(replicas > 1, float(arg), 1.0)
    elif name == "all":
        eta = np.full(len(start), float(arg))
    elif name == "sqrt":
        eta = np.sqrt(replicas)
    elif name == "momentum":
        velocity *= float(arg)
        velocity += delta
        return start + velocity
    else:
        raise ValueError(f"--rule: unknown rule {rule!r}")
    return start + eta[:, None].astype(np.float32) * delta


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--leaf-edges", required=True)
    add_lightgcn_files(p)
    p.add_argument("--rounds", type=int, default=18)
    p.add_argument("--rule", action="append", default=[])
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=2048)
    add_model_size(p, dim=64, layers=3)
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def read_leaves(path: str) -> tuple[dict[int, pd.DataFrame], pd.DataFrame, pd.DataFrame]:
    """The leaves' edges, their members (``leaf_id, kind, node_id, g``: ``g`` the row in
    ``nodes``) and the distinct nodes (``kind, node_id``, sorted)."""
    df = pd.read_parquet(path)
    leaves = {int(k): g.reset_index(drop=True) for k, g in df.groupby("leaf_id")}
    members = pd.concat(
        [pd.DataFrame({"leaf_id": k, "kind": kind, "node_id": np.unique(g[kind].to_numpy())})
         for k, g in leaves.items() for kind in ("user", "item")],
        ignore_index=True,
    )  # fmt: skip
    nodes = members[["kind", "node_id"]].drop_duplicates().sort_values(["kind", "node_id"])
    nodes = nodes.reset_index(drop=True)
    index = pd.MultiIndex.from_frame(nodes)
    members["g"] = index.get_indexer(pd.MultiIndex.from_frame(members[["kind", "node_id"]]))
    return leaves, members, nodes


def replay(args: argparse.Namespace, rule: str, pool: Any, members: pd.DataFrame,
           nodes: pd.DataFrame, score: Any) -> list[float]:  # fmt: skip
    """``--rounds`` rounds of the leaves under ``rule``; Recall@20 after each."""
    index = pd.MultiIndex.from_frame(nodes)
    replicas = np.bincount(members["g"], minlength=len(nodes)).astype(np.float64)
    state = seeded_vectors(nodes, dim=args.dim, seed=0)
    velocity = np.zeros_like(state)
    curve = []
    for r in range(1, args.rounds + 1):
        jobs = [(k, r, m["kind"].to_numpy(), m["node_id"].to_numpy(), state[m["g"].to_numpy()])
                for k, m in members.groupby("leaf_id")]  # fmt: skip
        sums = np.zeros(state.shape, np.float64)
        weights = np.zeros(len(nodes))
        for kinds, node_ids, w, ego in pool.map(_train, jobs):
            g = index.get_indexer(pd.MultiIndex.from_arrays([kinds, node_ids]))
            np.add.at(weights, g, w)
            np.add.at(sums, g, ego.astype(np.float64) * w[:, None])
        mean = (sums / weights[:, None]).astype(np.float32)
        state = _step(rule, state, mean, replicas, velocity)
        state = state.astype(np.float16).astype(np.float32)  # the rounds' row dtype
        recall = score(state)
        curve.append(round(float(recall), 4))
        print(f"{rule:>14} round {r:>2}: recall@20 {recall:.4f}", flush=True)
    return curve


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = LeafTrainSettings(dim=args.dim, layers=args.layers, epochs=1,
                                 batch_size=args.batch_size, lr=args.lr, seed=0, threads=1,
                                 vector_dtype="float16")  # fmt: skip
    leaves, members, nodes = read_leaves(args.leaf_edges)
    d: LightGCNSplit = load_lightgcn_split(args.train, args.test)
    evaluator = ranking_evaluator(d, batch_size=4096)
    adj = build_norm_adj(d.users, d.items, d.num_users, d.num_items, "cpu")
    is_user = (nodes["kind"] == "user").to_numpy()
    ids = nodes["node_id"].to_numpy()

    def score(state: np.ndarray) -> float:
        rows = (is_user, ids, state)
        return score_ego_rows(d, evaluator, adj, rows, dim=args.dim, layers=args.layers)[
            "recall@20"
        ]

    results = []
    with Pool(2, initializer=_init_worker, initargs=(leaves, settings)) as pool:
        for rule in args.rule or ["plain"]:
            curve = replay(args, rule, pool, members, nodes, score)
            results.append({"rule": rule, "recall@20": curve})
    print(f"\n{'rule':>14} " + " ".join(f"{r:>6}" for r in range(1, args.rounds + 1)))
    for row in results:
        print(f"{row['rule']:>14} " + " ".join(f"{x:>6.4f}" for x in row["recall@20"]))
    print_json({"results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
