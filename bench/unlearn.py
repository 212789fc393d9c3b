"""Distill-to-delete benchmark: original vs retrained-from-scratch vs unlearned, in one run.

Examples::

    # Gowalla (LightGCN line format), forget 1% of users; 6-minute training budgets
    nice -n 10 python -m bench.unlearn --train ../shared/data/gowalla/train.txt \
        --test ../shared/data/gowalla/test.txt --delete-users 0.01 --budget-minutes 6 --json

    # Cora (Planetoid files, NBFNet, 85/5/10 edge split), forget 2.5% of training edges
    nice -n 10 python -m bench.unlearn --planetoid ../shared/data/cora --name cora \
        --delete-edges 0.025 --budget-minutes 5 --json

The original model is trained on the full training data and the gold standard is retrained
from scratch on the retained data with the same recipe and time budget; both are cached under
``--cache-dir`` (keyed by data files, recipe and deletion request; ``--no-cache`` retrains),
with the training time recorded when they were trained. The unlearned model comes from
:func:`gnn.unlearn.lightgcn.unlearn_lightgcn` / :func:`gnn.unlearn.nbfnet.unlearn_nbfnet`,
timed end to end
(setup included). All three are evaluated here: utility (LightGCN: Recall@20 over the test
items of retained users, retained training items masked; Planetoid: test-split AUROC) and
deleted-edge AUROC against non-edges of the same sources (:mod:`gnn.unlearn.eval`). Prints a
table and one JSON line: ``utility_ratio`` (unlearned / retrained), ``deleted_auroc``,
``retrain_deleted_auroc``, ``original_deleted_auroc``, ``seconds`` (unlearning),
``retrain_seconds``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gnn.data.kg import cora_link_split, homogeneous_graph, load_planetoid_edges
from gnn.data.lightgcn_files import load_lightgcn_file
from gnn.engine.device import select_device
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
from gnn.unlearn.lightgcn import lightgcn_deletion, unlearn_lightgcn
from gnn.unlearn.nbfnet import unlearn_nbfnet


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.unlearn", description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--planetoid", help="folder with the ind.NAME.* Planetoid files")
    src.add_argument("--train", help="LightGCN-format training file")
    p.add_argument("--name", help="Planetoid dataset name (cora, citeseer, pubmed)")
    p.add_argument("--test", help="LightGCN-format test file")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--delete-edges", type=float, help="fraction of training edges to forget")
    what.add_argument("--delete-users", type=float, help="fraction of users to forget (LightGCN)")
    p.add_argument(
        "--budget-minutes",
        type=float,
        default=6.0,
        help="training budget of the original and of the retrained model, each",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="train original and retrained for exactly N epochs instead (no time "
        "budget: equal work for both under a varying load)",
    )
    p.add_argument("--device", default="cpu", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (0: default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=".cache/unlearn")
    p.add_argument("--no-cache", action="store_true", help="train original and retrained anew")
    u = p.add_argument_group("unlearning (gnn.unlearn.d2dgn.UnlearnConfig)")
    u.add_argument("--alpha", type=float, default=None)
    u.add_argument("--beta", type=float, default=None)
    u.add_argument("--temperature", type=float, default=None)
    u.add_argument("--unlearn-steps", type=int, default=None)
    u.add_argument("--unlearn-lr", type=float, default=None)
    u.add_argument("--unlearn-batch", type=int, default=None)
    u.add_argument("--unlearn-deleted-batch", type=int, default=None)
    n = p.add_argument_group("NBFNet (Planetoid)")
    n.add_argument("--layers", type=int, default=6)
    n.add_argument("--dim", type=int, default=32)
    n.add_argument("--aggregate", default="pna", choices=("sum", "mean", "max", "pna"))
    n.add_argument("--batch-size", type=int, default=16)
    n.add_argument(
        "--train-steps",
        type=int,
        default=0,
        help="train original and retrained for exactly N steps (0: budget/epochs)",
    )
    n.add_argument("--eval-batch-size", type=int, default=64)
    p.add_argument("--json", action="store_true", help="end with the JSON line (always printed)")
    args = p.parse_args(argv)
    if args.planetoid and not args.name:
        p.error("--planetoid needs --name")
    if args.train and not args.test:
        p.error("--train needs --test")
    if args.planetoid and args.delete_users is not None:
        p.error("--delete-users is for user-item data (--train/--test)")
    return args


def _log(*parts: Any) -> None:
    print(*parts, flush=True)


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
    return base.replace(seed=args.seed, **{k: v for k, v in over.items() if v is not None})


def _file_key(*paths: str) -> str:
    parts = []
    for path in paths:
        st = os.stat(path)
        parts.append(f"{os.path.abspath(path)}:{st.st_size}:{int(st.st_mtime)}")
    return "|".join(parts)


def _cached(args: argparse.Namespace, key: str, train: Any) -> tuple[Any, bool]:
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


# --------------------------------------------------------------------------- LightGCN


def run_lightgcn(args: argparse.Namespace, dev: torch.device) -> dict[str, Any]:
    tr_u, tr_i = load_lightgcn_file(args.train)
    te_u, te_i = load_lightgcn_file(args.test)
    nu = int(max(tr_u.max(), te_u.max())) + 1
    ni = int(max(tr_i.max(), te_i.max())) + 1
    cfg = LightGCNTrainConfig.cpu_recipe(
        time_budget_seconds=60.0 * args.budget_minutes, seed=args.seed, threads=args.threads
    )
    if args.epochs:
        cfg = cfg.replace(epochs=args.epochs, time_budget_seconds=0.0)
    if args.delete_users is not None:
        gone = sample_deleted_users(tr_u, args.delete_users, seed=args.seed)
        deletion = lightgcn_deletion(tr_u, tr_i, users_to_delete=gone)
        request = f"users:{args.delete_users}"
    else:
        picked = sample_deleted_edges(len(tr_u), args.delete_edges, seed=args.seed)
        deletion = lightgcn_deletion(tr_u, tr_i, edges=picked)
        request = f"edges:{args.delete_edges}"
    keep = deletion.keep
    _log(
        f"[bench] {nu} users, {ni} items, {len(tr_u)} train / {len(te_u)} test interactions; "
        f"deleting {deletion.num_deleted} interactions, {len(deletion.deleted_users)} users; "
        f"recipe {cfg}"
    )
    base = _file_key(args.train, args.test) + "|" + repr(cfg) + f"|{dev.type}"

    def train(users: np.ndarray, items: np.ndarray) -> dict[str, Any]:
        res = fit_lightgcn(users, items, nu, ni, cfg, device=dev, log=_log)
        return {"ego": res.ego_emb, "seconds": res.seconds, "epochs": res.epochs}

    original, hit_o = _cached(args, "lightgcn-original|" + base, lambda: train(tr_u, tr_i))
    _log(
        f"[bench] original: {original['epochs']} epochs, {original['seconds']:.1f}s"
        + (" (cache)" if hit_o else "")
    )
    retrained, hit_r = _cached(
        args,
        f"lightgcn-retrain|{request}|seed{args.seed}|" + base,
        lambda: train(tr_u[keep], tr_i[keep]),
    )
    _log(
        f"[bench] retrained: {retrained['epochs']} epochs, {retrained['seconds']:.1f}s"
        + (" (cache)" if hit_r else "")
    )

    ucfg = _unlearn_config(
        args,
        UnlearnConfig(
            alpha=0.5,
            steps=15,
            lr=5e-3,
            batch_size=65536,
            deleted_batch_size=8192,
            threads=args.threads,
        ),
    )
    _log(f"[bench] unlearning: {ucfg}")
    un = unlearn_lightgcn(
        original["ego"],
        tr_u,
        tr_i,
        nu,
        ni,
        deletion,
        ucfg,
        layers=cfg.layers,
        init_std=cfg.init_std,
        device=dev,
        log=_log,
    )

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
    test_keep = ~np.isin(te_u, deletion.deleted_users)
    evaluator = RankingEvaluator(
        tr_u[keep],
        tr_i[keep],
        te_u[test_keep],
        te_i[test_keep],
        num_users=nu,
        num_items=ni,
        k=20,
        device=dev,
    )
    known_u, known_i = np.concatenate([tr_u, te_u]), np.concatenate([tr_i, te_i])
    rows = {}
    for name, e in emb.items():
        u_e, i_e = e[:nu], e[nu:]
        rows[name] = {
            "utility": evaluator.evaluate(u_e, i_e)["recall@20"],
            "deleted_auroc": deleted_auroc_lightgcn(
                u_e, i_e, tr_u[~keep], tr_i[~keep], known_u, known_i, seed=args.seed
            ),
        }
    _log(f"[bench] evaluation {time.perf_counter() - t_eval:.1f}s")
    return _summary(
        rows,
        "Recall@20 (retained users)",
        un.seconds,
        retrained["seconds"],
        original["seconds"],
        un.steps,
    )


# --------------------------------------------------------------------------- Planetoid / NBFNet


def _link_triples(pairs: torch.Tensor) -> torch.Tensor:
    return torch.stack([pairs[:, 0], torch.zeros_like(pairs[:, 0]), pairs[:, 1]], dim=1)


def run_planetoid(args: argparse.Namespace, dev: torch.device) -> dict[str, Any]:
    edges, n = load_planetoid_edges(args.planetoid, args.name)
    split = cora_link_split(edges, n, seed=args.seed)
    cfg = NBFNetTrainConfig(
        task="link",
        dependent=False,
        epochs=args.epochs or 1000,
        num_negative=8,
        max_steps=args.train_steps,
        adversarial_temperature=0.0,
        batch_size=args.batch_size,
        negative_sources=1.0,
        dim=args.dim,
        layers=args.layers,
        aggregate=args.aggregate,
        seed=args.seed,
        time_budget_seconds=(
            0.0 if args.epochs or args.train_steps else 60.0 * args.budget_minutes
        ),
        log_every=100,
        threads=args.threads,
    )
    picked = sample_deleted_edges(len(split.train), args.delete_edges, seed=args.seed)
    mask = torch.zeros(len(split.train), dtype=torch.bool)
    mask[torch.as_tensor(picked)] = True
    triples = _link_triples(split.train)
    graph = homogeneous_graph(split.train, n)
    graph_r = homogeneous_graph(split.train[~mask], n)
    known = homogeneous_graph(edges, n)
    _log(
        f"[bench] {args.name}: {n} nodes, {len(split.train)} train edges, deleting "
        f"{int(mask.sum())}; recipe {cfg}"
    )
    base = _file_key(str(Path(args.planetoid) / f"ind.{args.name}.graph")) + f"|{cfg!r}|{dev.type}"

    def train(g: Any) -> dict[str, Any]:
        res = fit_nbfnet(g, cfg, device=dev, log=_log)
        return {"state": res.state_dict, "seconds": res.seconds, "steps": res.steps}

    original, hit_o = _cached(args, "nbfnet-original|" + base, lambda: train(graph))
    _log(
        f"[bench] original: {original['steps']} steps, {original['seconds']:.1f}s"
        + (" (cache)" if hit_o else "")
    )
    retrained, hit_r = _cached(
        args,
        f"nbfnet-retrain|edges:{args.delete_edges}|seed{args.seed}|" + base,
        lambda: train(graph_r),
    )
    _log(
        f"[bench] retrained: {retrained['steps']} steps, {retrained['seconds']:.1f}s"
        + (" (cache)" if hit_r else "")
    )

    def load(state: dict[str, torch.Tensor]) -> Any:
        model = build_model(1, cfg)
        model.load_state_dict(state)
        return model.to(dev).eval()

    teacher = load(original["state"])
    ucfg = _unlearn_config(
        args,
        UnlearnConfig(
            alpha=0.5,
            steps=10,
            lr=1e-3,
            batch_size=8,
            deleted_batch_size=8,
            num_negative=8,
            threads=args.threads,
        ),
    )
    _log(f"[bench] unlearning: {ucfg}")
    un = unlearn_nbfnet(
        teacher,
        graph,
        triples,
        mask,
        ucfg,
        task="link",
        device=dev,
        make_model=lambda: build_model(1, cfg),
        log=_log,
    )

    t_eval = time.perf_counter()
    models = {
        "original": (teacher, graph.to(dev)),
        "retrained": (load(retrained["state"]), graph_r.to(dev)),
        "unlearned": (un.model, un.graph),
    }
    rows = {}
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
    return _summary(
        rows, "test AUROC", un.seconds, retrained["seconds"], original["seconds"], un.steps
    )


# --------------------------------------------------------------------------- output


def _summary(
    rows: dict[str, dict[str, float]],
    utility_name: str,
    seconds: float,
    retrain_seconds: float,
    original_seconds: float,
    steps: int,
) -> dict[str, Any]:
    times = {"original": original_seconds, "retrained": retrain_seconds, "unlearned": seconds}
    print(f"\n| model | {utility_name} | deleted-edge AUROC | train / unlearn s |")
    print("|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['utility']:.4f} | {r['deleted_auroc']:.4f} | {times[name]:.1f} |")
    ratio = rows["unlearned"]["utility"] / rows["retrained"]["utility"]
    gap = rows["unlearned"]["deleted_auroc"] - rows["retrained"]["deleted_auroc"]
    print(
        f"\nutility ratio {ratio:.4f} (target >= 0.98); deleted AUROC gap to retrained "
        f"{gap:+.4f} (target |gap| <= 0.02, and below original "
        f"{rows['original']['deleted_auroc']:.4f}); time ratio {seconds / retrain_seconds:.3f} "
        f"(target <= 0.1); {steps} unlearning steps\n",
        flush=True,
    )
    return {
        "utility_ratio": ratio,
        "deleted_auroc": rows["unlearned"]["deleted_auroc"],
        "retrain_deleted_auroc": rows["retrained"]["deleted_auroc"],
        "original_deleted_auroc": rows["original"]["deleted_auroc"],
        "seconds": seconds,
        "retrain_seconds": retrain_seconds,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dev = select_device(args.device)
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        out = run_planetoid(args, dev) if args.planetoid else run_lightgcn(args, dev)
    finally:
        torch.set_num_threads(threads)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
