"""Peer for bench/scale.py: random-walk node embeddings on Spark (GraphFrames' method).

GraphFrames 0.10+ ``RandomWalkEmbeddings`` runs random walks with restart from every vertex,
then a sequence model (Spark ML ``Word2Vec`` or Hash2Vec) over the walks (DeepWalk, Perozzi,
Al-Rfou, Skiena, KDD 2014, Algorithm 1-2). Its JVM JAR is not served by the Maven registry here
(``make setup`` writes ``.cache/jars/UNAVAILABLE``), so when GraphFrames cannot run, this module
runs the same algorithm with plain DataFrames: ``walks_per_node`` walks of ``walk_length``
nodes start at every node; each step moves to a uniform neighbour of the undirected graph, or
back to the start node with probability ``restart_probability`` (GraphFrames' defaults: 5 walks
per node, restart 0.1); the walks are the sentences of ``pyspark.ml.feature.Word2Vec``
(GraphFrames' defaults: 1 iteration, window 5, 1 partition; ``minCount`` 0 here so that every
node gets a vector). Not reproduced: GraphFrames' cap of 50 sampled neighbours per vertex and
its optional neighbour aggregation of the vectors.

Every random choice is a hash of ``(walk id, step, seed)``, so the walks do not depend on the
number of partitions.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from pyspark.ml.feature import Word2Vec
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pipelines.aggregate.stage import VECTOR_TABLE_SCHEMA
from pipelines.core.schema import DST, KIND, NODE_ID, SRC, VECTOR
from pipelines.core.vector_bytes import vectors_to_bytes

WALK = "walk"
PEER_LABEL = "spark random walks + Word2Vec (GraphFrames JAR not served)"
_COIN = 1 << 20


def random_walks(
    pairs: DataFrame,
    *,
    walks_per_node: int = 5,
    walk_length: int = 20,
    restart_probability: float = 0.1,
    seed: int = 0,
    checkpoint_every: int = 5,
) -> DataFrame:
    """Random walks with restart from every node of the undirected graph.

    Schema:
        pairs: ``src, dst`` (long; each undirected edge once or more).
        Returns ``walk: array<string>`` (node ids as strings, ``walk_length`` of them), one row
        per walk, ``walks_per_node`` rows per node.
    """
    if walks_per_node < 1 or walk_length < 1:
        raise ValueError("walks_per_node and walk_length must be >= 1")
    both = pairs.select(F.col(SRC).alias("node"), F.col(DST).alias("nbr")).unionByName(
        pairs.select(F.col(DST).alias("node"), F.col(SRC).alias("nbr"))
    )
    adj = (
        both.where(F.col("node") != F.col("nbr"))
        .distinct()
        .groupBy("node")
        .agg(F.array_sort(F.collect_list("nbr")).alias("nbrs"))
        .withColumn("deg", F.size("nbrs"))
        .localCheckpoint()
    )
    starts = adj.select(F.col("node").alias("start")).crossJoin(
        F.broadcast(adj.sparkSession.range(walks_per_node).withColumnRenamed("id", "r"))
    )
    walkers = starts.select(
        (F.col("start") * walks_per_node + F.col("r")).alias("walk_id"),
        "start",
        F.col("start").alias("node"),
        F.array(F.col("start")).alias("path"),
    )
    threshold = int(restart_probability * _COIN)
    for step in range(1, walk_length):
        coin = F.pmod(F.xxhash64("walk_id", F.lit(step), F.lit(seed)), F.lit(_COIN))
        pick = F.pmod(F.xxhash64("walk_id", F.lit(step), F.lit(seed + 1)), F.col("deg"))
        nxt = F.when(coin < threshold, F.col("start")).otherwise(
            F.element_at("nbrs", (pick + 1).cast("int"))
        )
        walkers = (
            walkers.join(adj, "node")
            .select("walk_id", "start", "path", nxt.alias("node"))
            .select("walk_id", "start", "node", F.concat("path", F.array("node")).alias("path"))
        )
        if step % checkpoint_every == 0:
            walkers = walkers.localCheckpoint()
    return walkers.select(F.transform("path", lambda x: x.cast("string")).alias(WALK))


def word2vec_vectors(
    walks: DataFrame,
    *,
    dim: int = 64,
    window: int = 5,
    max_iter: int = 1,
    partitions: int = 1,
    step_size: float = 0.025,
    seed: int = 0,
) -> DataFrame:
    """Spark ML Word2Vec (skip-gram, hierarchical softmax) over the walks; one vector per node.

    Mikolov et al., "Distributed Representations of Words and Phrases", NIPS 2013.

    Schema:
        walks: ``walk: array<string>``. Returns
        :data:`pipelines.aggregate.stage.VECTOR_TABLE_SCHEMA` (kind ``node``, float32 bytes).
    """
    model = Word2Vec(
        vectorSize=dim,
        windowSize=window,
        minCount=0,
        maxIter=max_iter,
        numPartitions=partitions,
        stepSize=step_size,
        maxSentenceLength=1000,
        seed=seed,
        inputCol=WALK,
        outputCol="_w2v",
    ).fit(walks)
    vectors = model.getVectors().select(
        F.col("word").cast("long").alias(NODE_ID),
        vector_to_array(F.col("vector"), "float32").alias("a"),
    )
    return _vector_table(vectors)


def graphframes_vectors(
    pairs: DataFrame, *, temporary_prefix: str, dim: int, walks_per_node: int, seed: int
) -> DataFrame:
    """GraphFrames' own ``RandomWalkEmbeddings`` (Word2Vec), when its JAR is on the classpath.

    Not exercised on this machine (the JAR is not served here); the output column is taken as
    the first one besides ``id``, a Vector or an array.

    Schema:
        pairs: ``src, dst``. Returns :data:`pipelines.aggregate.stage.VECTOR_TABLE_SCHEMA`.
    """
    from graphframes import GraphFrame
    from graphframes.graphframe import RandomWalkEmbeddings

    ids = pairs.select(F.col(SRC).alias("id")).unionByName(pairs.select(F.col(DST).alias("id")))
    rwe = RandomWalkEmbeddings(GraphFrame(ids.distinct(), pairs.select(SRC, DST)))
    rwe.set_rw_model(temporary_prefix, num_walks_per_node=walks_per_node, seed=seed)
    rwe.set_word2vec(embeddings_dim=dim, min_count=0, seed=seed)
    rwe.unset_neighbors_aggregation()
    out = rwe.run()
    col = next(c for c in out.columns if c != "id")
    vec = F.col(col)
    if not isinstance(out.schema[col].dataType, T.ArrayType):
        vec = vector_to_array(vec)
    return _vector_table(
        out.select(F.col("id").cast("long").alias(NODE_ID), vec.cast("array<float>").alias("a"))
    )


def _vector_table(vectors: DataFrame) -> DataFrame:
    """``node_id, a: array<float>`` -> :data:`VECTOR_TABLE_SCHEMA` (kind ``node``)."""

    def fn(batches: Iterable[pd.DataFrame]) -> Iterable[pd.DataFrame]:
        for pdf in batches:
            if len(pdf):
                mat = np.stack(pdf["a"].to_numpy()).astype(np.float32)
                yield pd.DataFrame(
                    {KIND: "node", NODE_ID: pdf[NODE_ID].to_numpy(), VECTOR: vectors_to_bytes(mat)}
                )

    return vectors.mapInPandas(fn, schema=VECTOR_TABLE_SCHEMA)
