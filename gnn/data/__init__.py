"""Graph data as tensors: BPR samplers, knowledge-graph triples and indexes.

In: numpy arrays or files. Out: ``[E, 2]`` / ``[M, 3]`` long tensors, CSR indexes, batches.
"""
