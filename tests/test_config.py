import dataclasses
from pathlib import Path

import pytest

from pipelines.core.config import ConfigError, PipelineConfig, load_config, resolve_paths

REPO = Path(__file__).resolve().parents[1]


def test_defaults_validate():
    cfg = load_config()
    assert cfg == PipelineConfig()
    assert cfg.train.lr == 0.02 and cfg.train.epochs == 400 and cfg.export.top_k == 20


def test_deploy_config_loads():
    cfg = load_config(REPO / "deploy" / "configs" / "local.yaml")
    assert cfg.model.name == "lightgcn"
    assert cfg.ingest.format == "lightgcn"


#: What local.yaml adds to the defaults: where the local data lies, nothing about the model.
LOCAL_ONLY = {"ingest.train_path", "ingest.test_path"}


def _flat(cfg: PipelineConfig) -> dict[str, object]:
    return {
        f"{section}.{key}": value
        for section, values in dataclasses.asdict(cfg).items()
        for key, value in values.items()
    }


def test_local_yaml_and_the_bare_defaults_are_one_config():
    """A job run without --config trains what a run with deploy/configs/local.yaml trains."""
    local = _flat(load_config(REPO / "deploy" / "configs" / "local.yaml"))
    defaults = _flat(PipelineConfig())
    assert local.keys() == defaults.keys()
    differ = {k: (local[k], defaults[k]) for k in local if local[k] != defaults[k]}
    assert set(differ) == LOCAL_ONLY, differ
    assert all(defaults[k] == "" for k in LOCAL_ONLY)  # no data path is built in


def test_overrides_are_typed(tmp_path):
    cfg = load_config(
        overrides=["train.lr=0.01", "train.epochs=3", "ingest.header=true", "spark.master=local[1]"]
    )
    assert cfg.train.lr == 0.01 and isinstance(cfg.train.lr, float)
    assert cfg.train.epochs == 3
    assert cfg.ingest.header is True
    assert cfg.spark.master == "local[1]"


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.lrr=0.1", "train.lrr"),
        ("nope.x=1", "nope"),
        ("train.lr=-1", "train.lr"),
        ("train.epochs=1.5", "train.epochs"),
        ("ingest.format=xml", "ingest.format"),
        ("ingest.header=maybe", "ingest.header"),
        ("partition.balance_tolerance=2", "partition.balance_tolerance"),
        ("train.device=tpu", "train.device"),
        ("train.vector_dtype=float64", "train.vector_dtype"),
        ("train.shared_step=0", "train.shared_step"),
        ("model.name=nbfnet", "model.name"),  # not silently trained as LightGCN
    ],
)
def test_bad_key_or_value_names_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    assert str(err.value).startswith(key)


def test_yaml_unknown_key_and_unsafe_tags(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match=r"^train\.epochz: unknown key"):
        load_config(p)
    p.write_text("train: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_resolved_config_round_trip_and_hash(tmp_path):
    cfg = load_config(overrides=["train.lr=0.02", "spark.conf={spark.a: b}"])
    cfg.write(tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg
    assert again.section_hash("train") == cfg.section_hash("train")
    other = load_config(overrides=["train.lr=0.03"])
    assert other.section_hash("train") != cfg.section_hash("train")
    assert other.section_hash("ingest") == cfg.section_hash("ingest")


def test_resolve_paths_joins_relative_data_paths_to_the_base(tmp_path):
    cfg = load_config(
        "deploy/configs/kg_local.yaml",
        ["ingest.tombstones_dir=/abs/tombstones", "ingest.test_path=hdfs://nn/kg/test.txt"],
    )
    resolved = resolve_paths(cfg, tmp_path)
    assert resolved.ingest.train_path == str(tmp_path / "../shared/data/fb15k-237/train.txt")
    # absolute paths and URIs are kept; nothing else changes
    assert resolved.ingest.test_path == "hdfs://nn/kg/test.txt"
    assert resolved.ingest.tombstones_dir == "/abs/tombstones"
    assert resolved.nbfnet == cfg.nbfnet and resolved.partition == cfg.partition
    assert resolve_paths(PipelineConfig(), tmp_path) == PipelineConfig()  # empty paths stay empty
    with pytest.raises(ConfigError, match="GRAPHPIPE_BASE_DIR: must be an absolute folder"):
        resolve_paths(cfg, "relative/dir")


def test_jobs_read_relative_paths_from_graphpipe_base_dir(tmp_path, monkeypatch):
    from jobs.common import job_parser, load_job_config

    args = job_parser("t").parse_args(
        ["--run-dir", "r", "--set", "ingest.train_path=data/train.txt"]
    )
    monkeypatch.delenv("GRAPHPIPE_BASE_DIR", raising=False)
    assert load_job_config(args).ingest.train_path == "data/train.txt"  # the working directory
    monkeypatch.setenv("GRAPHPIPE_BASE_DIR", str(tmp_path))
    assert load_job_config(args).ingest.train_path == str(tmp_path / "data/train.txt")
