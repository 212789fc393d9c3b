"""A leaf task that raises, or whose Python worker dies, is retried by Spark with identical rows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "scripts" / "leaf_faults.py"


def _run(mode: str, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(SCRIPT), mode, str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


def test_failed_and_killed_leaf_tasks_are_retried_with_identical_rows(tmp_path):
    clean = _run("clean", tmp_path / "clean.pkl")
    assert clean.returncode == 0, clean.stderr[-3000:]
    (tmp_path / "faulty").mkdir()
    faulty = _run("faults", tmp_path / "faulty" / "faults.pkl")
    assert faulty.returncode == 0, faulty.stderr[-3000:]
    # Both injected faults happened, in some task attempt, and Spark retried past them.
    markers = sorted(p.name.rsplit("-", 2)[0] for p in (tmp_path / "faulty").glob("fault-*"))
    assert markers == ["fault-leaf-0", "fault-leaf-1"]
    assert "injected failure of leaf 0" in faulty.stderr
    assert faulty.stderr.count("Lost task") >= 2
    a = pd.read_pickle(tmp_path / "clean.pkl")
    b = pd.read_pickle(tmp_path / "faulty" / "faults.pkl")
    assert sorted(set(a["leaf_id"])) == [0, 1] and len(a) > 40
    pd.testing.assert_frame_equal(a, b)
