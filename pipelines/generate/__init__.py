"""Synthetic input graphs for tests and benchmarks (seeded, written as Parquet edge lists).

In: a generator's parameters and a seed. Out: ``(src, dst)`` int64 edge DataFrames.
"""
