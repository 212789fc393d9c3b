"""One HTML page per run: ``<run_dir>/report/index.html``, figures embedded as base64 PNG.

Sections, each read from what the stages left in the run directory (small tables only: leaf
statistics, leaf loss logs, metrics, stage markers; never the graph):

* Partition: leaf-size histograms (nodes and internal edges per leaf), edge cut and balance
  (``partition/leaf_stats`` Parquet, the ``quality`` dict of ``partition/_STAGE.json``).
* Training: per-leaf BPR loss curves over the epochs of all rounds
  (``train/leaf_logs`` Parquet: ``leaf_id``, optional ``round``, ``leaf_log`` JSON with
  ``losses``).
* Ranking quality: Recall@K and NDCG@K (``evaluate/metrics.json``).
* Time per stage: seconds and counts from every ``<stage>/_STAGE.json``.

A section whose inputs are missing is shown as "not run". Reads Parquet with pyarrow (no Spark
session needed). matplotlib is imported lazily, with the Agg backend.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.core.stages import MARKER

STAGE_ORDER = (
    "ingest", "partition", "train", "aggregate", "recommend", "export", "evaluate", "forget",
)  # fmt: skip
MAX_LEGEND = 10


@dataclass(frozen=True)
class Section:
    """A block of the page: ``html`` is empty and ``ran`` False when its inputs are missing."""

    title: str
    ran: bool
    html: str


# ---------------------------------------------------------------- data (pure, no matplotlib)


def stage_markers(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every ``<stage>/_STAGE.json`` of the run, pipeline order first, then by name."""
    run_dir = Path(run_dir)
    markers = [json.loads(p.read_text()) for p in sorted(run_dir.glob(f"*/{MARKER}"))]
    rank = {name: i for i, name in enumerate(STAGE_ORDER)}
    return sorted(markers, key=lambda m: (rank.get(m["stage"], len(rank)), m["stage"]))


def _read_parquet(path: Path) -> list[dict[str, Any]] | None:
    if not path.is_dir() and not path.is_file():
        return None
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = pq.read_table(str(path)).to_pylist()
    return rows


def leaf_stats(run_dir: str | Path) -> list[dict[str, Any]] | None:
    """Rows of ``partition/leaf_stats`` sorted by ``leaf_id`` (None when not partitioned)."""
    if not (Path(run_dir) / "partition" / MARKER).is_file():
        return None
    rows = _read_parquet(Path(run_dir) / "partition" / "leaf_stats")
    return None if rows is None else sorted(rows, key=lambda r: r["leaf_id"])


def leaf_loss_curves(run_dir: str | Path) -> dict[int, list[float]] | None:
    """Leaf id -> its losses, epoch after epoch, rounds in order (None when not trained)."""
    if not (Path(run_dir) / "train" / MARKER).is_file():
        return None
    rows = _read_parquet(Path(run_dir) / "train" / "leaf_logs")
    if rows is None:
        return None
    logs = []
    for row in rows:
        log = json.loads(row["leaf_log"])
        leaf = int(row.get("leaf_id", log.get("leaf_id", 0)))
        rnd = int(row.get("round") or log.get("round") or 0)
        logs.append((leaf, rnd, [float(x) for x in log.get("losses", [])]))
    curves: dict[int, list[float]] = {}
    for leaf, _, losses in sorted(logs, key=lambda x: (x[0], x[1])):
        curves.setdefault(leaf, []).extend(losses)
    return curves


def ranking_metrics(run_dir: str | Path) -> dict[str, Any] | None:
    """``evaluate/metrics.json`` (None when the run was not evaluated)."""
    path = Path(run_dir) / "evaluate" / "metrics.json"
    if not (Path(run_dir) / "evaluate" / MARKER).is_file() or not path.is_file():
        return None
    return dict(json.loads(path.read_text()))


# ---------------------------------------------------------------- rendering


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure(draw: Callable[[Any], None], *, size: tuple[float, float] = (6.4, 3.6)) -> str:
    """Draw on a new figure and return an ``<img>`` tag with the PNG inline (base64)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=size, dpi=100)
    try:
        draw(ax)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="figure" src="data:image/png;base64,{data}">'


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else str(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def partition_section(run_dir: str | Path) -> Section:
    title = "Partition"
    stats = leaf_stats(run_dir)
    if stats is None:
        return Section(title, False, "")
    marker = json.loads((Path(run_dir) / "partition" / MARKER).read_text())
    quality = dict(marker.get("extra", {}).get("quality", {}))
    nodes = [int(r["nodes"]) for r in stats]
    edges = [int(r["internal_edges"]) for r in stats]

    def hist(ax: Any) -> None:
        bins = min(30, max(1, len(stats)))
        ax.hist(nodes, bins=bins, alpha=0.7, label="nodes")
        ax.hist(edges, bins=bins, alpha=0.7, label="internal edges")
        ax.set_xlabel("size per leaf")
        ax.set_ylabel("leaves")
        ax.set_title(f"Leaf sizes ({len(stats)} leaves)")
        ax.legend()

    keys = ("num_leaves", "edges", "cut_edges", "edge_cut", "balance", "edge_balance",
            "halo_replication", "max_leaf_edges")  # fmt: skip
    summary = [(k, quality[k]) for k in keys if k in quality]
    per_leaf = [
        (r["leaf_id"], r["nodes"], r["internal_edges"], r["cut_edges"], r.get("halo_nodes", ""))
        for r in stats
    ]
    body = (
        _figure(hist)
        + _table(("measure", "value"), summary)
        + "<details><summary>per leaf</summary>"
        + _table(("leaf", "nodes", "internal edges", "cut edges", "halo nodes"), per_leaf)
        + "</details>"
    )
    return Section(title, True, body)


def training_section(run_dir: str | Path) -> Section:
    title = "Training loss per leaf"
    curves = leaf_loss_curves(run_dir)
    if not curves:
        return Section(title, False, "")

    def draw(ax: Any) -> None:
        for leaf, losses in sorted(curves.items()):
            ax.plot(range(1, len(losses) + 1), losses, linewidth=1, label=f"leaf {leaf}")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch (all rounds)")
        ax.set_ylabel("BPR loss")
        noun = "leaf" if len(curves) == 1 else "leaves"
        ax.set_title(f"Training loss, {len(curves)} {noun}")
        if len(curves) <= MAX_LEGEND:
            ax.legend(fontsize="small")

    rows = [
        (leaf, len(losses), losses[0] if losses else "", losses[-1] if losses else "")
        for leaf, losses in sorted(curves.items())
    ]
    return Section(
        title, True, _figure(draw) + _table(("leaf", "epochs", "first loss", "last loss"), rows)
    )


def metrics_section(run_dir: str | Path) -> Section:
    title = "Ranking quality"
    metrics = ranking_metrics(run_dir)
    if metrics is None:
        return Section(title, False, "")
    scores = {k: float(v) for k, v in metrics.items() if "@" in k and isinstance(v, (int, float))}

    def draw(ax: Any) -> None:
        names = sorted(scores)
        bars = ax.bar([n.replace("recall", "Recall").replace("ndcg", "NDCG") for n in names],
                      [scores[n] for n in names])  # fmt: skip
        ax.bar_label(bars, fmt="%.4f")
        ax.set_ylim(0, max([*scores.values(), 0.01]) * 1.25)
        ax.set_title("Recall@K and NDCG@K on the test split")

    rows = sorted(metrics.items())
    figure = _figure(draw, size=(5.0, 3.2)) if scores else ""
    return Section(title, True, figure + _table(("metric", "value"), rows))


def timing_section(run_dir: str | Path) -> Section:
    title = "Time per stage"
    markers = stage_markers(run_dir)
    if not markers:
        return Section(title, False, "")
    names = [m["stage"] for m in markers]
    seconds = [float(m["seconds"]) for m in markers]

    def draw(ax: Any) -> None:
        bars = ax.barh(names[::-1], seconds[::-1])
        ax.bar_label(bars, fmt="%.1f s")
        ax.set_xlabel("seconds")
        ax.set_xlim(0, max(seconds + [1.0]) * 1.2)
        ax.set_title(f"Time per stage (total {sum(seconds):.1f} s)")

    rows = [
        (m["stage"], f"{float(m['seconds']):.1f}", m.get("finished_at", ""),
         ", ".join(f"{k}={_fmt(v)}" for k, v in m.get("counts", {}).items()))
        for m in markers
    ]  # fmt: skip
    figure = _figure(draw, size=(6.4, 0.5 * len(markers) + 1.2))
    return Section(title, True, figure + _table(("stage", "seconds", "finished", "counts"), rows))


STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 60em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th { background: #f0f0f0; }
.notrun { color: #888; font-style: italic; }
img { max-width: 100%; }
"""


def render(run_dir: str | Path, sections: Sequence[Section]) -> str:
    """The whole page."""
    name = html.escape(str(Path(run_dir).resolve()))
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>graphpipe run {name}</title>",
        f"<style>{STYLE}</style></head><body><h1>graphpipe run</h1><p>{name}</p>",
    ]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        parts.append(s.html if s.ran else '<p class="notrun">not run</p>')
    parts.append("</body></html>")
    return "\n".join(parts)


def build_report(run_dir: str | Path) -> Path:
    """Write ``<run_dir>/report/index.html`` (atomically) and return its path.

    Args:
        run_dir: A run directory (any subset of the stages may have run).

    Returns:
        Path of the page.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    sections = [
        partition_section(run_dir),
        training_section(run_dir),
        metrics_section(run_dir),
        timing_section(run_dir),
    ]
    out = run_dir / "report" / "index.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".index.html.tmp-{os.getpid()}")
    tmp.write_text(render(run_dir, sections), encoding="utf-8")
    os.replace(tmp, out)
    return out
