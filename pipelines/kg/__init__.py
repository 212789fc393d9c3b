"""The knowledge-graph run: partitioned NBFNet training and filtered ranking on Spark.

In: ``ingest.format: triples`` ``(head, relation, tail)``. Out: ``ingest``, ``partition``,
``nbfnet-train/model.pt`` and ``nbfnet-evaluate/{ranks, metrics.json}`` (filtered MRR, Hits@K).
"""
