"""Evaluation on tensors: Recall@K, NDCG@K, MRR, Hits@K, AUROC, and NBFNet's filtered ranking.

In: scores or a model plus test pairs/triples. Out: metric dicts and rank tensors.
"""
