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
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert str(err.value) == (
        f"config file {p}: invalid YAML: line 1, column 8: YAML tag "
        "!!python/object/apply:os.system is not allowed (plain values only)"
    )
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


@pytest.mark.parametrize(
    "text", ["0010", "1_000", "0x1F", "data.csv #v2", "2024-01-01", "yes", "null", "1e3", " a b "]
)
def test_set_keeps_the_text_of_a_string_field(text):
    """--set ingest.train_path=0010 names the file 0010 (not 8, YAML 1.1's octal)."""
    cfg = load_config(overrides=[f"ingest.train_path={text}", f"run.name={text}"])
    assert cfg.ingest.train_path == text and cfg.run.name == text
    assert load_config(overrides=["ingest.test_path="]).ingest.test_path == ""


@pytest.mark.parametrize(
    "override, attr, value",
    [
        ("train.epochs=0010", "epochs", 10),
        ("train.epochs=1_000", "epochs", 1000),
        ("train.epochs=1e3", "epochs", 1000),
        ("train.epochs=0x1F", "epochs", 31),
        ("train.lr=1e-3", "lr", 0.001),
        ("train.lr=2", "lr", 2.0),
        ("train.lr=.5", "lr", 0.5),
    ],
)
def test_set_reads_numbers_for_number_fields(override, attr, value):
    got = getattr(load_config(overrides=[override]).train, attr)
    assert got == value and type(got) is type(value)


def test_set_bools_and_optional_strings():
    cfg = load_config(overrides=["ingest.header=yes", "ingest.weighted=false"])
    assert cfg.ingest.header is True and cfg.ingest.weighted is False
    assert load_config(overrides=["spark.master=null"]).spark.master is None
    assert load_config(overrides=["spark.master=local[2]"]).spark.master == "local[2]"
    assert load_config(overrides=["spark.conf={spark.a: 1}"]).spark.conf == {"spark.a": "1"}
    with pytest.raises(ConfigError, match=r"^ingest\.header: expected true or false"):
        load_config(overrides=["ingest.header=0010"])


@pytest.mark.parametrize(
    "override",
    [
        "train.epochs=.inf",
        "run.seed=.nan",
        "train.lr=inf",
        "train.lr=nan",
        "train.lr=-.inf",
        "nbfnet.lr=NaN",
        "partition.balance_tolerance=.NaN",
        "train.epochs=1e400",
    ],
)
def test_set_refuses_inf_and_nan_naming_the_key(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    assert str(err.value).startswith(f"{key}: must be a finite number, got ")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "body, key",
    [
        ("train:\n  epochs: .inf\n", "train.epochs"),
        ("run:\n  seed: .nan\n", "run.seed"),
        ("train:\n  lr: -.inf\n", "train.lr"),
    ],
)
def test_config_file_refuses_inf_and_nan_naming_the_key(tmp_path, body, key):
    p = tmp_path / "c.yaml"
    p.write_text(body)
    with pytest.raises(ConfigError, match=rf"^{key}: must be a finite number"):
        load_config(p)


def test_config_file_values_are_typed_by_their_field(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(
        "ingest:\n  train_path: 0010\n  test_path: 2024-01-01\n  tombstones_dir: 0x1F # c\n"
        "  header: yes\ntrain:\n  epochs: 0010\n  lr: 1e-3\n"
        "spark:\n  master: null\n  conf: {spark.x: 0010}\n"
    )
    cfg = load_config(p)
    assert (cfg.ingest.train_path, cfg.ingest.test_path) == ("0010", "2024-01-01")
    assert cfg.ingest.tombstones_dir == "0x1F" and cfg.ingest.header is True
    assert (cfg.train.epochs, cfg.train.lr) == (10, 0.001)
    assert cfg.spark.master is None and cfg.spark.conf == {"spark.x": "0010"}


@pytest.mark.parametrize(
    "override",
    [
        "train.lr=!!python/object/apply:os.system ['echo hi']",
        "ingest.train_path=!!python/object:os.system",
        "spark.conf={a: !!python/name:os.system ''}",
        "train=!!python/object/new:dict []",
    ],
)
def test_set_refuses_python_tags_in_one_line(override):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    message = str(err.value)
    assert message.startswith(override.split("=")[0] + ": ") and "\n" not in message
    assert "!!python/" in message and "not allowed" in message


@pytest.mark.parametrize(
    "body, where",
    [
        ("train: [1, 2\n", "line 2, column 1"),
        ("a: 1\n---\nb: 2\n", "line 2, column 1"),
        ("- 1\n", "top level must be a mapping"),
        ("run:\n  name: !!python/name:os.system ''\n", "line 2, column 9"),
    ],
)
def test_config_file_errors_are_one_line(tmp_path, body, where):
    p = tmp_path / "c.yaml"
    p.write_text(body)
    with pytest.raises(ConfigError) as err:
        load_config(p)
    message = str(err.value)
    assert message.startswith(f"config file {p}: ") and "\n" not in message
    assert where in message
