"""Partitioned embedding of a homogeneous graph: per-leaf training in Spark tasks, then aggregation.

The bipartite seam (:mod:`pipelines.train.seam`) trains user-item leaves; this module does the
same for one node type (R-MAT, social graphs): each leaf's core and halo edges go to one Spark
task (``applyInPandas``), which runs :func:`pipelines.train.seam_homogeneous.train_leaf_homogeneous`
(LightGCN-style propagation over the leaf's undirected graph, BPR on ``(u, v, random v')``, from
the shared deterministic initialisation, so every replica of a node starts from the same vector).
Replicas (halo nodes) are then averaged with weights = the node's edge count in each leaf
(federated averaging, McMahan et al. 2017, Eq. 1), and the final LightGCN propagation (He et al.,
SIGIR 2020, Eq. 8-9 per layer, Eq. 4 for ``E = 1/(K+1) sum_k A_hat^k E^(0)``) runs over the whole
graph in Spark, so every node's final vector sees its global neighbourhood. Nothing is collected
to the driver but one log row per leaf. This module is plain PySpark; torch runs in the seam.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pipelines.aggregate.propagate import bucket_edges, propagate_layer
from pipelines.aggregate.stage import WEIGHT_COL, layer_mean, weighted_mean_by_node
from pipelines.core.local_tables import local_frame
from pipelines.core.schema import DST, KIND, LEAF_ID, NODE_ID, SRC, VECTOR
from pipelines.partition.output import internal_and_halo_edges
from pipelines.train.homogeneous_direct import (
    DEFAULT_MAX_DIRECT_PAIRS,
    aggregate_homogeneous_one_task,
)
from pipelines.train.leaf_slots import balanced_slots, slot_keys
from pipelines.train.rounds import SLOT_KEY
from pipelines.train.seam import WEIGHTED_ROWS_SCHEMA, LeafTrainSettings
from pipelines.train.seam_homogeneous import NODE_KIND, train_leaf_homogeneous

_SPLIT_PLAN_SCHEMA = T.StructType(
    [T.StructField(c, T.LongType(), False) for c in (LEAF_ID, "_parts", "_base")]
)


def leaf_edge_rows(pairs: DataFrame, assignment: DataFrame, halo_edges: DataFrame) -> DataFrame:
    """Every leaf's training edges: its internal edges plus its halo (cut) edges.

    Schema:
        pairs: ``src, dst`` (undirected simple pairs); assignment: ``node_id, leaf_id``;
        halo_edges: ``leaf_id, src, dst``. Returns ``leaf_id`` long, ``src`` long, ``dst`` long.
    """
    return internal_and_halo_edges(pairs, assignment, halo_edges, (SRC, DST))


def split_oversized_leaves(
    leaf_edges: DataFrame, max_edges: int
) -> tuple[DataFrame, dict[int, int], dict[int, int]]:
    """Split every leaf over ``max_edges`` edges into ``ceil(n / max_edges)`` sub-leaves.

    A hub's edges cannot be split by moving nodes (its load is one node's), so an overfull leaf
    is cut by edge (a vertex cut): its edges, ordered by a hash of ``(src, dst)``, are dealt
    round-robin to the sub-leaves, so each holds at most ``ceil(n / parts) <= max_edges``. The
    first sub-leaf keeps the leaf's id, the others get fresh ids above the largest one. Nodes
    shared by sub-leaves are replicas like halo nodes, averaged by the aggregation. Only the
    per-leaf edge counts reach the driver.

    Schema:
        in/out: ``leaf_id`` long, ``src`` long, ``dst`` long (``(src, dst)`` distinct per leaf).
        returns also ``{leaf_id: parts}`` for every leaf that was split and the edge count of
        every (sub-)leaf afterwards.
    """
    if max_edges < 1:
        raise ValueError(f"max_edges: must be >= 1 (got {max_edges})")
    spark = leaf_edges.sparkSession
    sizes = {
        int(r[LEAF_ID]): int(r["count"]) for r in leaf_edges.groupBy(LEAF_ID).count().collect()
    }
    over = sorted(leaf for leaf, n in sizes.items() if n > max_edges)
    if not over:
        return leaf_edges, {}, sizes
    plan, parts_of, next_id = [], {}, max(sizes) + 1
    after = dict(sizes)
    for leaf in over:
        n, parts = sizes[leaf], -(-sizes[leaf] // max_edges)
        plan.append((leaf, parts, next_id))
        parts_of[leaf] = parts
        # row j goes to sub-leaf j % parts: the first n % parts sub-leaves get one more
        dealt = [n // parts + (1 if j < n % parts else 0) for j in range(parts)]
        after[leaf] = dealt[0]
        after.update({next_id + j - 1: dealt[j] for j in range(1, parts)})
        next_id += parts - 1
    plan_df = local_frame(spark, plan, _SPLIT_PLAN_SCHEMA)
    marked = leaf_edges.select(LEAF_ID, SRC, DST).join(F.broadcast(plan_df), LEAF_ID, "left")
    kept = marked.where(F.col("_parts").isNull()).select(LEAF_ID, SRC, DST)
    order = Window.partitionBy(LEAF_ID).orderBy(F.xxhash64(SRC, DST), SRC, DST)
    part = (F.row_number().over(order) - 1) % F.col("_parts")
    new_id = F.when(part == 0, F.col(LEAF_ID)).otherwise(F.col("_base") + part - 1)
    split = marked.where(F.col("_parts").isNotNull()).select(
        new_id.cast("long").alias(LEAF_ID), SRC, DST
    )
    return kept.unionByName(split), parts_of, after


def one_leaf_per_task(leaf_edges: DataFrame, sizes: Mapping[int, int]) -> DataFrame:
    """``leaf_edges`` plus ``slot_key``, hash-partitioned so that every leaf has its own task.

    ``repartition(k, leaf_id)`` puts whichever leaves hash together into one task and leaves
    other tasks empty (1M R-MAT, 10 leaves: 3 tasks of two leaves, 3 empty, a 1.6x longer
    stage). Each leaf gets a key whose Spark hash partition is its own
    (:func:`pipelines.train.leaf_slots.slot_keys`), largest leaves on the lowest partitions, which
    Spark starts first. Group by ``slot_key`` afterwards (one leaf per key): no second shuffle.

    Schema:
        in: ``leaf_id`` long, ``src``, ``dst``; sizes: edges per leaf (every leaf present).
        out: the same plus ``slot_key`` long.
    """
    spark = leaf_edges.sparkSession
    slots = max(1, len(sizes))
    keys = slot_keys(spark, balanced_slots(sizes, slots), slots)
    # a map literal (one entry per leaf), not a join
    key_of_leaf = F.create_map(*[F.lit(x).cast("long") for kv in sorted(keys.items()) for x in kv])
    return leaf_edges.withColumn(SLOT_KEY, key_of_leaf[F.col(LEAF_ID)]).repartition(slots, SLOT_KEY)


def train_leaves_homogeneous(
    leaf_edges: DataFrame, settings: LeafTrainSettings, *, group_key: str = LEAF_ID
) -> DataFrame:
    """Run :func:`train_leaf_homogeneous` once per ``leaf_id`` group inside Spark tasks.

    ``group_key``: ``slot_key`` after :func:`one_leaf_per_task` (one leaf per key).

    Schema:
        in: ``leaf_id``, ``src``, ``dst`` (long), and ``group_key``. out:
        :data:`WEIGHTED_ROWS_SCHEMA`.
    """

    def fn(pdf: pd.DataFrame) -> pd.DataFrame:
        return train_leaf_homogeneous(pdf, settings)

    cols = [LEAF_ID, SRC, DST] + ([group_key] if group_key != LEAF_ID else [])
    return (
        leaf_edges.select(*cols).groupBy(group_key).applyInPandas(fn, schema=WEIGHTED_ROWS_SCHEMA)
    )


def propagate_homogeneous(
    pairs: DataFrame,
    ego: DataFrame,
    *,
    dim: int,
    layers: int,
    partitions: int,
    buckets: int | None = None,
) -> DataFrame:
    """Final embeddings ``1/(K+1) sum_k A_hat^k E^(0)`` over the whole undirected graph, in Spark.

    ``A_hat[u, v] = 1 / sqrt(deg(u) deg(v))`` for every edge of the undirected simple graph
    (LightGCN Eq. 8-9 with one node type; the layer mean is Eq. 4,
    :func:`pipelines.aggregate.stage.layer_mean`). Each layer pushes every vector once along its
    edges and counts degrees where the edges already are
    (:func:`pipelines.aggregate.propagate.propagate_layer`), with the edges hashed into
    ``buckets`` (default ``partitions``): fewer buckets mean fewer partial rows per layer (at
    most ``buckets`` per node) and more edges per task.

    Schema:
        pairs: ``src, dst`` (undirected simple pairs, each once); ego:
        :data:`pipelines.aggregate.stage.VECTOR_TABLE_SCHEMA` (kind ``node``). Returns the same
        schema.
    """
    both = pairs.select(F.col(SRC).alias("u"), F.col(DST).alias("v")).unionByName(
        pairs.select(F.col(DST).alias("u"), F.col(SRC).alias("v"))
    )
    buckets = buckets or partitions
    edges = bucket_edges(both, buckets=buckets).localCheckpoint()

    def step(layer: DataFrame) -> DataFrame:
        return propagate_layer(edges, layer, dim=dim, buckets=buckets, out_kind=NODE_KIND)

    return layer_mean(ego, step, layers=layers, dim=dim, partitions=partitions)


def aggregate_homogeneous(
    rows: DataFrame,
    pairs: DataFrame,
    *,
    dim: int,
    layers: int,
    partitions: int,
    buckets: int | None = None,
    max_direct_pairs: int = DEFAULT_MAX_DIRECT_PAIRS,
) -> DataFrame:
    """Leaf rows -> global final embeddings: weighted mean of replicas, then propagation.

    A graph of at most ``max_direct_pairs`` pairs (0: never) is aggregated in one Spark task
    (:mod:`pipelines.train.homogeneous_direct`: same result up to float32 rounding, without the
    shuffles' fixed cost); larger ones by the shuffles below, linear in nodes + edges.

    Schema:
        rows: :data:`WEIGHTED_ROWS_SCHEMA`; pairs: ``src, dst``. Returns
        :data:`pipelines.aggregate.stage.VECTOR_TABLE_SCHEMA` (kind ``node``).
    """
    if max_direct_pairs < 0:
        raise ValueError(f"max_direct_pairs: must be >= 0 (got {max_direct_pairs})")
    if max_direct_pairs and pairs.count() <= max_direct_pairs:
        return aggregate_homogeneous_one_task(rows, pairs, dim=dim, layers=layers)
    ego = weighted_mean_by_node(
        rows.select(KIND, NODE_ID, WEIGHT_COL, VECTOR), dim=dim, partitions=partitions
    )
    return propagate_homogeneous(
        pairs, ego, dim=dim, layers=layers, partitions=partitions, buckets=buckets
    )
