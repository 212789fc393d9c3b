"""pipelines.evaluate.report / jobs.report on small run directories written in the stages' own
formats
(markers through pipelines.core.stages.run_stage, Parquet tables with the stages' schemas)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs import report as report_job
from pipelines.core.stages import run_stage
from pipelines.evaluate.report import build_report, leaf_loss_curves, leaf_stats, stage_markers

PNG = b"\x89PNG\r\n\x1a\n"


def _stage(run_dir: Path, name: str, write=lambda out: None, **result):
    def body(out: Path) -> dict:
        write(out)
        return result

    return run_stage(run_dir, name, "h", body)


def _leaf_stats(out: Path) -> None:
    table = pa.table(
        {
            "leaf_id": pa.array([1, 0, 2], pa.int32()),
            "depth": pa.array([2, 2, 1], pa.int32()),
            "nodes": pa.array([40, 44, 30], pa.int64()),
            "internal_edges": pa.array([100, 120, 90], pa.int64()),
            "cut_edges": pa.array([30, 20, 10], pa.int64()),
            "load": pa.array([130, 140, 100], pa.int64()),
            "halo_nodes": pa.array([5, 6, 7], pa.int64()),
            "halo_edges": pa.array([9, 8, 7], pa.int64()),
        }
    )
    (out / "leaf_stats").mkdir()
    pq.write_table(table, out / "leaf_stats" / "part-0.parquet")


def _leaf_logs(out: Path, *, with_round: bool = True) -> None:
    rows = [  # rows out of order: the curves follow (leaf, round)
        (1, 2, [0.5, 0.4]),
        (0, 1, [0.9, 0.8]),
        (1, 1, [0.7, 0.6]),
        (0, 2, [0.3, 0.2]),
    ]
    logs = [json.dumps({"leaf_id": leaf, "round": r, "losses": losses}) for leaf, r, losses in rows]
    columns = {"leaf_id": pa.array([r[0] for r in rows], pa.int64())}
    if with_round:
        columns["round"] = pa.array([r[1] for r in rows], pa.int32())
    columns["leaf_log"] = pa.array(logs, pa.string())
    (out / "leaf_logs").mkdir()
    pq.write_table(pa.table(columns), out / "leaf_logs" / "part-0.parquet")


def _metrics(out: Path) -> None:
    (out / "metrics.json").write_text(
        json.dumps({"recall@20": 0.1234, "ndcg@20": 0.0567, "users": 40})
    )


def _full_run(run_dir: Path) -> None:
    _stage(run_dir, "ingest", users=40)
    _stage(run_dir, "partition", _leaf_stats, leaves=3,
           quality={"edge_cut": 0.25, "balance": 1.04, "num_leaves": 3})  # fmt: skip
    _stage(run_dir, "train", _leaf_logs, leaves=2)
    _stage(run_dir, "evaluate", _metrics, evaluated_users=40)
    _stage(run_dir, "aggregate", user_vectors=40)


def _sections(page: str) -> dict[str, str]:
    parts = re.split(r"<h2>(.*?)</h2>", page.split("</body>")[0])
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _images(text: str) -> list[bytes]:
    return [
        base64.b64decode(x) for x in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", text)
    ]


def test_full_run_has_every_section_with_a_figure(tmp_path):
    _full_run(tmp_path)
    path = build_report(tmp_path)
    assert path == tmp_path / "report" / "index.html"
    page = path.read_text()
    sections = _sections(page)
    assert list(sections) == [
        "Partition", "Training loss per leaf", "Ranking quality", "Time per stage"
    ]  # fmt: skip
    assert "not run" not in page
    for title, body in sections.items():
        images = _images(body)
        assert len(images) == 1, title
        assert images[0].startswith(PNG)
    assert "<td>edge_cut</td><td>0.2500</td>" in sections["Partition"]
    assert "<td>balance</td><td>1.0400</td>" in sections["Partition"]
    # per leaf, sorted by leaf id
    assert re.findall(r"<tr><td>(\d)</td><td>(\d+)</td>", sections["Partition"]) == [
        ("0", "44"), ("1", "40"), ("2", "30"),
    ]  # fmt: skip
    assert "<td>recall@20</td><td>0.1234</td>" in sections["Ranking quality"]
    assert "<td>ndcg@20</td><td>0.0567</td>" in sections["Ranking quality"]
    # leaf, epochs, first loss, last loss (losses concatenated over rounds 1 and 2)
    assert "<tr><td>0</td><td>4</td><td>0.9000</td><td>0.2000</td></tr>" in page
    assert "<tr><td>1</td><td>4</td><td>0.7000</td><td>0.4000</td></tr>" in page
    stages = re.findall(r"<tr><td>([a-z]+)</td><td>[0-9.]+</td><td>20", sections["Time per stage"])
    assert stages == ["ingest", "partition", "train", "aggregate", "evaluate"]


def test_data_readers(tmp_path):
    _full_run(tmp_path)
    assert leaf_loss_curves(tmp_path) == {0: [0.9, 0.8, 0.3, 0.2], 1: [0.7, 0.6, 0.5, 0.4]}
    assert [r["leaf_id"] for r in leaf_stats(tmp_path)] == [0, 1, 2]
    markers = stage_markers(tmp_path)
    assert [m["stage"] for m in markers] == [
        "ingest",
        "partition",
        "train",
        "aggregate",
        "evaluate",
    ]
    assert markers[0]["counts"] == {"users": 40}


def test_leaf_logs_without_round_column_use_the_json_round(tmp_path):
    _stage(tmp_path, "train", lambda out: _leaf_logs(out, with_round=False), leaves=2)
    assert leaf_loss_curves(tmp_path) == {0: [0.9, 0.8, 0.3, 0.2], 1: [0.7, 0.6, 0.5, 0.4]}


def test_missing_sections_are_not_run(tmp_path):
    (tmp_path / "config.yaml").write_text("run: {}\n")
    page = build_report(tmp_path).read_text()
    sections = _sections(page)
    assert all(body.strip() == '<p class="notrun">not run</p>' for body in sections.values())
    assert _images(page) == []

    # Only ingest and train: partition and ranking quality still "not run".
    _stage(tmp_path, "ingest", users=3)
    _stage(tmp_path, "train", _leaf_logs, leaves=2)
    # An unfinished stage (no marker) counts as not run.
    (tmp_path / "evaluate").mkdir()
    _metrics(tmp_path / "evaluate")
    sections = _sections(build_report(tmp_path).read_text())
    ran = {t: "not run" not in body for t, body in sections.items()}
    assert ran == {
        "Partition": False,
        "Training loss per leaf": True,
        "Ranking quality": False,
        "Time per stage": True,
    }


def test_report_job(tmp_path, capsys):
    _full_run(tmp_path)
    assert report_job.main(["--run-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str((tmp_path / "report" / "index.html").resolve())
    assert report_job.main(["--run-dir", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_build_report_refuses_a_missing_run_dir(tmp_path):
    with pytest.raises(FileNotFoundError):
        build_report(tmp_path / "nope")
