"""NBFNet kernel check and training-throughput sweep (``bench.nbfnet --check``, ``--sweep``)."""

from __future__ import annotations

import time

import torch

from gnn.engine.nbfnet import NBFNetTrainConfig, NegativeSampler, build_model, nbfnet_loss
from gnn.layers.relational_aggregate import GraphIndex, relational_aggregate
from gnn.models.nbfnet import remove_easy_edges


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


def choose_backend(dev: torch.device, backend: str, check: bool, no_check: bool) -> str:
    """``backend``, or ``torch`` when the kernel check (``--check``, always on CUDA unless
    ``--no-check``) finds the fused kernels off by more than 1e-4 or raising."""
    if not (check or dev.type == "cuda") or no_check:
        return backend
    try:
        worst = check_kernels(dev)
    except Exception as exc:  # noqa: BLE001 - any kernel failure means: use the fallback
        print(f"[check] kernels raised {type(exc).__name__}: {exc}", flush=True)
        worst = float("inf")
    if worst > 1e-4 and backend in ("auto", "triton"):
        print(f"[check] FAILED ({worst:.2e}); using the chunked torch backend", flush=True)
        return "torch"
    return backend
