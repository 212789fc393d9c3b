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
import sys

import torch

from bench.common import add_json_flag, add_model_size, parser, print_json
from bench.unlearn_runs import run_lightgcn, run_planetoid
from gnn.engine.device import select_device


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser("python -m bench.unlearn", __doc__)
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
    add_model_size(n, dim=32, layers=6)
    n.add_argument("--aggregate", default="pna", choices=("sum", "mean", "max", "pna"))
    n.add_argument("--batch-size", type=int, default=16)
    n.add_argument(
        "--train-steps",
        type=int,
        default=0,
        help="train original and retrained for exactly N steps (0: budget/epochs)",
    )
    n.add_argument("--eval-batch-size", type=int, default=64)
    add_json_flag(p)
    args = p.parse_args(argv)
    if args.planetoid and not args.name:
        p.error("--planetoid needs --name")
    if args.train and not args.test:
        p.error("--train needs --test")
    if args.planetoid and args.delete_users is not None:
        p.error("--delete-users is for user-item data (--train/--test)")
    return args


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
    print_json(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
