"""Readers for interaction files used by the GNN models (no Spark)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["load_lightgcn_file"]


def load_lightgcn_file(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a LightGCN-format interaction file.

    Each non-empty line is ``uid iid iid ...`` (whitespace separated, 0-based ids), as in the
    LightGCN / NGCF ``train.txt`` and ``test.txt``. A line holding only a user id contributes
    no interaction.

    Args:
        path: The file.

    Returns:
        ``(users, items)``: two int64 arrays of equal length, one entry per interaction, in file
        order.

    Raises:
        ValueError: a token is not an integer or an id is negative (the message names the line).
    """
    user_chunks: list[np.ndarray] = []
    item_chunks: list[np.ndarray] = []
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            parts = line.split()
            if len(parts) < 2:
                if parts and not parts[0].lstrip("-").isdigit():
                    raise ValueError(f"{path}:{lineno}: not an integer id: {parts[0]!r}")
                continue
            try:
                ids = np.array(parts, dtype=np.int64)
            except ValueError as exc:
                raise ValueError(f"{path}:{lineno}: not an integer id ({exc})") from exc
            if (ids < 0).any():
                raise ValueError(f"{path}:{lineno}: negative id")
            user_chunks.append(np.full(len(ids) - 1, ids[0], dtype=np.int64))
            item_chunks.append(ids[1:])
    if not user_chunks:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(user_chunks), np.concatenate(item_chunks)
