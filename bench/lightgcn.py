"""LightGCN benchmark: Recall@20 / NDCG@20 on a LightGCN-format split, epoch time vs PyG.

Examples::

    # CPU recipe (batch 65536, lr 0.02 cosine-annealed), 30 minutes of training
    nice -n 10 python -m bench.lightgcn --train ../shared/data/gowalla/train.txt \
        --test ../shared/data/gowalla/test.txt --device cpu --threads 1 \
        --budget-minutes 30 --json

    # PyG epoch time through the same loop, measured in the same run
    python -m bench.lightgcn --train ... --test ... --device cpu --epochs 3 --eval-every 0 \
        --compare-pyg --json

    # the paper's settings on a GPU (CUDA-graph-replayed steps) for 5 minutes of training
    python -m bench.lightgcn --train data/gowalla/train.txt --test data/gowalla/test.txt \
        --paper-settings --device cuda --budget-minutes 5 --eval-every 10 --json

Without ``--paper-settings`` the CPU recipe (:meth:`LightGCNTrainConfig.cpu_recipe`) is the
base; explicit flags override either preset. The time budget counts training only (evaluation
excluded). Prints progress lines, a table, and one final JSON line with ``recall@K``,
``ndcg@K``, ``epochs``, ``seconds``, ``epoch_seconds`` (median) and ``pyg_epoch_seconds``,
``epoch_time_ratio`` (null without ``--compare-pyg``). Needs only torch and numpy, plus
torch_geometric for ``--compare-pyg``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from typing import Any

import numpy as np
import torch

from bench.lightgcn_files import load_lightgcn_file
from gnn.data.sampling import Interactions
from gnn.engine.bpr import train_bpr
from gnn.engine.device import select_device, torch_threads
from gnn.engine.lightgcn import LightGCNTrainConfig, fit_lightgcn


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.lightgcn", description=__doc__.split("\n")[0])
    p.add_argument("--train", required=True, help="LightGCN-format training file")
    p.add_argument("--test", required=True, help="LightGCN-format test file")
    p.add_argument(
        "--paper-settings",
        action="store_true",
        help="dim 64, 3 layers, Adam lr 0.001, batch 2048, reg 1e-4 (default: CPU recipe)",
    )
    p.add_argument(
        "--epochs", type=int, default=None, help="maximum epochs (paper: 1000, CPU recipe: 150)"
    )
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--reg", type=float, default=None)
    p.add_argument("--layers", type=int, default=None)
    p.add_argument("--dim", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sampling", choices=("user", "edge"), default=None)
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default=None)
    p.add_argument("--lr-min-ratio", type=float, default=None)
    p.add_argument(
        "--budget-minutes",
        type=float,
        default=0.0,
        help="stop after this much training time, evaluation excluded (0: none)",
    )
    p.add_argument("--eval-every", type=int, default=10, help="evaluate every N epochs")
    p.add_argument("--eval-batch-size", type=int, default=2048)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (0: torch default)")
    p.add_argument(
        "--compare-pyg",
        action="store_true",
        help="also time torch_geometric's LightGCN through the same loop",
    )
    p.add_argument("--pyg-epochs", type=int, default=2, help="epochs timed for PyG")
    p.add_argument(
        "--no-cuda-graphs", action="store_true", help="eager steps on CUDA (no graph capture)"
    )
    p.add_argument("--json", action="store_true", help="end with the JSON line (always printed)")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> LightGCNTrainConfig:
    """Preset (paper or CPU recipe), then any flag given explicitly."""
    overrides: dict[str, Any] = {
        "seed": args.seed,
        "time_budget_seconds": args.budget_minutes * 60.0,
        "eval_every": args.eval_every,
        "eval_batch_size": args.eval_batch_size,
        "k": args.k,
        "threads": args.threads,
        "cuda_graphs": not args.no_cuda_graphs,
    }
    for name in (
        "epochs",
        "batch_size",
        "lr",
        "reg",
        "layers",
        "dim",
        "sampling",
        "lr_schedule",
        "lr_min_ratio",
    ):
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    preset = LightGCNTrainConfig.paper if args.paper_settings else LightGCNTrainConfig.cpu_recipe
    return preset(**overrides)


def pyg_epoch_seconds(
    users: np.ndarray,
    items: np.ndarray,
    num_users: int,
    num_items: int,
    cfg: LightGCNTrainConfig,
    device: torch.device,
    epochs: int,
) -> list[float]:
    """Epoch times of ``torch_geometric.nn.models.LightGCN`` through :func:`train_bpr`.

    The loop of :func:`fit_lightgcn` (same sampler, batch size, BPR + L2 loss and Adam),
    without time budget or evaluation; PyG propagates over the bidirectional ``edge_index``
    (its documented use), normalising inside ``LGConv``.
    """
    from torch_geometric.nn.models import LightGCN as PygLightGCN

    torch.manual_seed(cfg.seed)
    model = PygLightGCN(num_users + num_items, cfg.dim, cfg.layers).to(device)
    u = torch.as_tensor(users, device=device)
    i = torch.as_tensor(items, device=device) + num_users
    edge_index = torch.stack([torch.cat([u, i]), torch.cat([i, u])])

    def forward() -> tuple[torch.Tensor, torch.Tensor]:
        return model.get_embedding(edge_index), model.embedding.weight

    run = train_bpr(
        forward,
        model.parameters(),
        Interactions(users, items, num_users, num_items),
        cfg.replace(time_budget_seconds=None),
        device,
        log=lambda line: print(f"pyg {line}", flush=True),
        epochs=epochs,
    )
    return [record.seconds for record in run.records]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = build_config(args)
    device = select_device(args.device)
    with torch_threads(cfg.threads if device.type == "cpu" else 0):
        return run(args, cfg, device)


def run(args: argparse.Namespace, cfg: LightGCNTrainConfig, device: torch.device) -> int:
    """Train, evaluate, optionally time PyG, print the table and the JSON line."""
    train_u, train_i = load_lightgcn_file(args.train)
    test_u, test_i = load_lightgcn_file(args.test)
    num_users = int(max(train_u.max(), test_u.max())) + 1
    num_items = int(max(train_i.max(), test_i.max())) + 1
    print(f"config: {cfg}", flush=True)
    print(
        f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}", flush=True
    )

    result = fit_lightgcn(
        train_u,
        train_i,
        num_users,
        num_items,
        cfg,
        device=device,
        test_users=test_u,
        test_items=test_i,
        log=lambda *a: print(*a, flush=True),
    )
    ours = statistics.median(result.epoch_seconds) if result.epoch_seconds else None

    pyg = None
    if args.compare_pyg:
        pyg_times = pyg_epoch_seconds(
            train_u, train_i, num_users, num_items, cfg, device, args.pyg_epochs
        )
        pyg = statistics.median(pyg_times) if pyg_times else None

    k = cfg.k
    final = result.history[-1] if result.history else {}
    best = max(result.history, key=lambda r: r[f"recall@{k}"]) if result.history else {}
    rows = [("epoch", "train s", f"recall@{k}", f"ndcg@{k}")]
    rows += [
        (
            f"{r['epoch']:.0f}",
            f"{r['seconds']:.1f}",
            f"{r[f'recall@{k}']:.4f}",
            f"{r[f'ndcg@{k}']:.4f}",
        )
        for r in result.history
    ]
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    print()
    for n, row in enumerate(rows):
        print("| " + " | ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) + " |")
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print(
        f"\nbest recall@{k} {best.get(f'recall@{k}', float('nan')):.4f} at epoch "
        f"{best.get('epoch', 0):.0f}; final {final.get(f'recall@{k}', float('nan')):.4f}"
    )
    print(
        f"median epoch {ours if ours is not None else float('nan'):.3f}s (ours)"
        + (f", {pyg:.3f}s (PyG), ratio {ours / pyg:.3f}" if pyg and ours else "")
    )
    summary = {
        f"recall@{k}": final.get(f"recall@{k}"),
        f"ndcg@{k}": final.get(f"ndcg@{k}"),
        "epochs": result.epochs,
        "seconds": round(result.seconds, 2),
        "epoch_seconds": round(ours, 4) if ours is not None else None,
        "pyg_epoch_seconds": round(pyg, 4) if pyg is not None else None,
        "epoch_time_ratio": round(ours / pyg, 4) if (pyg and ours) else None,
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
