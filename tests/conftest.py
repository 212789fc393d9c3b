"""One session-scoped local SparkSession for the whole suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

DATA_DIR = Path(
    os.environ.get("GRAPHPIPE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from pipelines.core.session import build_spark

    session = build_spark(
        "graphpipe-tests",
        master="local[2]",
        conf={"spark.sql.shuffle.partitions": "4", "spark.driver.memory": "2g"},
        checkpoint_dir=str(tmp_path_factory.mktemp("ckpt")),
        ui=False,
    )
    yield session
    session.stop()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.fail(f"shared benchmark data not found at {DATA_DIR} (set GRAPHPIPE_DATA)")
    return DATA_DIR
