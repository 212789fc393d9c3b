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
import math
import re
import types
import typing
from collections.abc import Sequence
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
    "typed_value",
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


def _finite(value: Any, key: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}: must be a finite number, got {value!r}")


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
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        _finite(value, key)
        if int(value) != value:
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        _finite(value, key)
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


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line for a YAML error: where, and what (PyYAML's own message spans several lines)."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return " ".join(str(exc).split())
    problem = exc.problem or exc.context or "invalid YAML"
    tag = re.search(r"for the tag '([^']*)'", problem)
    if tag:
        shown = tag.group(1).replace("tag:yaml.org,2002:", "!!")
        problem = f"YAML tag {shown} is not allowed (plain values only)"
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return " ".join(f"{where}{problem}".split())


def _field_type(parts: Sequence[str]) -> Any:
    """The type of the dotted key ``parts`` of :class:`PipelineConfig` (None: unknown key)."""
    tp: Any = PipelineConfig
    for part in parts:
        if not dataclasses.is_dataclass(tp):
            return None
        tp = typing.get_type_hints(tp).get(part)
        if tp is None:
            return None
    return tp


def _optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in (
        typing.get_args(tp)
    )


def _plain(tp: Any) -> Any:
    """``X`` of ``X | None``; other types as they are."""
    if _optional(tp):
        return next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


#: Spellings of "no value" for a ``str | None`` field (``spark.master``).
_NULL_WORDS = ("", "~", "null", "Null", "NULL")


def typed_value(text: str, tp: Any, key: str) -> Any:
    """The value of a key written as ``text`` (a ``--set`` value or a plain YAML scalar).

    Typed by the field it sets: a string field keeps exactly the text written (``0010``,
    ``1_000``, ``0x1F``, ``2024-01-01`` and ``data.csv #v2`` stay strings; ``null`` or an empty
    value clears a field that may be unset); a number field reads Python's number syntax
    (``0010`` is 10, not YAML 1.1's octal 8; ``1e-3``, ``1_000``; inf and nan are read here and
    refused by :func:`load_config`); anything else (booleans, mappings, unknown keys) is read as
    YAML, safely. ``!!python/`` tags are refused.

    Raises:
        ConfigError: Naming ``key``, for a value that cannot be read.
    """
    if text.lstrip().startswith("!!python/"):
        raise ConfigError(f"{key}: YAML tag {text.split()[0]} is not allowed (plain values only)")
    plain = _plain(tp)
    if _optional(tp) and text.strip() in _NULL_WORDS:
        return None
    if plain is str:
        return text
    if plain in (int, float):
        for number in (int, float):
            try:
                return number(text.strip())
            except ValueError:
                pass
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"{key}: cannot read value {text!r}: {_yaml_problem(exc)}") from exc


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b=c`` into (["a", "b"], value), the value typed by the field ``a.b``.

    See :func:`typed_value`: ``--set ingest.train_path=0010`` names the file ``0010``.
    """
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set {text!r}: empty key part")
    return parts, typed_value(raw, _field_type(parts), ".".join(parts))


#: Tags PyYAML resolves plain scalars to: such a scalar is typed by its field instead.
_PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null")} | {
    "tag:yaml.org,2002:timestamp"
}


def _node_value(loader: yaml.SafeLoader, node: yaml.Node, tp: Any, key: str) -> Any:
    """The Python value of a YAML node of the config, plain scalars typed by their field."""
    if isinstance(node, yaml.MappingNode) and (
        dataclasses.is_dataclass(tp) or typing.get_origin(tp) is dict
    ):
        loader.flatten_mapping(node)
        hints = typing.get_type_hints(tp) if dataclasses.is_dataclass(tp) else {}
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            name = str(loader.construct_object(key_node, deep=True))
            sub = hints.get(name) if hints else typing.get_args(tp)[1]
            out[name] = _node_value(loader, value_node, sub, f"{key}.{name}" if key else name)
        return out
    plain = isinstance(node, yaml.ScalarNode) and node.style is None and node.tag in _PLAIN_TAGS
    if plain and tp is not None and not dataclasses.is_dataclass(tp):
        return typed_value(node.value, tp, key)
    return loader.construct_object(node, deep=True)  # a YAMLError names its line and column


def _read_yaml(p: Path) -> dict[str, Any]:
    """A config file as a dict, each plain scalar typed by its field (:func:`typed_value`)."""
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {p}: cannot read: {exc}") from exc
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}
        if not isinstance(node, yaml.MappingNode):
            raise ConfigError(f"config file {p}: top level must be a mapping")
        data: dict[str, Any] = _node_value(loader, node, PipelineConfig, "")
        return data
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p}: invalid YAML: {_yaml_problem(exc)}") from exc
    except ConfigError as exc:
        if str(exc).startswith("config file"):
            raise
        raise ConfigError(f"config file {p}: {exc}") from exc
    finally:
        loader.dispose()


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
        data = _read_yaml(p)
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
