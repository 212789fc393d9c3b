"""Evaluate and report: ranking metrics of a run and its HTML report.

In: ``recommend/recommendations`` and the test interactions. Out: ``evaluate/metrics.json``
(Recall@K, NDCG@K) and ``report/index.html`` (partition, curves, metrics, stage times).
"""
