"""Top-K for one user from an exported faiss index, in a process of its own (no Spark).

    python -m pipelines.serve.ann_query --run-dir runs/demo --user 42 --k 20 [--keep-seen] [--json]

Prints ``rank item_id score`` lines, or one JSON object with ``--json``. Exit code 2 for an
unknown user or a missing export.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pipelines.serve.ann import AnnIndex


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipelines.serve.ann_query", description=__doc__)
    p.add_argument("--run-dir", required=True, help="Run folder with a finished export stage.")
    p.add_argument("--user", required=True, help="Original user id.")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--keep-seen", action="store_true", help="Do not mask training items.")
    p.add_argument("--ef-search", type=int, default=None, help="HNSW efSearch override.")
    p.add_argument("--nprobe", type=int, default=None, help="IVF nprobe override.")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    export_dir = Path(args.run_dir) / "export"
    if not (export_dir / "ann").is_dir():
        print(f"error: no index under {export_dir / 'ann'}: run jobs.export first", file=sys.stderr)
        return 2
    index = AnnIndex.load(export_dir, ef_search=args.ef_search, nprobe=args.nprobe)
    try:
        top = index.recommend(args.user, args.k, mask_seen=not args.keep_seen)
    except KeyError:
        print(f"error: unknown user {args.user!r}", file=sys.stderr)
        return 2
    if args.json:
        items = [{"item_id": i, "score": s, "rank": r} for r, (i, s) in enumerate(top, 1)]
        print(json.dumps({"user_id": args.user, "index": index.kind, "items": items}))
    else:
        for rank, (item, score) in enumerate(top, 1):
            print(f"{rank:>3} {item:>12} {score:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
