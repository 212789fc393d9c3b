"""Train: per-leaf GNN training inside Spark tasks, rounds with averaging of shared nodes.

In: the ingested graph and the partition assignment. Out (under ``<run_dir>/train/``): ``ego``
``(node_id, kind, vector)`` one ego vector per node and ``leaf_logs`` (loss per leaf and round).
``seam`` is the one Spark-to-torch crossing: a pandas frame of one leaf in, vectors out.
"""
