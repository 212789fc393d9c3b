"""Serve: top-K recommendations, similar items, ANN indexes and the serving database.

In: ``aggregate/embeddings`` and the training interactions (masked). Out:
``recommend/{recommendations, similar_items}`` ``(user|item, item, score, rank)`` with original
ids, ``export/{embeddings, seen, ann/}`` (faiss index + id map) and PostgreSQL tables.
"""
