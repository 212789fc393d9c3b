"""What the benchmarks share: argument groups, timing, peak memory, data loading and output.

Only the standard library is imported at module level (torch, numpy and pyspark inside the
functions that need them), so a machine with only torch (``bench/gpu_*.sh``) can run the
NBFNet benchmarks.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

if TYPE_CHECKING:
    import numpy as np
    from pyspark.sql import SparkSession

T = TypeVar("T")
JSON_HELP = "end with the JSON line (always printed)"

# --------------------------------------------------------------------------- arguments


def parser(prog: str, doc: str | None, *, raw: bool = False) -> argparse.ArgumentParser:
    """A bench's parser: ``prog`` and the docstring's first line, or (``raw``) the whole
    docstring, unwrapped, and the script's own name."""
    if raw:
        return argparse.ArgumentParser(
            description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
        )
    return argparse.ArgumentParser(prog=prog, description=(doc or "").split("\n")[0])


def add_json_flag(p: argparse.ArgumentParser, help: str = JSON_HELP) -> None:
    """``--json``: the benches always (or, where ``help`` says so, only then) end with JSON."""
    p.add_argument("--json", action="store_true", help=help)


def add_graph_source(
    p: argparse.ArgumentParser, planetoid_help: str, triples_help: str
) -> argparse._MutuallyExclusiveGroup:
    """The required ``--planetoid DIR | --triples DIR`` choice of the NBFNet benches."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--planetoid", metavar="DIR", help=planetoid_help)
    src.add_argument("--triples", metavar="DIR", help=triples_help)
    return src


def add_nbfnet_args(p: argparse.ArgumentParser, *, negatives_help: str) -> None:
    """Model size, batch sizes, negatives and log interval of an NBFNet bench (``None``: the
    task preset's, :func:`bench.nbfnet_setup.task_preset`)."""
    add_model_size(p, dim=32, layers=6)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--eval-batch-size", type=int, default=None)
    p.add_argument("--num-negative", type=int, default=None)
    p.add_argument("--negative-sources", type=float, default=1.0, help=negatives_help)
    p.add_argument("--log-every", type=int, default=50)


def add_model_size(
    p: argparse.ArgumentParser | argparse._ArgumentGroup, *, dim: int, layers: int
) -> None:
    """``--dim`` (vector size) and ``--layers`` (propagation depth), each bench's defaults."""
    p.add_argument("--layers", type=int, default=layers)
    p.add_argument("--dim", type=int, default=dim)


def add_lightgcn_files(p: argparse.ArgumentParser, *, described: bool = False) -> None:
    """The required ``--train FILE --test FILE`` (LightGCN line format)."""
    p.add_argument(
        "--train", required=True, help="LightGCN-format training file" if described else None
    )
    p.add_argument("--test", required=True, help="LightGCN-format test file" if described else None)


def add_spark_args(p: argparse.ArgumentParser) -> None:
    """``--master``, ``--shuffle-partitions``, ``--driver-memory`` of a Spark bench
    (:func:`bench_spark` reads them)."""
    p.add_argument("--master", default="local[2]")
    p.add_argument("--shuffle-partitions", type=int, default=8)
    p.add_argument("--driver-memory", default="6g")


def int_list(spec: str) -> list[int]:
    """``"4,8"`` -> ``[4, 8]`` (empty items skipped)."""
    return [int(x) for x in spec.split(",") if x]


# --------------------------------------------------------------------------- runtime


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """``(fn(), seconds it took)`` on the wall clock."""
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


def work_folder(path: str | None, prefix: str) -> Path:
    """``path`` (created), or a fresh temporary folder named ``prefix*``."""
    work = Path(path or tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    return work


def bench_spark(
    name: str, args: argparse.Namespace, work: Path, conf: dict[str, str] | None = None
) -> SparkSession:
    """A session on ``--master`` with ``--shuffle-partitions``, ``--driver-memory`` and
    ``conf``; its checkpoints under ``work``."""
    from pipelines.core.session import build_spark

    return build_spark(
        name,
        master=args.master,
        checkpoint_dir=str(work / "ckpt"),
        conf={
            "spark.sql.shuffle.partitions": str(args.shuffle_partitions),
            "spark.driver.memory": args.driver_memory,
            **(conf or {}),
        },
    )


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        out += [int(k) for k in kids]
        todo += [int(k) for k in kids]
    return out


def _processes(spark: SparkSession) -> list[int]:
    jvm = int(spark.sparkContext._jvm.ProcessHandle.current().pid())  # type: ignore[attr-defined,union-attr]
    return [os.getpid(), jvm, *_descendants(jvm)]


def reset_peak_rss(spark: SparkSession) -> None:
    """Reset the peak-RSS counters (Linux ``clear_refs`` 5) of the driver, JVM and workers."""
    for pid in _processes(spark):
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_rss_mb(spark: SparkSession) -> float:
    """Sum of ``VmHWM`` over the driver, the JVM and its Python workers, in MiB."""
    total = 0
    for pid in _processes(spark):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return round(total / 1024, 1)


# --------------------------------------------------------------------------- data


class LightGCNSplit(NamedTuple):
    """A LightGCN-format train/test split; node counts cover both files."""

    users: np.ndarray
    items: np.ndarray
    test_users: np.ndarray
    test_items: np.ndarray
    num_users: int
    num_items: int


def load_lightgcn_split(train: str, test: str) -> LightGCNSplit:
    """Both files of a LightGCN-format split (:mod:`bench.lightgcn_files`)."""
    from bench.lightgcn_files import load_lightgcn_file

    users, items = load_lightgcn_file(train)
    test_users, test_items = load_lightgcn_file(test)
    num_users = int(max(users.max(), test_users.max())) + 1
    num_items = int(max(items.max(), test_items.max())) + 1
    return LightGCNSplit(users, items, test_users, test_items, num_users, num_items)


def ranking_evaluator(data: LightGCNSplit, **kw: Any) -> Any:
    """:class:`gnn.eval.metrics.RankingEvaluator` at k = 20 on the split's test interactions."""
    from gnn.eval.metrics import RankingEvaluator

    return RankingEvaluator(
        data.users,
        data.items,
        data.test_users,
        data.test_items,
        num_users=data.num_users,
        num_items=data.num_items,
        k=20,
        **kw,
    )


def score_ego_rows(
    data: LightGCNSplit,
    evaluator: Any,
    adj: Any,
    rows: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    dim: int,
    layers: int,
) -> dict[str, float]:
    """Scatter ``(is_user, node_id, vector)`` rows into one ego table, propagate it over
    ``adj`` (:func:`gnn.models.lightgcn.lightgcn_propagate`) and evaluate it (nodes without a
    row keep zero vectors)."""
    import numpy as np
    import torch

    from gnn.models.lightgcn import lightgcn_propagate

    is_user, ids, vecs = rows
    ego = np.zeros((data.num_users + data.num_items, dim), dtype=np.float32)
    ego[ids[is_user]] = vecs[is_user]
    ego[data.num_users + ids[~is_user]] = vecs[~is_user]
    with torch.no_grad():
        final = lightgcn_propagate(adj, torch.from_numpy(ego), layers)
    return evaluator.evaluate(final[: data.num_users], final[data.num_users :])


# --------------------------------------------------------------------------- output


def log(*parts: Any) -> None:
    """A progress line, flushed at once (the benches' ``log=`` callback)."""
    print(*parts, flush=True)


def print_json(obj: Any) -> None:
    """The benches' last line: one JSON object."""
    print(json.dumps(obj), flush=True)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print ``| a | b |`` lines: the header, the ``|---|`` rule, then the rows."""
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


def format_row(
    columns: Sequence[tuple[str, str, int, str]], row: dict[str, Any] | None, left: str = ""
) -> str:
    """One line of a fixed-width table, ``None``: the header. ``columns``: (key, header, width,
    format) each; a missing value prints ``-``; the ``left`` column is left-aligned."""
    cells = []
    for key, head, width, fmt in columns:
        text = head if row is None else ("-" if row.get(key) is None else fmt.format(row[key]))
        cells.append(text.ljust(width) if key == left else text.rjust(width))
    return " ".join(cells)


def rounded(value: float | None, digits: int = 4) -> float | None:
    """``round(value, digits)``, ``None`` kept."""
    return None if value is None else round(value, digits)
