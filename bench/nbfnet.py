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
import json
import time
from typing import Any

import torch

from gnn.data.kg import (
    cora_link_split,
    homogeneous_graph,
    kg_graph,
    load_planetoid_edges,
    load_triples_dir,
)
from gnn.engine.device import select_device
from gnn.engine.nbfnet import (
    NBFNetTrainConfig,
    NegativeSampler,
    build_model,
    evaluate_kg,
    evaluate_link_auc,
    fit_nbfnet,
    nbfnet_loss,
)
from gnn.layers.relational_aggregate import GraphIndex, relational_aggregate
from gnn.models.nbfnet import remove_easy_edges


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.nbfnet", description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--planetoid",
        metavar="DIR",
        help="folder with Planetoid ind.NAME.* files (link prediction, AUROC/AP)",
    )
    src.add_argument(
        "--triples",
        metavar="DIR",
        help="folder with train.txt, valid.txt, test.txt triples (filtered ranking)",
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
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--num-negative", type=int, default=None)
    p.add_argument(
        "--negative-sources",
        type=float,
        default=1.0,
        help="Cora: all-negative queries from random sources per positive query",
    )
    p.add_argument(
        "--symmetric",
        action="store_true",
        help="link task: the reference's Cora training (pairs scored in both "
        "directions, 1 random non-edge pair per positive unless --num-negative)",
    )
    p.add_argument("--aggregate", default="pna", choices=("sum", "mean", "max", "pna"))
    p.add_argument("--message", default="distmult", choices=("distmult", "transe", "rotate"))
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--eval-batch-size", type=int, default=None)
    p.add_argument("--backend", default="auto", choices=("auto", "naive", "torch", "triton"))
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (0: torch default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument(
        "--check",
        action="store_true",
        help="compare the fused kernels with the autograd reference first "
        "(always done on CUDA unless --no-check)",
    )
    p.add_argument("--no-check", action="store_true", help="skip the CUDA kernel check")
    p.add_argument("--sweep", default="", help="comma-separated batch sizes to time, then exit")
    p.add_argument("--json", action="store_true", help="end with the JSON line (always printed)")
    return p.parse_args(argv)


def _config(args: argparse.Namespace, dev: torch.device) -> NBFNetTrainConfig:
    gpu = dev.type == "cuda"
    if args.dataset != "fb15k-237":
        base: dict[str, Any] = dict(
            task="link",
            dependent=False,
            epochs=2,
            num_negative=8,
            adversarial_temperature=0.0,
            batch_size=64 if gpu else 16,
            negative_sources=args.negative_sources,
        )
        if args.symmetric:
            base.update(symmetric=True, num_negative=1, negative_sources=0.0)
    else:
        base = dict(
            task="kg",
            dependent=True,
            epochs=20,
            num_negative=32,
            adversarial_temperature=0.5,
            batch_size=64 if gpu else 4,
        )
    for key in ("epochs", "batch_size", "lr", "num_negative"):
        if getattr(args, key) is not None:
            base[key] = getattr(args, key)
    return NBFNetTrainConfig(
        **base,
        dim=args.dim,
        layers=args.layers,
        aggregate=args.aggregate,
        message=args.message,
        seed=args.seed,
        time_budget_seconds=60.0 * args.budget_minutes,
        log_every=args.log_every,
        backend=args.backend,
    )


def check_kernels(dev: torch.device) -> float:
    """Max abs difference of fused vs autograd aggregation (values and gradients)."""
    gen = torch.Generator().manual_seed(0)
    n, r, e, c = 300, 7, 4000, 96
    ei = torch.randint(0, n, (2, e), generator=gen)
    et = torch.randint(0, r, (e,), generator=gen)
    keep = torch.rand(e, generator=gen) > 0.2
    idx = GraphIndex.build(ei.to(dev), et.to(dev), n, r)
    view = idx.view(keep.to(dev))
    worst = 0.0
    for kind in ("distmult", "transe"):
        res = {}
        for backend in ("naive", "triton" if dev.type == "cuda" else "torch"):
            x = torch.randn(n, c, generator=gen.manual_seed(1)).to(dev).requires_grad_()
            w = torch.randn(r, c, generator=gen.manual_seed(2)).to(dev).requires_grad_()
            agg = relational_aggregate(
                x, w, idx, view, kind=kind, dim=32, with_sq=True, with_minmax=True, backend=backend
            )
            out = [torch.nan_to_num(o, posinf=0.0, neginf=0.0) for o in agg if o is not None]
            coef = torch.randn(4, n, c, generator=gen.manual_seed(3)).to(dev)
            loss = torch.stack([(o * k).sum() for o, k in zip(out, coef, strict=True)]).sum()
            loss.backward()
            assert x.grad is not None and w.grad is not None
            res[backend] = [o.detach() for o in out] + [x.grad, w.grad]
        a, b = res.values()
        err = max(
            float((u - v).abs().max() / (1.0 + u.abs().max())) for u, v in zip(a, b, strict=True)
        )
        print(f"[check] {kind}: max relative difference {err:.2e}", flush=True)
        worst = max(worst, err)
    return worst


def sweep(graph, triples, cfg: NBFNetTrainConfig, sizes: list[int], dev: torch.device) -> None:
    """Training and inference queries/s for a few batch sizes."""
    g = graph.to(dev)
    sampler = NegativeSampler(graph)
    num_rel = graph.num_relations // 2
    gen = torch.Generator().manual_seed(0)
    for b in sizes:
        model = build_model(graph.num_relations, cfg).to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        times = []
        for i in range(6):
            trip = triples[torch.randint(len(triples), (b,), generator=gen)]
            src, rel, ans = trip[:, 0], trip[:, 1], trip[:, 2]
            neg = sampler.sample(src, rel, ans, cfg.num_negative, generator=gen)
            cand = torch.cat([ans.unsqueeze(1), neg], 1).to(dev)
            src, rel = src.to(dev), rel.to(dev)
            _sync(dev)
            t0 = time.perf_counter()
            keep = remove_easy_edges(g, src.unsqueeze(1).expand_as(cand), cand)
            loss = nbfnet_loss(model(g, src, cand, rel, keep=keep), cfg.adversarial_temperature)
            opt.zero_grad()
            loss.backward()
            opt.step()
            _sync(dev)
            if i >= 2:
                times.append(time.perf_counter() - t0)
        mem = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else 0.0
        step = sum(times) / len(times)
        with torch.no_grad():
            model.eval()
            _sync(dev)
            t0 = time.perf_counter()
            for _ in range(3):
                model.score_all(g, src[:b], (rel[:b] + num_rel) % graph.num_relations)
            _sync(dev)
            inf = (time.perf_counter() - t0) / 3
        print(
            f"[sweep] batch {b}: train {step:.3f}s/step = {b / step:.1f} queries/s; "
            f"inference {b / inf:.1f} queries/s; peak memory {mem:.1f} GiB",
            flush=True,
        )
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def run_kg(args: argparse.Namespace, dev: torch.device) -> dict[str, Any]:
    t_load = time.perf_counter()
    ds = load_triples_dir(args.triples)
    graph = kg_graph(ds.train, ds.num_entities, ds.num_relations)
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
    test = ds.test[torch.randperm(len(ds.test), generator=torch.Generator().manual_seed(0))]
    every = torch.cat([ds.train, ds.valid, ds.test])
    ebs = args.eval_batch_size or (64 if dev.type == "cuda" else 8)
    print(
        f"[bench] trained {result.steps} steps, {result.queries} queries in "
        f"{result.seconds:.1f}s; ranking test queries ...",
        flush=True,
    )
    m = evaluate_kg(
        result.model,
        graph.to(dev),
        test,
        filter_triples=every,
        batch_size=ebs,
        device=dev,
        time_budget_seconds=60.0 * args.eval_minutes,
    )
    return {
        "dataset": args.dataset,
        "mrr": m["mrr"],
        "hits@1": m["hits@1"],
        "hits@3": m["hits@3"],
        "hits@10": m["hits@10"],
        "train_seconds": result.seconds,
        "inference_qps": m["qps"],
        "queries_per_second": m["qps"],
        "test_queries": int(m["queries"]),
        "train_queries": result.queries,
        "steps": result.steps,
        "device": str(dev),
        "batch_size": cfg.batch_size,
        "final_loss": sum(result.losses[-50:]) / max(1, len(result.losses[-50:])),
    }


def run_cora(args: argparse.Namespace, dev: torch.device) -> dict[str, Any]:
    edges, n = load_planetoid_edges(args.planetoid, args.name)
    split = cora_link_split(edges, n, seed=args.seed)
    graph = homogeneous_graph(split.train, n)
    cfg = _config(args, dev)
    ebs = args.eval_batch_size or 64
    print(
        f"[bench] Cora: {n} nodes, train/valid/test edges {len(split.train)}/"
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
    return {
        "dataset": args.dataset,
        "auroc": m["auroc"],
        "ap": m["ap"],
        "train_seconds": result.seconds,
        "inference_qps": m["qps"],
        "queries_per_second": m["qps"],
        "train_queries": result.queries,
        "steps": result.steps,
        "device": str(dev),
        "batch_size": cfg.batch_size,
        "valid": [{k: round(v, 4) for k, v in h.items()} for h in result.history],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dataset == "fb15k-237":
        args.triples = f"{args.data_dir}/fb15k-237"
    elif args.dataset == "cora":
        args.planetoid, args.name = f"{args.data_dir}/cora", "cora"
    args.dataset = "fb15k-237" if args.triples else args.name
    if args.sweep and args.dataset != "fb15k-237":
        raise SystemExit("--sweep is implemented for --dataset fb15k-237 only")
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = select_device(args.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        print(f"[bench] {torch.cuda.get_device_name(dev)}, torch {torch.__version__}", flush=True)
    if (args.check or dev.type == "cuda") and not args.no_check:
        try:
            worst = check_kernels(dev)
        except Exception as exc:  # noqa: BLE001 - any kernel failure means: use the fallback
            print(f"[check] kernels raised {type(exc).__name__}: {exc}", flush=True)
            worst = float("inf")
        if worst > 1e-4 and args.backend in ("auto", "triton"):
            print(f"[check] FAILED ({worst:.2e}); using the chunked torch backend", flush=True)
            args.backend = "torch"
    t0 = time.perf_counter()
    out = run_kg(args, dev) if args.dataset == "fb15k-237" else run_cora(args, dev)
    if not out:
        return 0
    print("\n| metric | value |\n|---|---|")
    for k, v in out.items():
        if k != "valid":
            print(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |")
    print(f"(total wall time {time.perf_counter() - t0:.1f}s)\n", flush=True)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
