"""The partitioner's settings, its error and its result (shared by every phase and the stage).

Schema of the result: see :class:`PartitionResult`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame

from pipelines.core.config import ConfigError, PartitionConfig
from pipelines.core.config_sections import help_field as _h

__all__ = ["PartitionError", "PartitionResult", "PartitionSettings"]


class PartitionError(ConfigError):
    """The graph cannot be partitioned as configured; the message names the key or input."""


@dataclass(frozen=True)
class PartitionSettings:
    """All knobs of the partitioner: :class:`PartitionConfig` plus the seed and extras."""

    max_edges_per_leaf: int = _h(2_000_000, "Leaf bound on internal + cut edges (load).")
    num_leaves: int = _h(0, "Fixed number of leaves (0: derived from max_edges_per_leaf).")
    balance_tolerance: float = _h(0.05, "Leaf load may exceed the mean by this fraction.")
    halo_hops: int = _h(1, "Hops of outside nodes kept around each leaf.")
    seed: int = _h(0, "Seed of every hash and tie-break.")
    iterations_per_level: int = _h(8, "Refinement rounds per level of the hierarchy.")
    checkpoint_interval: int = _h(4, "Write per-round state to Parquet every N rounds.")
    coarsening_iterations: int = _h(3, "Label-propagation rounds per coarsening level.")
    coarsest_nodes_per_leaf: int = _h(160, "Stop coarsening at this many nodes per leaf.")
    max_levels: int = _h(30, "At most this many coarsening levels.")
    min_shrink: float = _h(0.95, "Stop coarsening when a level keeps more than this share.")
    cluster_active_fraction: float = _h(0.5, "Share of nodes that may move per LPA round.")
    refine_active_fraction: float = _h(0.7, "Share of nodes that may move per refinement round.")
    initial_tries: int = _h(8, "Seeded starts per bisection of the coarsest graph.")
    initial_iterations: int = _h(20, "Move rounds per start of a coarsest-graph bisection.")
    initial_refine_iterations: int = _h(20, "k-way rounds on the coarsest graph.")
    max_direct_edges: int = _h(
        4_000_000,
        "Graphs with at most this many adjacency rows (2 per undirected edge) skip the Spark "
        "coarsening and refinement: the one-task partitioner of the coarsest graph takes the "
        "fine graph itself (0: never).",
    )
    max_initial_edges: int = _h(
        10_000_000,
        "Largest coarsest graph (adjacency rows) partitioned in one task; above it "
        "the leaves start from a hash split refined on Spark.",
    )
    broadcast_max_nodes: int = _h(
        20_000_000,
        "Node tables up to this many rows are broadcast in the per-round joins (through the "
        "driver: O(nodes), never edges); above it the joins shuffle.",
    )
    work_dir: str | None = _h(None, "Folder for intermediate Parquet (default: checkpoint dir).")
    storage_level: str = _h("MEMORY_AND_DISK", "Storage level of persisted per-round tables.")

    @classmethod
    def from_config(
        cls, cfg: PartitionConfig, *, seed: int = 0, **extras: Any
    ) -> PartitionSettings:
        """Settings from the ``partition`` config section, the run seed and extra knobs."""
        base = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
        return cls(**base, seed=seed, **extras).validate()

    def validate(self) -> PartitionSettings:
        checks = [
            (self.max_edges_per_leaf >= 1, "max_edges_per_leaf", "must be >= 1"),
            (self.num_leaves >= 0, "num_leaves", "must be >= 0"),
            (0 <= self.balance_tolerance < 1, "balance_tolerance", "must be in [0, 1)"),
            (self.halo_hops >= 0, "halo_hops", "must be >= 0"),
            (self.seed >= 0, "seed", "must be >= 0"),
            (self.iterations_per_level >= 0, "iterations_per_level", "must be >= 0"),
            (self.checkpoint_interval >= 1, "checkpoint_interval", "must be >= 1"),
            (self.coarsening_iterations >= 1, "coarsening_iterations", "must be >= 1"),
            (self.coarsest_nodes_per_leaf >= 1, "coarsest_nodes_per_leaf", "must be >= 1"),
            (self.max_levels >= 0, "max_levels", "must be >= 0"),
            (0 < self.min_shrink <= 1, "min_shrink", "must be in (0, 1]"),
            (0 < self.cluster_active_fraction <= 1, "cluster_active_fraction", "must be in (0, 1]"),
            (0 < self.refine_active_fraction <= 1, "refine_active_fraction", "must be in (0, 1]"),
            (self.initial_tries >= 1, "initial_tries", "must be >= 1"),
            (self.initial_iterations >= 0, "initial_iterations", "must be >= 0"),
            (self.initial_refine_iterations >= 0, "initial_refine_iterations", "must be >= 0"),
            (self.max_initial_edges >= 0, "max_initial_edges", "must be >= 0"),
            (self.max_direct_edges >= 0, "max_direct_edges", "must be >= 0"),
            (self.broadcast_max_nodes >= 0, "broadcast_max_nodes", "must be >= 0"),
            (hasattr(StorageLevel, self.storage_level), "storage_level", "unknown StorageLevel"),
        ]
        for ok, key, msg in checks:
            if not ok:
                raise ConfigError(f"partition.{key}: {msg}")
        return self

    def leaves_for(self, total_load: int, num_nodes: int) -> int:
        """Number of leaves for a graph of this load; raises when it exceeds the nodes."""
        if self.num_leaves > 0:
            k, key = self.num_leaves, "partition.num_leaves"
        else:
            k = max(
                1, math.ceil((1 + self.balance_tolerance) * total_load / self.max_edges_per_leaf)
            )
            key = "partition.max_edges_per_leaf"
        if k > num_nodes:
            raise PartitionError(
                f"{key}: asks for {k} leaves but the graph has only {num_nodes} nodes"
            )
        return k


@dataclass(frozen=True)
class PartitionResult:
    """The partition: four tables and the quality figures.

    Schema:
        assignment ``(node_id, kind, leaf_id, depth, path: array<struct<level, part>>)``;
        leaf_stats ``(leaf_id, depth, nodes, internal_edges, cut_edges, load, halo_nodes,
        halo_edges)``; halo_nodes ``(leaf_id, node_id, kind, hops)``; halo_edges ``(leaf_id,
        src, dst[, rel])`` or ``(leaf_id, user, item)`` for interactions.
    """

    assignment: DataFrame
    leaf_stats: DataFrame
    halo_nodes: DataFrame
    halo_edges: DataFrame
    quality: dict[str, Any]
    location: str
