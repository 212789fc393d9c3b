"""Pick the torch device once; everything else in ``gnn`` is device-agnostic."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["select_device", "torch_threads"]


@contextmanager
def torch_threads(threads: int, *, deterministic: bool = True) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)``, then restore the previous count.

    ``threads`` 0 leaves torch's setting alone (all cores, or what the caller set).

    With ``deterministic`` (the default) on a machine without CUDA, the block also runs with
    ``torch.use_deterministic_algorithms(True, warn_only=True)``, restored afterwards: CPU
    kernels that accumulate in parallel (scatter / index-add sums) otherwise add in a
    thread-dependent order, so two runs with the same seed on more than one thread drift apart
    in the last bits (measured: FB15k-237 leaves, 8 steps, two threads; same speed with the
    flag). GPU machines keep torch's setting: CUDA's deterministic paths are slower and
    unmeasured here.
    """
    old = torch.get_num_threads()
    pin = deterministic and not torch.cuda.is_available()
    was = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    if threads:
        torch.set_num_threads(threads)
    if pin:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        if threads:
            torch.set_num_threads(old)
        if pin:
            torch.use_deterministic_algorithms(was[0], warn_only=was[1])


def select_device(requested: str = "auto") -> torch.device:
    """Resolve a device request to a :class:`torch.device`.

    Args:
        requested: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or
            ``"cuda:N"``. Which GPU a Spark task owns is decided by the caller, who passes
            ``"cuda:N"``.

    Returns:
        The device.

    Raises:
        ValueError: the request is not a device string, or names CUDA where none is available,
            or a GPU index that does not exist.
    """
    text = requested.strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError as exc:
        raise ValueError(f"device: cannot parse {requested!r} ({exc})") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device: {requested!r} requested but CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device: {requested!r} requested but only {torch.cuda.device_count()} GPU(s)"
            )
    elif device.type != "cpu":
        raise ValueError(f"device: {requested!r} is not supported (auto, cpu, cuda, cuda:N)")
    return device
