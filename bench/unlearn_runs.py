"""The two halves of ``bench.unlearn``: LightGCN on user-item files, NBFNet on Planetoid.

Each trains (or reads from the cache) the original and the retrained model, unlearns the
original with :mod:`gnn.unlearn` and evaluates all three; :func:`summary` prints the table.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import pickle
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import LightGCNSplit, load_lightgcn_split, markdown_table
from bench.common import log as _log
from bench.nbfnet_setup import link_data, task_preset
from gnn.data.kg import homogeneous_graph
from gnn.engine.lightgcn import LightGCNTrainConfig, fit_lightgcn
from gnn.engine.nbfnet import NBFNetTrainConfig, build_model, fit_nbfnet
from gnn.eval.metrics import RankingEvaluator
from gnn.eval.nbfnet import evaluate_link_auc
from gnn.models.lightgcn import build_norm_adj, lightgcn_propagate
from gnn.unlearn.d2dgn import UnlearnConfig
from gnn.unlearn.eval import (
    deleted_auroc_lightgcn,
    deleted_auroc_nbfnet,
    sample_deleted_edges,
    sample_deleted_users,
)
from gnn.unlearn.lightgcn import LightGCNDeletion, lightgcn_deletion, unlearn_lightgcn
from gnn.unlearn.nbfnet import unlearn_nbfnet

Rows = dict[str, dict[str, float]]


def _unlearn_config(args: argparse.Namespace, base: UnlearnConfig) -> UnlearnConfig:
    over = {
        "alpha": args.alpha,
        "beta": args.beta,
        "temperature": args.temperature,
        "steps": args.unlearn_steps,
        "lr": args.unlearn_lr,
        "batch_size": args.unlearn_batch,
        "deleted_batch_size": args.unlearn_deleted_batch,
    }
    ucfg = base.replace(seed=args.seed, **{k: v for k, v in over.items() if v is not None})
    _log(f"[bench] unlearning: {ucfg}")
    return ucfg


def _file_key(*paths: str) -> str:
    parts = []
    for path in paths:
        st = os.stat(path)
        parts.append(f"{os.path.abspath(path)}:{st.st_size}:{int(st.st_mtime)}")
    return "|".join(parts)


def _cached(args: argparse.Namespace, key: str, train: Callable[[], Any]) -> tuple[Any, bool]:
    """``(value, from_cache)``: load the pickle for ``key`` or run ``train`` and store it."""
    path = Path(args.cache_dir) / (hashlib.sha256(key.encode()).hexdigest()[:20] + ".pkl")
    if path.exists() and not args.no_cache:
        with path.open("rb") as f:
            return pickle.load(f), True
    value = train()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        pickle.dump(value, f)
    tmp.replace(path)
    return value, False


def _original_and_retrained(
    args: argparse.Namespace,
    model: str,
    request: str,
    base: str,
    train: Callable[[bool], dict[str, Any]],
    unit: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model trained on all training data and the one retrained on the retained data
    (``train(retained)``), each from the cache when there."""
    keys = {"original": f"{model}-original|", "retrained": f"{model}-retrain|{request}|"}
    keys["retrained"] += f"seed{args.seed}|"
    out = []
    for name, key in keys.items():
        value, hit = _cached(args, key + base, functools.partial(train, name == "retrained"))
        _log(
            f"[bench] {name}: {value[unit]} {unit}, {value['seconds']:.1f}s"
            + (" (cache)" if hit else "")
        )
        out.append(value)
    return out[0], out[1]


# --------------------------------------------------------------------------- LightGCN


def _lightgcn_request(args: argparse.Namespace, users: np.ndarray, items: np.ndarray
                      ) -> tuple[LightGCNDeletion, str]:  # fmt: skip
    """The deletion (``--delete-users`` or ``--delete-edges``) and its cache key."""
    if args.delete_users is not None:
        gone = sample_deleted_users(users, args.delete_users, seed=args.seed)
        return lightgcn_deletion(users, items, users_to_delete=gone), f"users:{args.delete_users}"
    picked = sample_deleted_edges(len(users), args.delete_edges, seed=args.seed)
    return lightgcn_deletion(users, items, edges=picked), f"edges:{args.delete_edges}"


def _lightgcn_rows(
    args: argparse.Namespace,
    d: LightGCNSplit,
    deletion: LightGCNDeletion,
    emb: dict[str, torch.Tensor],
    dev: torch.device,
) -> Rows:
    """Recall@20 of the retained users and deleted-edge AUROC of each embedding table."""
    keep, nu = deletion.keep, d.num_users
    test_keep = ~np.isin(d.test_users, deletion.deleted_users)
    evaluator = RankingEvaluator(
        d.users[keep],
        d.items[keep],
        d.test_users[test_keep],
        d.test_items[test_keep],
        num_users=nu,
        num_items=d.num_items,
        k=20,
        device=dev,
    )
    known_u = np.concatenate([d.users, d.test_users])
    known_i = np.concatenate([d.items, d.test_items])
    rows = {}
    for name, e in emb.items():
        u_e, i_e = e[:nu], e[nu:]
        rows[name] = {
            "utility": evaluator.evaluate(u_e, i_e)["recall@20"],
            "deleted_auroc": deleted_auroc_lightgcn(
                u_e, i_e, d.users[~keep], d.items[~keep], known_u, known_i, seed=args.seed
            ),
        }
    return rows


def run_lightgcn(args: argparse.Namespace, dev: torch.device) -> dict[str, Any]:
    d = load_lightgcn_split(args.train, args.test)
    tr_u, tr_i, nu, ni = d.users, d.items, d.num_users, d.num_items
    cfg = LightGCNTrainConfig.cpu_recipe(
        time_budget_seconds=60.0 * args.budget_minutes, seed=args.seed, threads=args.threads
    )
    if args.epochs:
        cfg = cfg.replace(epochs=args.epochs, time_budget_seconds=0.0)
    deletion, request = _lightgcn_request(args, tr_u, tr_i)
    keep = deletion.keep
    _log(
        f"[bench] {nu} users, {ni} items, {len(tr_u)} train / {len(d.test_users)} test "
        f"interactions; deleting {deletion.num_deleted} interactions, "
        f"{len(deletion.deleted_users)} users; recipe {cfg}"
    )

    def train(retained: bool) -> dict[str, Any]:
        u, i = (tr_u[keep], tr_i[keep]) if retained else (tr_u, tr_i)
        res = fit_lightgcn(u, i, nu, ni, cfg, device=dev, log=_log)
        return {"ego": res.ego_emb, "seconds": res.seconds, "epochs": res.epochs}

    base = _file_key(args.train, args.test) + "|" + repr(cfg) + f"|{dev.type}"
    original, retrained = _original_and_retrained(args, "lightgcn", request, base, train, "epochs")
    ucfg = _unlearn_config(
        args,
        UnlearnConfig(alpha=0.5, steps=15, lr=5e-3, batch_size=65536, deleted_batch_size=8192,
                      threads=args.threads),
    )  # fmt: skip
    un = unlearn_lightgcn(original["ego"], tr_u, tr_i, nu, ni, deletion, ucfg, layers=cfg.layers,
                          init_std=cfg.init_std, device=dev, log=_log)  # fmt: skip
    t_eval = time.perf_counter()
    assert un.user_emb is not None and un.item_emb is not None
    full_adj = build_norm_adj(tr_u, tr_i, nu, ni, dev)
    ret_adj = build_norm_adj(tr_u[keep], tr_i[keep], nu, ni, dev)
    with torch.no_grad():
        emb = {
            "original": lightgcn_propagate(full_adj, original["ego"].to(dev), cfg.layers),
            "retrained": lightgcn_propagate(ret_adj, retrained["ego"].to(dev), cfg.layers),
            "unlearned": torch.cat([un.user_emb, un.item_emb]).to(dev),
        }
    rows = _lightgcn_rows(args, d, deletion, emb, dev)
    _log(f"[bench] evaluation {time.perf_counter() - t_eval:.1f}s")
    times = (original["seconds"], retrained["seconds"], un.seconds)
    return summary(rows, "Recall@20 (retained users)", times, un.steps)


# --------------------------------------------------------------------------- Planetoid / NBFNet


def _link_triples(pairs: torch.Tensor) -> torch.Tensor:
    return torch.stack([pairs[:, 0], torch.zeros_like(pairs[:, 0]), pairs[:, 1]], dim=1)


def _nbfnet_config(args: argparse.Namespace) -> NBFNetTrainConfig:
    budget = 0.0 if args.epochs or args.train_steps else 60.0 * args.budget_minutes
    return NBFNetTrainConfig(
        **{**task_preset(kg=False, gpu=False), "batch_size": args.batch_size},
        epochs=args.epochs or 1000,
        max_steps=args.train_steps,
        dim=args.dim,
        layers=args.layers,
        aggregate=args.aggregate,
        seed=args.seed,
        time_budget_seconds=budget,
        log_every=100,
        threads=args.threads,
    )


def run_planetoid(args: argparse.Namespace, dev: torch.device) -> dict[str, Any]:
    link = link_data(args.planetoid, args.name, args.seed)
    split, graph, n = link.split, link.graph, link.num_nodes
    cfg = _nbfnet_config(args)
    picked = sample_deleted_edges(len(split.train), args.delete_edges, seed=args.seed)
    mask = torch.zeros(len(split.train), dtype=torch.bool)
    mask[torch.as_tensor(picked)] = True
    triples = _link_triples(split.train)
    graphs = {"original": graph, "retrained": homogeneous_graph(split.train[~mask], n)}
    _log(
        f"[bench] {args.name}: {n} nodes, {len(split.train)} train edges, deleting "
        f"{int(mask.sum())}; recipe {cfg}"
    )

    def train(retained: bool) -> dict[str, Any]:
        res = fit_nbfnet(graphs["retrained" if retained else "original"], cfg, device=dev, log=_log)
        return {"state": res.state_dict, "seconds": res.seconds, "steps": res.steps}

    def load(state: dict[str, torch.Tensor]) -> Any:
        model = build_model(1, cfg)
        model.load_state_dict(state)
        return model.to(dev).eval()

    base = _file_key(str(Path(args.planetoid) / f"ind.{args.name}.graph")) + f"|{cfg!r}|{dev.type}"
    request = f"edges:{args.delete_edges}"
    original, retrained = _original_and_retrained(args, "nbfnet", request, base, train, "steps")
    teacher = load(original["state"])
    ucfg = _unlearn_config(
        args,
        UnlearnConfig(alpha=0.5, steps=10, lr=1e-3, batch_size=8, deleted_batch_size=8,
                      num_negative=8, threads=args.threads),
    )  # fmt: skip
    un = unlearn_nbfnet(teacher, graph, triples, mask, ucfg, task="link", device=dev,
                        make_model=lambda: build_model(1, cfg), log=_log)  # fmt: skip
    t_eval = time.perf_counter()
    models = {
        "original": (teacher, graph.to(dev)),
        "retrained": (load(retrained["state"]), graphs["retrained"].to(dev)),
        "unlearned": (un.model, un.graph),
    }
    known, rows = homogeneous_graph(link.edges, n), {}
    for name, (model, g) in models.items():
        util = evaluate_link_auc(
            model, g, split.test, split.test_neg, batch_size=args.eval_batch_size, device=dev
        )
        rows[name] = {
            "utility": util["auroc"],
            "deleted_auroc": deleted_auroc_nbfnet(
                model, g, triples[mask], known, seed=args.seed, batch_size=args.eval_batch_size
            ),
        }
        _log(f"[bench] evaluated {name}: {rows[name]}")
    _log(f"[bench] evaluation {time.perf_counter() - t_eval:.1f}s")
    times = (original["seconds"], retrained["seconds"], un.seconds)
    return summary(rows, "test AUROC", times, un.steps)


# --------------------------------------------------------------------------- output


def summary(
    rows: Rows, utility_name: str, seconds: tuple[float, float, float], steps: int
) -> dict[str, Any]:
    """Print the table and the targets; the JSON figures. ``seconds``: original, retrained and
    unlearning time."""
    times = dict(zip(("original", "retrained", "unlearned"), seconds, strict=True))
    print()
    markdown_table(
        ["model", utility_name, "deleted-edge AUROC", "train / unlearn s"],
        [
            (name, f"{r['utility']:.4f}", f"{r['deleted_auroc']:.4f}", f"{times[name]:.1f}")
            for name, r in rows.items()
        ],
    )
    ratio = rows["unlearned"]["utility"] / rows["retrained"]["utility"]
    gap = rows["unlearned"]["deleted_auroc"] - rows["retrained"]["deleted_auroc"]
    print(
        f"\nutility ratio {ratio:.4f} (target >= 0.98); deleted AUROC gap to retrained "
        f"{gap:+.4f} (target |gap| <= 0.02, and below original "
        f"{rows['original']['deleted_auroc']:.4f}); time ratio "
        f"{times['unlearned'] / times['retrained']:.3f} (target <= 0.1); {steps} unlearning "
        "steps\n",
        flush=True,
    )
    return {
        "utility_ratio": ratio,
        "deleted_auroc": rows["unlearned"]["deleted_auroc"],
        "retrain_deleted_auroc": rows["retrained"]["deleted_auroc"],
        "original_deleted_auroc": rows["original"]["deleted_auroc"],
        "seconds": times["unlearned"],
        "retrain_seconds": times["retrained"],
    }
