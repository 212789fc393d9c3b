"""NBFNet benchmark: filtered MRR on a triples folder, AUROC / AP on a Planetoid graph.

    python -m bench.nbfnet (--planetoid DIR --name NAME | --triples DIR) [--budget-minutes N]
        [--device cpu|cuda] --json

Planetoid graphs get an 85/5/10 edge split; ``--dataset cora|fb15k-237`` is a shorthand for the
bundled data under ``--data-dir``. Examples::

    # GPU: train for 8 minutes, then filtered ranking on the test set (time-capped, see below)
    python -m bench.nbfnet --dataset fb15k-237 --device cuda --budget-minutes 8 --json

    # CPU: Cora with the paper's model (6 layers x 32, PNA), 2 epochs, 1 thread
    nice -n 10 python -m bench.nbfnet --dataset cora --device cpu --epochs 2 --threads 1 --json

    # kernel check (Triton vs autograd reference) and a training-throughput sweep
    python -m bench.nbfnet --dataset fb15k-237 --device cuda --check --sweep 32,64,128

Prints progress lines with elapsed time, a table, and one final JSON line: for knowledge graphs
``dataset, mrr, hits@1, hits@3, hits@10, train_seconds, queries_per_second``; for Planetoid
``dataset, auroc, ap, train_seconds, queries_per_second`` (plus a few descriptive keys).
Test ranking runs over shuffled test triples until ``--eval-minutes`` is spent
(``--eval-minutes 0``: the full test set); ``test_queries`` reports how many queries were
ranked. Needs only torch (and Triton on CUDA, which ships with torch).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from bench.common import (
    add_graph_source,
    add_json_flag,
    add_nbfnet_args,
    markdown_table,
    parser,
    print_json,
)
from bench.nbfnet_kernels import choose_backend, sweep
from bench.nbfnet_setup import kg_data, link_data, task_preset, train_config
from gnn.engine.device import select_device
from gnn.engine.nbfnet import NBFNetTrainConfig, evaluate_kg, evaluate_link_auc, fit_nbfnet


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser("python -m bench.nbfnet", __doc__)
    src = add_graph_source(
        p,
        "folder with Planetoid ind.NAME.* files (link prediction, AUROC/AP)",
        "folder with train.txt, valid.txt, test.txt triples (filtered ranking)",
    )
    src.add_argument(
        "--dataset",
        choices=("cora", "fb15k-237"),
        help="shorthand for the bundled data under --data-dir",
    )
    p.add_argument("--name", default="cora", help="Planetoid name (cora, citeseer, pubmed)")
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--budget-minutes", type=float, default=0.0, help="training time cap (0: none)")
    p.add_argument(
        "--eval-minutes",
        type=float,
        default=1.0,
        help="KG test-ranking time cap (0: the full test set)",
    )
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    add_nbfnet_args(
        p, negatives_help="Cora: all-negative queries from random sources per positive query"
    )
    p.add_argument(
        "--symmetric",
        action="store_true",
        help="link task: the reference's Cora training (pairs scored in both "
        "directions, 1 random non-edge pair per positive unless --num-negative)",
    )
    p.add_argument("--aggregate", default="pna", choices=("sum", "mean", "max", "pna"))
    p.add_argument("--message", default="distmult", choices=("distmult", "transe", "rotate"))
    p.add_argument("--backend", default="auto", choices=("auto", "naive", "torch", "triton"))
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (0: torch default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--check",
        action="store_true",
        help="compare the fused kernels with the autograd reference first "
        "(always done on CUDA unless --no-check)",
    )
    p.add_argument("--no-check", action="store_true", help="skip the CUDA kernel check")
    p.add_argument("--sweep", default="", help="comma-separated batch sizes to time, then exit")
    add_json_flag(p)
    return p.parse_args(argv)


def _config(args: argparse.Namespace, dev: torch.device) -> NBFNetTrainConfig:
    kg = args.dataset == "fb15k-237"
    base = {**task_preset(kg, dev.type == "cuda", args.negative_sources), "epochs": 20 if kg else 2}
    if args.symmetric and not kg:
        base.update(symmetric=True, num_negative=1, negative_sources=0.0)
    overrides = ("epochs", "batch_size", "lr", "num_negative")
    extra = {"aggregate": args.aggregate, "message": args.message, "backend": args.backend}
    return train_config(args, base, overrides, **extra)


def run_kg(args: argparse.Namespace, dev: torch.device) -> dict[str, Any]:
    t_load = time.perf_counter()
    data = kg_data(args.triples, seed=0)
    ds, graph = data.ds, data.graph
    cfg = _config(args, dev)
    print(
        f"[bench] FB15k-237: {ds.num_entities} entities, {graph.num_edges} edges with inverses, "
        f"loaded in {time.perf_counter() - t_load:.1f}s; {cfg}",
        flush=True,
    )
    if args.sweep:
        sweep(graph, ds.train, cfg, [int(s) for s in args.sweep.split(",")], dev)
        return {}
    result = fit_nbfnet(graph, cfg, device=dev, train_triples=ds.train)
    ebs = args.eval_batch_size or (64 if dev.type == "cuda" else 8)
    print(
        f"[bench] trained {result.steps} steps, {result.queries} queries in "
        f"{result.seconds:.1f}s; ranking test queries ...",
        flush=True,
    )
    m = evaluate_kg(
        result.model,
        graph.to(dev),
        data.test,
        filter_triples=data.every,
        batch_size=ebs,
        device=dev,
        time_budget_seconds=60.0 * args.eval_minutes,
    )
    out = {"dataset": args.dataset, **{k: m[k] for k in ("mrr", "hits@1", "hits@3", "hits@10")}}
    out.update(_common(result, m, dev, cfg, test_queries=int(m["queries"])))
    out["final_loss"] = sum(result.losses[-50:]) / max(1, len(result.losses[-50:]))
    return out


def _common(result: Any, m: dict[str, float], dev: torch.device, cfg: NBFNetTrainConfig,
            **extra: Any) -> dict[str, Any]:  # fmt: skip
    """The JSON keys both tasks report after their metrics."""
    return {
        "train_seconds": result.seconds,
        "inference_qps": m["qps"],
        "queries_per_second": m["qps"],
        **extra,
        "train_queries": result.queries,
        "steps": result.steps,
        "device": str(dev),
        "batch_size": cfg.batch_size,
    }


def run_cora(args: argparse.Namespace, dev: torch.device) -> dict[str, Any]:
    link = link_data(args.planetoid, args.name, args.seed)
    split, graph = link.split, link.graph
    cfg = _config(args, dev)
    ebs = args.eval_batch_size or 64
    print(
        f"[bench] Cora: {link.num_nodes} nodes, train/valid/test edges {len(split.train)}/"
        f"{len(split.valid)}/{len(split.test)}; {cfg}",
        flush=True,
    )
    best: dict[str, Any] = {"auroc": -1.0}

    def on_epoch_end(model) -> dict[str, float]:
        m = evaluate_link_auc(
            model, graph, split.valid, split.valid_neg, batch_size=ebs, device=dev
        )
        if m["auroc"] > best["auroc"]:
            best.update(
                auroc=m["auroc"],
                state={k: v.detach().clone() for k, v in model.state_dict().items()},
            )
        return {"valid_auroc": m["auroc"], "valid_ap": m["ap"]}

    result = fit_nbfnet(graph, cfg, device=dev, on_epoch_end=on_epoch_end)
    model = result.model
    if "state" in best:
        model.load_state_dict(best["state"])
    m = evaluate_link_auc(model, graph, split.test, split.test_neg, batch_size=ebs, device=dev)
    out = {"dataset": args.dataset, "auroc": m["auroc"], "ap": m["ap"]}
    out.update(_common(result, m, dev, cfg))
    out["valid"] = [{k: round(v, 4) for k, v in h.items()} for h in result.history]
    return out


def _resolve_dataset(args: argparse.Namespace) -> None:
    """``--dataset`` -> the bundled folder; ``args.dataset`` names the data in every case."""
    if args.dataset == "fb15k-237":
        args.triples = f"{args.data_dir}/fb15k-237"
    elif args.dataset == "cora":
        args.planetoid, args.name = f"{args.data_dir}/cora", "cora"
    args.dataset = "fb15k-237" if args.triples else args.name
    if args.sweep and args.dataset != "fb15k-237":
        raise SystemExit("--sweep is implemented for --dataset fb15k-237 only")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _resolve_dataset(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = select_device(args.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        print(f"[bench] {torch.cuda.get_device_name(dev)}, torch {torch.__version__}", flush=True)
    args.backend = choose_backend(dev, args.backend, args.check, args.no_check)
    t0 = time.perf_counter()
    out = run_kg(args, dev) if args.dataset == "fb15k-237" else run_cora(args, dev)
    if not out:
        return 0
    print()
    markdown_table(
        ["metric", "value"],
        [(k, f"{v:.4f}" if isinstance(v, float) else v) for k, v in out.items() if k != "valid"],
    )
    print(f"(total wall time {time.perf_counter() - t0:.1f}s)\n", flush=True)
    print_json(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
