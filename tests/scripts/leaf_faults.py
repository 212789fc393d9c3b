"""Train two leaves through the bridge's cogroup, optionally killing each leaf's first attempt.

    python tests/scripts/leaf_faults.py (clean|faults) OUT.pkl

``faults``: leaf 0's first attempt raises, leaf 1's first attempt kills its Python worker
(``os._exit``); a marker file per leaf (next to OUT) records that its fault happened, whichever
task holds the leaf. Spark (``local[2,4]``: up to 4 attempts per task) retries; the rows
written must be identical to the ``clean`` run's.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark import TaskContext

from pipelines.aggregate.stage import initial_vectors
from pipelines.core.schema import ITEM, KIND, LEAF_ID, NODE_ID, USER, VECTOR
from pipelines.core.session import build_spark
from pipelines.train.rounds import leaf_nodes
from pipelines.train.seam import WEIGHTED_ROWS_SCHEMA, LeafTrainSettings, train_leaf_from


def main(mode: str, out: str) -> None:
    spark = build_spark(
        "leaf-faults", master="local[2,4]", conf={"spark.sql.shuffle.partitions": "2"}
    )
    rng = np.random.default_rng(0)
    users = rng.integers(0, 30, 400)
    pdf = pd.DataFrame({LEAF_ID: users % 2, USER: users, ITEM: rng.integers(0, 25, 400)})
    edges = spark.createDataFrame(pdf.drop_duplicates()).cache()
    members = leaf_nodes(edges)
    init = members.join(
        initial_vectors(members.select(KIND, NODE_ID).distinct(), dim=8, seed=0), [KIND, NODE_ID]
    )
    settings = LeafTrainSettings(dim=8, layers=2, epochs=3, batch_size=64, lr=0.01, threads=1)

    markers = Path(out).parent

    def fn(leaf_edges: pd.DataFrame, leaf_init: pd.DataFrame) -> pd.DataFrame:
        ctx = TaskContext.get()
        leaf = int(leaf_edges[LEAF_ID].iloc[0]) if len(leaf_edges) else -1
        marker = markers / f"fault-leaf-{leaf}-attempt-{ctx.attemptNumber() if ctx else -1}"
        if mode == "faults" and leaf in (0, 1) and not list(markers.glob(f"fault-leaf-{leaf}-*")):
            marker.touch()
            if leaf == 0:
                raise RuntimeError("injected failure of leaf 0")
            os._exit(3)  # leaf 1: the executor's Python worker dies in the middle of the task
        return train_leaf_from(leaf_edges, leaf_init, settings, round_index=1)

    # Fresh attribute ids on both sides, as pipelines.train.seam.train_leaves_from does.
    left = edges.select(*[edges[c].alias(c) for c in (LEAF_ID, USER, ITEM)])
    right = init.select(*[init[c].alias(c) for c in (LEAF_ID, KIND, NODE_ID, VECTOR)])
    rows = (
        left.groupBy(LEAF_ID)
        .cogroup(right.groupBy(LEAF_ID))
        .applyInPandas(fn, schema=WEIGHTED_ROWS_SCHEMA)
    )
    result = rows.select(LEAF_ID, KIND, NODE_ID, "w", VECTOR).toPandas()
    result.sort_values([LEAF_ID, KIND, NODE_ID]).reset_index(drop=True).to_pickle(out)
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
