"""Ship the project's code to Spark executors: one zip for ``spark-submit --py-files``.

Executors import ``pipelines`` (and, through the bridge, ``gnn``) when they unpickle task
functions, so a cluster run needs those packages on every executor's ``PYTHONPATH``. The zip
holds the ``.py`` files of the packages only; the third-party dependencies (numpy, pyarrow,
torch, ...) come from the Python environment the executors run (``PYSPARK_PYTHON``).
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

from pipelines.core.session import PROJECT_ROOT

PACKAGES = ("pipelines", "jobs", "gnn")
ZIP_NAME = "graphpipe-pyfiles.zip"
# A fixed timestamp makes the zip a pure function of the sources (byte-identical rebuilds).
_EPOCH = (1980, 1, 1, 0, 0, 0)


def build_pyfiles_zip(
    dest: str | Path,
    *,
    packages: Sequence[str] = PACKAGES,
    root: str | Path = PROJECT_ROOT,
) -> Path:
    """Write the packages' Python sources into a zip for ``--py-files``.

    Args:
        dest: The zip path (``*.zip``) or a folder to write ``graphpipe-pyfiles.zip`` into.
        packages: Top-level package folders under ``root`` (each must hold ``__init__.py``).
        root: Folder that contains the packages (the repository root by default).

    Returns:
        Path of the zip; inside it every package sits at the top level (``pipelines/...``).
    """
    root = Path(root)
    dest = Path(dest)
    path = dest if dest.suffix == ".zip" else dest / ZIP_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    for package in packages:
        folder = root / package
        if not (folder / "__init__.py").is_file():
            raise FileNotFoundError(f"packages: {folder} is not a Python package")
        files += [p for p in folder.rglob("*.py") if "__pycache__" not in p.parts]
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(files):
            info = zipfile.ZipInfo(file.relative_to(root).as_posix(), date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, file.read_bytes())
    tmp.replace(path)
    return path
