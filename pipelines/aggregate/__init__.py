"""Aggregate: one global embedding table from the per-leaf ego vectors.

In: ``train/ego`` and the whole graph. Out: ``aggregate/embeddings`` ``(node_id, kind, vector)``,
LightGCN propagation (He et al., SIGIR 2020, Eq. 8-9) over the whole graph as Spark joins,
checked against :class:`gnn.layers.lg_conv.LGConv` in the tests.
"""
