import json

import pytest

from pipelines.core.stages import MARKER, read_marker, run_stage


def _write(out, rows):
    (out / "table").mkdir()
    (out / "table" / "part-0.txt").write_text("\n".join(map(str, rows)))
    return {"rows": len(rows), "note": "x"}


def test_stage_writes_marker_and_skips_on_rerun(tmp_path):
    calls = []

    def body(out):
        calls.append(1)
        return _write(out, [1, 2, 3])

    first = run_stage(tmp_path, "s", "h1", body)
    assert not first.skipped and first.counts == {"rows": 3} and first.extra == {"note": "x"}
    marker = json.loads((tmp_path / "s" / MARKER).read_text())
    assert marker["config_hash"] == "h1" and marker["counts"] == {"rows": 3}
    second = run_stage(tmp_path, "s", "h1", body)
    assert second.skipped and second.counts == {"rows": 3}
    assert len(calls) == 1
    third = run_stage(tmp_path, "s", "h2", lambda out: _write(out, [1]))
    assert not third.skipped and third.counts == {"rows": 1}
    assert (tmp_path / "s" / "table" / "part-0.txt").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["s"]


def test_failed_stage_leaves_no_partial_output_and_resumes(tmp_path):
    def crashing(out):
        _write(out, [1, 2])
        raise RuntimeError("killed midway")

    with pytest.raises(RuntimeError):
        run_stage(tmp_path, "s", "h", crashing)
    assert not (tmp_path / "s").exists()
    assert read_marker(tmp_path, "s") is None
    assert list(tmp_path.iterdir()) == []
    # A stale temp folder from a hard kill is cleaned on the next attempt.
    (tmp_path / ".s.tmp-dead").mkdir()
    done = run_stage(tmp_path, "s", "h", lambda out: _write(out, [7]))
    assert done.counts == {"rows": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]
