"""Spark's Python worker daemon with torch imported once, before it forks the workers.

Spark starts one daemon per executor (``python -m <spark.python.daemon.module>``) and forks a
Python worker from it for each task that needs one. A leaf task's first import of torch, and
of ``torch._dynamo`` (``torch.optim``'s optimisers import it on first use), costs ~2-4 s per
worker, paid again by every new worker: in the first round of partitioned training, in every
retried task, on every executor. This module imports them in the daemon, so forked workers
start with them loaded (copy-on-write; nothing runs on a device or starts a thread before the
fork), then hands over to :func:`pyspark.daemon.manager`.

Set with ``spark.python.daemon.module=pipelines.core.spark_daemon`` (the default of
:data:`pipelines.core.session.DEFAULT_CONF`); executors need the project importable, as they do for
the leaf functions. Where torch is missing, the daemon runs as Spark's own.
"""

from __future__ import annotations

import importlib

PRELOADED = ("numpy", "pandas", "pyarrow", "torch", "torch._dynamo", "torch.optim")


def preload(modules: tuple[str, ...] = PRELOADED) -> list[str]:
    """Import ``modules``; return the names that imported (a missing one is skipped)."""
    loaded = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        loaded.append(name)
    return loaded


if __name__ == "__main__":
    preload()
    from pyspark import daemon

    daemon.manager()
