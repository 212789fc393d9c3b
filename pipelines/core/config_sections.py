"""The sections of :class:`pipelines.core.config.PipelineConfig`, one frozen dataclass each.

Every field carries a help text in its metadata and its default is the value a local run uses
(``deploy/configs/local.yaml`` adds only the data paths); ``validate`` raises
:class:`ConfigError` naming the dotted key of a bad value.
"""

from __future__ import annotations

import copy
import functools
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "INGEST_FORMATS",
    "ConfigError",
    "ExportConfig",
    "IngestConfig",
    "ModelConfig",
    "NBFNetConfig",
    "PartitionConfig",
    "RunConfig",
    "SparkConfig",
    "TrainConfig",
    "help_field",
]


class ConfigError(ValueError):
    """A config key is unknown or its value is invalid; the message names the key."""


def help_field(default: Any, help: str) -> Any:  # noqa: A002 - reads best in field declarations
    """A dataclass field with a default (a dict or list default: a fresh deep copy per instance)
    and its help text in ``metadata["help"]``."""
    if isinstance(default, (dict, list)):
        factory: Any = functools.partial(copy.deepcopy, default)
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


_f = help_field


def _require(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {msg}")


@dataclass(frozen=True)
class RunConfig:
    name: str = _f("graphpipe", "Run name, used as the Spark application name prefix.")
    seed: int = _f(0, "Global seed: sampling, initialisation, partitioning.")

    def validate(self) -> None:
        _require(self.seed >= 0, "run.seed", "must be >= 0")


@dataclass(frozen=True)
class SparkConfig:
    master: str | None = _f(None, "Spark master; None = local[*] or what spark-submit passed.")
    shuffle_partitions: int = _f(8, "spark.sql.shuffle.partitions.")
    conf: dict[str, str] = _f({}, "Extra Spark settings, passed as-is.")

    def validate(self) -> None:
        _require(self.shuffle_partitions >= 1, "spark.shuffle_partitions", "must be >= 1")


INGEST_FORMATS = ("lightgcn", "pairs", "edges", "triples")


@dataclass(frozen=True)
class IngestConfig:
    train_path: str = _f("", "Training interactions / edges (file or folder; .gz accepted).")
    test_path: str = _f("", "Held-out interactions for evaluation (optional).")
    format: str = _f("lightgcn", "lightgcn | pairs | edges | triples.")
    file_type: str = _f("auto", "auto | text | csv | tsv | parquet (auto: by extension).")
    delimiter: str = _f("auto", "Field delimiter for text files: auto, ',', '\\t' or ' '.")
    header: bool = _f(False, "Text files start with a header row.")
    numeric_ids: bool = _f(True, "Ids must be integers; non-numeric ids are rejected.")
    weighted: bool = _f(False, "A weight column follows src/dst (negative or NaN: rejected).")
    timestamped: bool = _f(False, "A timestamp column follows (the weight, if any).")
    drop_duplicates: bool = _f(True, "Remove duplicate edges (counted).")
    drop_self_loops: bool = _f(True, "Remove self-loops src == dst (counted).")
    tombstones_dir: str = _f(
        "",
        "Forget tombstones, written by the forget job and applied by every ingest (empty: "
        "<run-dir>/tombstones). Point scheduled runs (one run dir per date) at one shared folder.",
    )

    def validate(self) -> None:
        _require(self.format in INGEST_FORMATS, "ingest.format", f"must be one of {INGEST_FORMATS}")
        _require(
            self.file_type in ("auto", "text", "csv", "tsv", "parquet"),
            "ingest.file_type",
            "must be auto, text, csv, tsv or parquet",
        )
        _require(
            self.delimiter in ("auto", ",", "\t", " ", ";", "|"),
            "ingest.delimiter",
            "must be auto or one of , \\t space ; |",
        )


@dataclass(frozen=True)
class PartitionConfig:
    max_edges_per_leaf: int = _f(2_000_000, "Split until every leaf has at most this many edges.")
    num_leaves: int = _f(0, "Fixed number of leaves (0: derived from max_edges_per_leaf).")
    balance_tolerance: float = _f(0.05, "Allowed excess of a leaf over the mean size.")
    halo_hops: int = _f(1, "Hops of outside nodes kept around each leaf.")
    iterations_per_level: int = _f(8, "Refinement iterations per bisection level.")
    checkpoint_interval: int = _f(4, "Truncate lineage every N iterations.")
    max_direct_edges: int = _f(
        4_000_000,
        "Graphs with at most this many adjacency rows (2 per edge) are partitioned whole in one "
        "task, without Spark coarsening (0: never).",
    )

    def validate(self) -> None:
        _require(self.max_edges_per_leaf >= 1, "partition.max_edges_per_leaf", "must be >= 1")
        _require(self.num_leaves >= 0, "partition.num_leaves", "must be >= 0")
        _require(
            0 <= self.balance_tolerance < 1, "partition.balance_tolerance", "must be in [0, 1)"
        )
        _require(self.halo_hops >= 0, "partition.halo_hops", "must be >= 0")
        _require(self.iterations_per_level >= 0, "partition.iterations_per_level", "must be >= 0")
        _require(self.checkpoint_interval >= 1, "partition.checkpoint_interval", "must be >= 1")
        _require(self.max_direct_edges >= 0, "partition.max_direct_edges", "must be >= 0")


@dataclass(frozen=True)
class ModelConfig:
    name: str = _f(
        "lightgcn",
        "lightgcn (the only model of the recommendation run; knowledge graphs run NBFNet "
        "through jobs/kg.py and the nbfnet section).",
    )
    dim: int = _f(64, "Embedding / hidden dimension.")
    layers: int = _f(3, "Propagation layers.")

    def validate(self) -> None:
        _require(
            self.name == "lightgcn",
            "model.name",
            "must be lightgcn: the recommendation run trains LightGCN only (it used to accept "
            "nbfnet and train LightGCN anyway); knowledge graphs run partitioned NBFNet with "
            "jobs/kg.py, configured by the nbfnet section",
        )
        _require(self.dim >= 1, "model.dim", "must be >= 1")
        _require(self.layers >= 0, "model.layers", "must be >= 0")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = _f(400, "Maximum training epochs (per round when the graph has several leaves).")
    rounds: int = _f(1, "Rounds of per-leaf training + averaging of shared nodes.")
    batch_size: int = _f(65536, "BPR triples per step.")
    lr: float = _f(0.02, "Adam learning rate.")
    reg: float = _f(1e-4, "L2 weight on the ego embeddings of a batch (BPR regulariser).")
    device: str = _f("auto", "auto (cuda when present) | cpu | cuda | cuda:N.")
    time_budget_minutes: float = _f(6.0, "Stop training after this many minutes (0: no limit).")
    threads: int = _f(2, "torch threads (0: all cores available to the process or task).")
    vector_dtype: str = _f(
        "float32", "float32 | float16: bytes of the vectors the rounds move (sums stay float64)."
    )
    shared_step: float = _f(
        1.0,
        "Server step on nodes held by several leaves between rounds "
        "(1: plain federated averaging; see BENCHMARKS.md for the measured choice).",
    )

    def validate(self) -> None:
        _require(self.epochs >= 0, "train.epochs", "must be >= 0")
        _require(
            self.vector_dtype in ("float32", "float16"),
            "train.vector_dtype",
            "must be float32 or float16",
        )
        _require(0 < self.shared_step <= 8, "train.shared_step", "must be in (0, 8]")
        _require(self.rounds >= 1, "train.rounds", "must be >= 1")
        _require(self.batch_size >= 1, "train.batch_size", "must be >= 1")
        _require(self.lr > 0, "train.lr", "must be > 0")
        _require(self.reg >= 0, "train.reg", "must be >= 0")
        _require(
            self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
            "train.device",
            "must be auto, cpu, cuda or cuda:N",
        )
        _require(self.time_budget_minutes >= 0, "train.time_budget_minutes", "must be >= 0")
        _require(self.threads >= 0, "train.threads", "must be >= 0")


@dataclass(frozen=True)
class ExportConfig:
    top_k: int = _f(20, "Recommendations per user; Recall@K and NDCG@K use the same K.")
    user_block_size: int = _f(4096, "Users scored per matrix product.")
    item_block_size: int = _f(4096, "Items scored per block when finding similar items.")
    similar_k: int = _f(20, "Similar items kept per item (0: skip similar items).")
    ann_index: str = _f("ivf", "faiss index over item vectors: ivf | hnsw | flat.")
    hnsw_m: int = _f(32, "HNSW graph degree (M).")
    hnsw_ef_search: int = _f(128, "HNSW search depth (efSearch).")
    ivf_lists: int = _f(0, "IVF inverted lists (0: about 4 * sqrt(items)).")
    ivf_probe: int = _f(16, "IVF lists probed per query (nprobe).")
    serving_table_prefix: str = _f(
        "graphpipe", "PostgreSQL table prefix; credentials come from PG* environment variables."
    )

    def validate(self) -> None:
        _require(self.top_k >= 1, "export.top_k", "must be >= 1")
        _require(self.user_block_size >= 1, "export.user_block_size", "must be >= 1")
        _require(self.item_block_size >= 1, "export.item_block_size", "must be >= 1")
        _require(self.similar_k >= 0, "export.similar_k", "must be >= 0")
        _require(
            self.ann_index in ("hnsw", "ivf", "flat"),
            "export.ann_index",
            "must be hnsw, ivf or flat",
        )
        _require(self.hnsw_m >= 2, "export.hnsw_m", "must be >= 2")
        _require(self.hnsw_ef_search >= 1, "export.hnsw_ef_search", "must be >= 1")
        _require(self.ivf_lists >= 0, "export.ivf_lists", "must be >= 0")
        _require(self.ivf_probe >= 1, "export.ivf_probe", "must be >= 1")
        _require(
            re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", self.serving_table_prefix) is not None,
            "export.serving_table_prefix",
            "must be a lower-case SQL identifier (letters, digits, _)",
        )


@dataclass(frozen=True)
class NBFNetConfig:
    """The knowledge-graph run (``jobs/kg.py``): partitioned NBFNet trained in Spark tasks."""

    dim: int = _f(32, "State width d.")
    layers: int = _f(6, "Bellman-Ford iterations T.")
    rounds: int = _f(2, "Rounds of per-leaf training + federated averaging.")
    steps_per_round: int = _f(10, "Adam steps per leaf and round.")
    batch_size: int = _f(4, "Training queries per Adam step.")
    lr: float = _f(5e-3, "Adam learning rate.")
    num_negative: int = _f(32, "Negatives per training query.")
    adversarial_temperature: float = _f(0.5, "Self-adversarial temperature (0: uniform).")
    eval_batch_size: int = _f(32, "Test queries per Bellman-Ford pass.")
    test_queries: int = _f(0, "Rank at most this many test triples (x2 queries; 0: all).")
    device: str = _f("auto", "auto (the task's GPU when Spark gave one) | cpu | cuda[:N].")
    threads: int = _f(0, "torch threads per Spark task (0: the task's cores).")

    def validate(self) -> None:
        for name in ("dim", "layers", "rounds", "steps_per_round", "batch_size", "eval_batch_size"):
            _require(getattr(self, name) >= 1, f"nbfnet.{name}", "must be >= 1")
        _require(self.lr > 0, "nbfnet.lr", "must be > 0")
        _require(self.num_negative >= 1, "nbfnet.num_negative", "must be >= 1")
        _require(
            self.adversarial_temperature >= 0, "nbfnet.adversarial_temperature", "must be >= 0"
        )
        _require(self.test_queries >= 0, "nbfnet.test_queries", "must be >= 0")
        _require(
            self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
            "nbfnet.device",
            "must be auto, cpu or cuda[:N]",
        )
        _require(self.threads >= 0, "nbfnet.threads", "must be >= 0")
