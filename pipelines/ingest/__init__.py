"""Ingest: read edge lists, interactions and triples, validate, assign dense ids.

In: CSV / TSV / SNAP / LightGCN / Parquet files named by ``ingest.*``.
Out (under ``<run_dir>/ingest/``): ``interactions`` ``(user, item[, weight, ts])`` or ``edges``
``(src, dst[, weight, ts, rel])`` over dense int64 ids, ``dictionary``
``(kind, original_id, node_id)``, ``rejected`` ``(source_file, line_number, raw, reason)`` and
the counts ``rows_read = accepted + rejected + duplicates_removed + self_loops_removed``.
"""
