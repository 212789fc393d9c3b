"""Partition: recursive multilevel bisection on Spark until every leaf fits one task.

In: the ingested edges or interactions (one undirected graph over node ids).
Out (under ``<run_dir>/partition/``): ``assignment`` ``(node_id, kind, leaf_id)``,
``leaf_stats``, ``halo_nodes`` and ``halo_edges`` per leaf, and the quality figures (edge cut,
balance). Graphs of at most ``partition.max_direct_edges`` rows are split in one task.
"""
