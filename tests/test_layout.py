"""The house's rules, checked on the source: the seam, the import graph, module and function sizes.

Pure ``ast`` over the files (nothing is imported), so it runs in well under a second:

* in ``pipelines/`` only the seam modules (``pipelines/<folder>/seam*.py``) import ``torch`` or
  :mod:`gnn`; everything else is plain PySpark;
* ``gnn/`` never imports ``pyspark`` (nor ``pipelines`` or ``jobs``, which do);
* no import cycles among the modules of ``pipelines/``, ``gnn/``, ``jobs/`` and ``bench/``,
  counting the lazy imports inside functions and the ``if TYPE_CHECKING:`` ones;
* every module is at most 400 lines and every function at most 80.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipelines", "gnn", "jobs", "bench")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
SEAM_ONLY = {"torch", "gnn"}
NOT_IN_GNN = {"pyspark", "graphframes", "pipelines", "jobs"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _modules() -> dict[str, Path]:
    """Every first-party module, ``dotted.name -> file``."""
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _imported(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """``(dotted name, line)`` of every import anywhere in the file (functions, ``if`` blocks).

    ``from a.b import c`` yields ``a.b.c`` when that is a module of ours, else ``a.b``; relative
    imports are resolved against ``module``.
    """
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield (full if full in _modules() else base), node.lineno


def _first_party(name: str) -> str | None:
    """The deepest module of ours that importing ``name`` runs (``None``: not ours)."""
    while name:
        if name in _modules():
            return name
        name = name.rpartition(".")[0]
    return None


@cache
def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in _modules().items():
        targets = {_first_party(name) for name, _ in _imported(module, path)}
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _is_seam(path: Path) -> bool:
    rel = path.relative_to(ROOT / "pipelines")
    return len(rel.parts) == 2 and rel.name.startswith("seam")


def _functions(tree: ast.Module) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def test_the_walk_sees_the_packages() -> None:
    modules = _modules()
    assert "pipelines.train.seam" in modules and "gnn.engine.lightgcn" in modules
    assert "jobs.pipeline" in modules and "pipelines.kg.run" in _graph()["jobs.kg"]


def test_only_the_seams_import_torch_or_gnn() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for module, path in _modules().items()
        if module.startswith("pipelines.") and not _is_seam(path)
        for name, line in _imported(module, path)
        if name.split(".")[0] in SEAM_ONLY
    ]
    assert not offenders, "only pipelines/<folder>/seam*.py may import torch or gnn:\n" + "\n".join(
        offenders
    )


def test_gnn_never_imports_spark() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for module, path in _modules().items()
        if module.split(".")[0] == "gnn"
        for name, line in _imported(module, path)
        if name.split(".")[0] in NOT_IN_GNN
    ]
    assert not offenders, "gnn/ is pure torch:\n" + "\n".join(offenders)


def test_no_import_cycles() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "import cycles (lazy and TYPE_CHECKING imports count):\n" + "\n".join(
        " <-> ".join(c) for c in cycles
    )


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def _long_modules() -> list[str]:
    return [
        f"{path.relative_to(ROOT)}: {n} lines"
        for path in _modules().values()
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    ]


def _long_functions() -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name}: {n} lines"
        for path in _modules().values()
        for fn in _functions(_tree(path))
        if (n := (fn.end_lineno or fn.lineno) - fn.lineno + 1) > MAX_FUNCTION_LINES
    ]


def test_modules_are_short() -> None:
    offenders = _long_modules()
    assert not offenders, f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(offenders)


def test_functions_are_short() -> None:
    offenders = _long_functions()
    assert not offenders, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(offenders)


if __name__ == "__main__":  # pragma: no cover - a quick report while refactoring
    for line in [*_long_modules(), *_long_functions()]:
        print(line)
    for cycle in _cycles(_graph()):
        print("cycle:", " <-> ".join(cycle))
    pytest.main([__file__, "-q"])
