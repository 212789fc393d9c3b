"""Per-leaf results -> one global embedding table, with vector algebra done in Spark tasks.

Design (measured in bench/pipeline.py): every leaf starts from the same deterministic global
initialisation, trains its ego embeddings for a few epochs on its core and halo edges, and the
replicas of a node held by several leaves (halo copies, items shared by users of many leaves) are
averaged with weights = the node's edge count in each leaf (federated averaging, McMahan et al.
2017, Eq. 1: ``w = Σ_k (n_k / n) w_k``). After the last round the LightGCN propagation
(He et al. 2020, Eq. 3-4: ``e_u^{(l+1)} = Σ_{i∈N_u} e_i^{(l)} / sqrt(|N_u||N_i|)``, final
``e = mean_l e^{(l)}``) runs over the *whole* graph in Spark, so every vector is computed from the
same global neighbourhoods and scores are comparable across leaves. Cost per layer and direction:
one pass over the edges that ships each vector once (:mod:`pipelines.propagate`), linear in
nodes + edges; nothing is collected to the driver.

Vectors travel as raw float32 bytes (``binary``), see :mod:`pipelines.bridge`.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.bridge import vectors_to_bytes
from pipelines.propagate import (
    VECTOR_TABLE_SCHEMA,
    bucket_edges,
    push_partial_sums,
    reduce_by_node,
    sum_partials,
)
from pipelines.schema import ITEM, KIND, NODE_ID, USER, VECTOR

WEIGHT_COL = "w"


_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser, vectorised (uint64 in, uint64 out)."""
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return z ^ (z >> np.uint64(31))


def seeded_normal(
    node_ids: np.ndarray, kind_code: int, dim: int, seed: int, std: float
) -> np.ndarray:
    """Deterministic N(0, std²) vectors per (seed, kind, node id): same on every task and run.

    Shapes:
        node_ids: ``[n]`` int64 -> ``[n, dim]`` float32.
    """
    ids = node_ids.astype(np.uint64)[:, None]
    cols = np.arange(dim, dtype=np.uint64)[None, :]
    with np.errstate(over="ignore"):
        base = ids * np.uint64(0x100000001B3) + np.uint64(seed) * np.uint64(0x5851F42D4C957F2D)
        base = base + np.uint64(kind_code) * np.uint64(0x14057B7EF767814F)
        h1 = _splitmix64(base * np.uint64(2 * 1024) + cols * np.uint64(2))
        h2 = _splitmix64(base * np.uint64(2 * 1024) + cols * np.uint64(2) + np.uint64(1))
    u1 = ((h1 >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)
    u2 = ((h2 >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)
    z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)  # Box-Muller
    return (z * std).astype(np.float32)


KIND_CODES = {USER: 1, ITEM: 2, "node": 3, "entity": 4}


def initial_vectors(nodes: DataFrame, *, dim: int, seed: int, std: float = 0.1) -> DataFrame:
    """The shared initialisation every leaf starts from.

    Schema:
        in: ``kind`` string, ``node_id`` long. out: :data:`VECTOR_TABLE_SCHEMA`.
    """

    def fn(batches: Iterable[pd.DataFrame]) -> Iterable[pd.DataFrame]:
        for pdf in batches:
            parts = []
            for kind, group in pdf.groupby(KIND, sort=False):
                ids = group[NODE_ID].to_numpy(np.int64)
                vecs = seeded_normal(ids, KIND_CODES.get(str(kind), 0), dim, seed, std)
                parts.append(
                    pd.DataFrame({KIND: kind, NODE_ID: ids, VECTOR: vectors_to_bytes(vecs)})
                )
            if parts:
                yield pd.concat(parts, ignore_index=True)

    return nodes.select(KIND, NODE_ID).distinct().mapInPandas(fn, schema=VECTOR_TABLE_SCHEMA)


def weighted_mean_by_node(
    rows: DataFrame, *, dim: int, partitions: int, normalise: bool = True
) -> DataFrame:
    """Σ_r w_r v_r per (kind, node_id), divided by Σ_r w_r when ``normalise``.

    Schema:
        in: ``kind`` string, ``node_id`` long, ``w`` double, ``vector`` binary.
        out: :data:`VECTOR_TABLE_SCHEMA`.
    """

    def finish(sums: np.ndarray, wsum: np.ndarray) -> np.ndarray:
        return sums / np.where(wsum == 0, 1.0, wsum)[:, None] if normalise else sums

    return reduce_by_node(
        rows, dim=dim, partitions=partitions, weight_vectors=True, finish=finish
    )


def lightgcn_propagate(
    interactions: DataFrame, ego: DataFrame, *, dim: int, layers: int, partitions: int
) -> DataFrame:
    """LightGCN's final embeddings over the whole bipartite graph, computed in Spark.

    ``e^{(l+1)}_u = Σ_{i∈N_u} e^{(l)}_i / sqrt(|N_u| |N_i|)`` (and symmetrically for items),
    ``e = (1 / (L + 1)) Σ_{l=0}^{L} e^{(l)}``.

    Schema:
        interactions: ``user`` long, ``item`` long (distinct training pairs).
        ego: :data:`VECTOR_TABLE_SCHEMA` with kinds user and item.
        returns: :data:`VECTOR_TABLE_SCHEMA`.
    """
    pairs = interactions.select(USER, ITEM).distinct()
    user_to_item = bucket_edges(
        pairs.select(F.col(USER).alias("u"), F.col(ITEM).alias("v")), buckets=partitions
    ).localCheckpoint()
    item_to_user = bucket_edges(
        pairs.select(F.col(ITEM).alias("u"), F.col(USER).alias("v")), buckets=partitions
    ).localCheckpoint()
    share = 1.0 / (layers + 1)
    # Checkpointed: layer 0 feeds the first push and the final mean (it would be computed twice).
    layer = ego.select(KIND, NODE_ID, VECTOR).localCheckpoint()
    acc = [layer.withColumn(WEIGHT_COL, F.lit(share))]
    for _ in range(layers):
        users = layer.where(F.col(KIND) == USER)
        items = layer.where(F.col(KIND) == ITEM)
        to_items = push_partial_sums(
            user_to_item, users, dim=dim, buckets=partitions, out_kind=ITEM
        )
        to_users = push_partial_sums(
            item_to_user, items, dim=dim, buckets=partitions, out_kind=USER
        )
        layer = sum_partials(
            to_items.unionByName(to_users), dim=dim, partitions=partitions
        ).localCheckpoint()
        acc.append(layer.withColumn(WEIGHT_COL, F.lit(share)))
    stacked = acc[0]
    for part in acc[1:]:
        stacked = stacked.unionByName(part)
    return weighted_mean_by_node(stacked, dim=dim, partitions=partitions, normalise=False)
