"""Helpers of the frozen settings dataclasses (LightGCN, homogeneous, NBFNet, unlearning).

Every field carries its help text (``metadata["help"]``, read by the command-line front ends),
and ``__post_init__`` validates with :func:`field_check`, whose errors name the class and the
field: ``LightGCNTrainConfig.lr: must be > 0 (got -1.0)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import field
from typing import Any

__all__ = ["field_check", "help_field"]


def help_field(default: Any, help: str) -> Any:  # noqa: A002 - reads best in field declarations
    """A dataclass field with a default and its help text."""
    return field(default=default, metadata={"help": help})


def field_check(obj: Any) -> Callable[[bool, str, str], None]:
    """``require(cond, name, msg)`` for ``obj``: raises ``ValueError`` naming
    ``Class.name``, ``msg`` and the field's value when ``cond`` is false."""

    def require(cond: bool, name: str, msg: str) -> None:
        if not cond:
            raise ValueError(f"{type(obj).__name__}.{name}: {msg} (got {getattr(obj, name)!r})")

    return require
