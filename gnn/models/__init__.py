"""Models: layers + embedding tables + scoring (LightGCN, NBFNet).

In: node ids or queries as long tensors. Out: scores and embeddings ``[N, d]``.
"""
