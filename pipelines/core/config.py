"""Typed, validated configuration loaded from YAML with ``--set a.b=c`` overrides.

One frozen dataclass per concern (:mod:`pipelines.core.config_sections`). Every field carries a
help text in its metadata, and the defaults are the one source of a run's settings: a job run
without ``--config`` gets what ``deploy/configs/local.yaml`` gives, bar the data paths. Unknown
keys and bad values raise :class:`ConfigError` naming the dotted key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipelines.core.config_sections import (
    INGEST_FORMATS,
    ConfigError,
    ExportConfig,
    IngestConfig,
    ModelConfig,
    NBFNetConfig,
    PartitionConfig,
    RunConfig,
    SparkConfig,
    TrainConfig,
)

__all__ = [
    "BASE_DIR_ENV",
    "INGEST_FORMATS",
    "PATH_KEYS",
    "ConfigError",
    "ExportConfig",
    "IngestConfig",
    "ModelConfig",
    "NBFNetConfig",
    "PartitionConfig",
    "PipelineConfig",
    "RunConfig",
    "SparkConfig",
    "TrainConfig",
    "load_config",
    "parse_override",
    "resolve_paths",
]


@dataclass(frozen=True)
class PipelineConfig:
    run: RunConfig = field(default_factory=RunConfig)
    spark: SparkConfig = field(default_factory=SparkConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    nbfnet: NBFNetConfig = field(default_factory=NBFNetConfig)

    def validate(self) -> PipelineConfig:
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def section_hash(self, *sections: str) -> str:
        """Stable hash of the named sections (all when none): a stage's marker key."""
        data = self.to_dict()
        picked = {s: data[s] for s in (sections or tuple(data))}
        blob = json.dumps(picked, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def flat_sections(self, *sections: str) -> dict[str, Any]:
        """``{"section.key": value}`` of the named sections (all when none), JSON-friendly.

        Recorded in the ``train`` stage marker so a later job can name the keys that differ
        from the config a run was trained with (the hash alone cannot).
        """
        data = json.loads(json.dumps(self.to_dict(), default=str))
        return {
            f"{section}.{key}": value
            for section in (sections or tuple(data))
            for key, value in data[section].items()
        }

    def write(self, path: str | Path) -> None:
        """Write the resolved config as YAML."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {str(k): str(v) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    return value


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            where = f"{prefix}.{key}" if prefix else key
            raise ConfigError(f"{where}: unknown key (known: {', '.join(sorted(names))})")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        key = f"{prefix}.{f.name}" if prefix else f.name
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            kwargs[f.name] = _build(tp, data[f.name] or {}, key)  # type: ignore[arg-type]
        else:
            kwargs[f.name] = _coerce(data[f.name], tp, key)
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b=c`` into (["a", "b"], value) with the value read as YAML (safe)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set {text!r}: empty key part")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"{key}: cannot parse value {raw!r}: {exc}") from exc
    return parts, value


#: Config keys that name files or folders: the ones :func:`resolve_paths` makes absolute.
PATH_KEYS = ("ingest.train_path", "ingest.test_path", "ingest.tombstones_dir")

#: Environment variable naming the folder relative config paths are read from (unset: the
#: working directory). The Airflow DAGs set it to the repository, whose configs name data
#: relative to it, so a DAG runs whatever directory its worker was started in.
BASE_DIR_ENV = "GRAPHPIPE_BASE_DIR"


def resolve_paths(cfg: PipelineConfig, base: str | Path) -> PipelineConfig:
    """The config with every relative, non-empty path of :data:`PATH_KEYS` joined to ``base``.

    Absolute paths and URIs (``scheme://...``, e.g. ``hdfs://`` or ``s3a://``) are kept as they
    are; ``base`` itself must be absolute (a relative one is ambiguous in a Spark driver).
    """
    root = Path(base)
    if not root.is_absolute():
        raise ConfigError(f"{BASE_DIR_ENV}: must be an absolute folder, got {str(base)!r}")
    sections: dict[str, dict[str, str]] = {}
    for key in PATH_KEYS:
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value and "://" not in value and not Path(value).is_absolute():
            sections.setdefault(section, {})[name] = str(root / value)
    changed = {s: dataclasses.replace(getattr(cfg, s), **v) for s, v in sections.items()}
    return dataclasses.replace(cfg, **changed) if changed else cfg


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> PipelineConfig:
    """Load YAML (safe loading only), apply ``--set`` overrides, build and validate."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p}: not found")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {p}: invalid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {p}: top level must be a mapping")
        data = loaded or {}
    for text in overrides or []:
        parts, value = parse_override(text)
        node = data
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"{'.'.join(parts)}: {part} is not a section")
            node = nxt
        node[parts[-1]] = value
    cfg: PipelineConfig = _build(PipelineConfig, data, "")
    return cfg.validate()
