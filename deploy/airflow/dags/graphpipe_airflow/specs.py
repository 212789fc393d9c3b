"""The DAG specs in ``deploy/airflow/dags.yaml``, read into frozen dataclasses (no Airflow import).

Kept free of Airflow so that the project's own venv can test it; :mod:`graphpipe_airflow.factory`
turns a :class:`DagSpec` into an Airflow DAG.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(os.environ.get("GRAPHPIPE_ROOT") or Path(__file__).resolve().parents[4])
SPECS_PATH = ROOT / "deploy" / "airflow" / "dags.yaml"
STAGE_KEYS = frozenset(
    {
        "retries",
        "retry_delay_minutes",
        "retry_exponential_backoff",
        "execution_timeout_minutes",
        "driver_memory",
        "executor_memory",
        "conf",
    }
)


class SpecError(ValueError):
    """The DAG spec file is malformed; the message names the DAG and key."""


@dataclass(frozen=True)
class StageSpec:
    """One ``spark-submit jobs/<job>.py`` task."""

    name: str
    job: str
    retries: int
    retry_delay_minutes: float
    retry_exponential_backoff: bool
    execution_timeout_minutes: float
    driver_memory: str
    executor_memory: str
    conf: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()

    def application(self, root: Path = ROOT) -> Path:
        """The job script spark-submit runs."""
        return root / "jobs" / f"{self.job}.py"


@dataclass(frozen=True)
class DagSpec:
    """A DAG: its id, schedule and stages in run order."""

    dag_id: str
    description: str
    schedule: str | None
    stages: tuple[StageSpec, ...]
    params: dict[str, str] = field(default_factory=dict)


def _stage(entry: Any, defaults: dict[str, Any], where: str) -> StageSpec:
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise SpecError(f"{where}: a stage is a name or a mapping with 'name'")
    unknown = set(entry) - STAGE_KEYS - {"name", "job", "args"}
    if unknown:
        raise SpecError(f"{where}.{entry['name']}: unknown keys {sorted(unknown)}")
    merged = {**defaults, **{k: v for k, v in entry.items() if k in STAGE_KEYS}}
    merged["conf"] = {
        str(k): str(v) for k, v in {**defaults.get("conf", {}), **entry.get("conf", {})}.items()
    }
    missing = STAGE_KEYS - set(merged)
    if missing:
        raise SpecError(f"{where}.{entry['name']}: missing {sorted(missing)} (set in defaults)")
    return StageSpec(
        name=entry["name"],
        job=str(entry.get("job", entry["name"])),
        args=tuple(str(a) for a in entry.get("args", ())),
        retries=int(merged["retries"]),
        retry_delay_minutes=float(merged["retry_delay_minutes"]),
        retry_exponential_backoff=bool(merged["retry_exponential_backoff"]),
        execution_timeout_minutes=float(merged["execution_timeout_minutes"]),
        driver_memory=str(merged["driver_memory"]),
        executor_memory=str(merged["executor_memory"]),
        conf=merged["conf"],
    )


def parse_specs(data: dict[str, Any]) -> dict[str, DagSpec]:
    """Build the DAG specs from the parsed YAML mapping (``defaults`` and ``dags``)."""
    if not isinstance(data, dict) or not isinstance(data.get("dags"), dict):
        raise SpecError("spec: top level needs a 'dags' mapping")
    defaults = dict(data.get("defaults") or {})
    unknown = set(defaults) - STAGE_KEYS
    if unknown:
        raise SpecError(f"defaults: unknown keys {sorted(unknown)}")
    specs: dict[str, DagSpec] = {}
    for dag_id, body in data["dags"].items():
        body = body or {}
        stages = body.get("stages") or []
        if not stages:
            raise SpecError(f"dags.{dag_id}: no stages")
        built = tuple(_stage(s, defaults, f"dags.{dag_id}") for s in stages)
        names = [s.name for s in built]
        if len(set(names)) != len(names):
            raise SpecError(f"dags.{dag_id}: duplicate stage names {names}")
        params = body.get("params") or {}
        if not isinstance(params, dict):
            raise SpecError(f"dags.{dag_id}.params: expected a mapping")
        specs[str(dag_id)] = DagSpec(
            dag_id=str(dag_id),
            description=str(body.get("description", "")),
            schedule=body.get("schedule"),
            stages=built,
            params={str(k): "" if v is None else str(v) for k, v in params.items()},
        )
    return specs


def load_specs(path: str | Path | None = None) -> dict[str, DagSpec]:
    """Read the spec file: ``path``, else ``$GRAPHPIPE_AIRFLOW_SPECS``, else ``dags.yaml``."""
    path = Path(path or os.environ.get("GRAPHPIPE_AIRFLOW_SPECS") or SPECS_PATH)
    return parse_specs(yaml.safe_load(path.read_text()))
