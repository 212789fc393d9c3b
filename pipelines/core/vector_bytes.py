"""Embedding vectors as raw bytes in Spark rows: the encoding every stage reads and writes.

A vector travels as one binary value per row (float32, or float16 to halve replica rows' bytes),
which is cheaper through Arrow than ``array<float>``. Readers tell the two widths apart by length
and always return float32. No torch here: the Spark side decodes vectors without it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines.core.schema import NODE_ID, VECTOR

__all__ = [
    "VECTOR_DTYPES",
    "arrow_to_matrix",
    "bytes_to_matrix",
    "check_vector_dtype",
    "matrix_to_arrow",
    "sums_by_node",
    "vectors_to_bytes",
]

VECTOR_DTYPES = ("float32", "float16")


def check_vector_dtype(dtype: str, name: str) -> str:
    """``dtype`` if it is one of :data:`VECTOR_DTYPES`, else a ValueError naming ``name``."""
    if dtype not in VECTOR_DTYPES:
        raise ValueError(f"{name}: must be one of {VECTOR_DTYPES} (got {dtype!r})")
    return dtype


def vectors_to_bytes(matrix: np.ndarray, dtype: str = "float32") -> list[bytes]:
    """Rows of a matrix as raw bytes (one value per row), float32 or float16.

    float16 halves the bytes that replica rows cost on disk and in the shuffle that averages
    them (relative rounding error <= 2^-11, far below the training noise); every reader
    (:func:`bytes_to_matrix`) tells the two apart by length and returns float32.
    """
    m = np.ascontiguousarray(matrix, dtype=np.dtype(check_vector_dtype(dtype, "vector dtype")))
    return [row.tobytes() for row in m]


def bytes_to_matrix(values: pd.Series | list[bytes], dim: int) -> np.ndarray:
    """Inverse of :func:`vectors_to_bytes`: a ``[n, dim]`` float32 matrix.

    The rows must all be float32 (``4 * dim`` bytes) or all float16 (``2 * dim`` bytes).
    """
    if len(values) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    buf = b"".join(values)
    n = len(values)
    if len(buf) == n * dim * 4:
        return np.frombuffer(buf, dtype=np.float32).reshape(n, dim).copy()
    if len(buf) == n * dim * 2:
        return np.frombuffer(buf, dtype=np.float16).reshape(n, dim).astype(np.float32)
    raise ValueError(
        f"vector bytes: {len(buf)} bytes for {n} rows of dim {dim}; expected every row to hold "
        f"{dim} float32 ({4 * dim} bytes) or {dim} float16 ({2 * dim} bytes) values"
    )


def arrow_to_matrix(values: pa.Array | pa.ChunkedArray, dim: int) -> np.ndarray:
    """:func:`bytes_to_matrix` for an Arrow binary column, read from its buffers.

    No Python object per row: the values buffer is viewed as float32 or float16 directly.
    Every row must hold ``dim`` float32 or (all of them) ``dim`` float16 values.
    """
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    n = len(arr)
    if n == 0:
        return np.zeros((0, dim), dtype=np.float32)
    if arr.null_count:
        raise ValueError(f"vector: {arr.null_count} null value(s) among {n} rows")
    offset_type = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=offset_type)[arr.offset : arr.offset + n + 1]
    lengths = np.unique(np.diff(offsets))
    width = int(lengths[0]) if len(lengths) == 1 else -1
    dtypes = {4 * dim: np.float32, 2 * dim: np.float16}
    if width not in dtypes:
        raise ValueError(
            f"vector bytes: row lengths {sorted(int(x) for x in lengths)[:5]} for {n} rows of "
            f"dim {dim}; expected every row to hold {dim} float32 ({4 * dim} bytes) or {dim} "
            f"float16 ({2 * dim} bytes) values"
        )
    raw = np.frombuffer(arr.buffers()[2], dtype=np.uint8, count=n * width, offset=int(offsets[0]))
    return raw.view(dtypes[width]).reshape(n, dim).astype(np.float32)


def matrix_to_arrow(matrix: np.ndarray, dtype: str = "float32") -> pa.Array:
    """Rows of a matrix as an Arrow binary column (:func:`vectors_to_bytes`' bytes, one buffer)."""
    m = np.ascontiguousarray(matrix, dtype=np.dtype(check_vector_dtype(dtype, "vector dtype")))
    n = m.shape[0]
    width = m.shape[1] * m.itemsize if m.ndim == 2 else 0
    if n * width >= 2**31:
        raise ValueError(f"matrix_to_arrow: {n * width} bytes exceed one binary array (2 GiB)")
    offsets = np.arange(n + 1, dtype=np.int32) * np.int32(width)
    return pa.Array.from_buffers(
        pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(m.tobytes())]
    )


def sums_by_node(
    rows: pd.DataFrame, dim: int, *, weight_col: str, weight_vectors: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per distinct ``node_id`` of ``rows``: ascending ids, ``Σ (w_r ·) v_r`` and ``Σ w_r``.

    ``weight_vectors`` multiplies each vector by its row's weight before summing. Float64 sums.

    Shapes:
        rows: ``n`` rows with ``node_id``, ``weight_col``, ``vector`` -> ``[m]``, ``[m, dim]``,
        ``[m]`` for the ``m`` distinct ids.
    """
    ids = rows[NODE_ID].to_numpy(np.int64)
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    w = rows[weight_col].to_numpy(np.float64)[order]
    vecs = bytes_to_matrix(list(rows[VECTOR].iloc[order]), dim).astype(np.float64)
    if weight_vectors:
        vecs *= w[:, None]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    return ids[starts], np.add.reduceat(vecs, starts, axis=0), np.add.reduceat(w, starts)
