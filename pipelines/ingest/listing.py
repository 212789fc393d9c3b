"""List the input of the ingest stage: every entry of an input folder is read or fails the run.

Hadoop's file systems list a folder by stat-ing each name and silently drop the names they
cannot stat (a dangling symlink, a symlink loop). For local paths the listing is therefore
compared with the operating system's own: every name the OS lists in an input folder (hidden
names aside) must be a readable regular file or folder that Hadoop listed too, else the run
fails with one line naming the entry. Named pipes, sockets and devices fail the same way (a
pipe would block the reader forever).

Spark's file readers skip every file whose name starts with ``_`` or ``.`` (or ends with
``._COPYING_``), even one named explicitly. Such a file, when named explicitly, is read
through a symlink with a visible name in a scratch folder (:func:`make_visible`; local paths
only), as is a local file whose name holds a ``:``. Inside a folder, names starting with
``_`` or ``.`` are ignored (``_SUCCESS``, ``.crc`` files), as by Spark.

Read errors from the JVM name their cause: :func:`short_error` gives the root exception's
message, not Py4J's "An error occurred while calling oNN..." wrapper.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from pipelines.ingest.formats import COMPRESSED, IngestError

HIDDEN = ("_", ".")
_WRAPPER = "An error occurred while calling"
_JAVA_EXCEPTION = re.compile(r"(?:[a-z_$][\w$]*\.)+([A-Z][\w$]*(?:Exception|Error)): ([^\n]+)")


@dataclass(frozen=True)
class InputFile:
    """One input file as listed by the Hadoop file system.

    Attributes:
        path: Hadoop path string (``file:/a/b c.txt``, ``hdfs://nn/x``): the key of the file.
        display: What messages and the rejected table show (a plain path for local files).
        size: Bytes.
        alias: Hadoop path of a visible symlink to the file, read in its place (for names
            Spark's readers skip); ``None`` when the file is read under its own path.
    """

    path: str
    display: str
    size: int
    alias: str | None = None

    @property
    def scan_path(self) -> str:
        """The path Spark reads (the alias, if any)."""
        return self.alias or self.path


def short_error(exc: BaseException) -> str:
    """One line naming the cause of ``exc``, without Py4J's wrapper or a Java stack trace.

    For a JVM exception this is ``<ExceptionClass>: <message>`` of the innermost cause (a
    truncated gzip gives ``EOFException: Unexpected end of input stream``).
    """
    text = _root_java_cause(exc)
    if text is None:
        full = str(exc).strip()
        lines = full.splitlines()
        text = lines[0] if lines else type(exc).__name__
        found = _JAVA_EXCEPTION.findall(full) if text.startswith(_WRAPPER) else []
        if found:
            text = "{}: {}".format(*found[-1])
    return text.strip()[:300]


def _root_java_cause(exc: BaseException) -> str | None:
    """``<SimpleName>: <first line of message>`` of the innermost JVM cause, if any."""
    throwable: Any = getattr(exc, "java_exception", None) or getattr(exc, "_origin", None)
    if throwable is None:
        return None
    try:
        for _ in range(32):
            cause = throwable.getCause()
            if cause is None or cause.equals(throwable):
                break
            throwable = cause
        name = str(throwable.getClass().getSimpleName())
        message = throwable.getMessage()
    except Exception:  # not a live Java object
        return None
    lines = str(message).strip().splitlines() if message is not None else []
    return f"{name}: {lines[0]}" if lines and lines[0] else name


def spark_hides(name: str) -> bool:
    """Whether Spark's file readers skip a file of this name, even one named explicitly.

    Spark's ``HadoopFSUtils.shouldFilterOutPathName``: names starting with ``.``, or with
    ``_`` and without ``=``, or ending with ``._COPYING_``; ``_metadata`` and
    ``_common_metadata`` excepted.
    """
    exclude = (
        (name.startswith("_") and "=" not in name)
        or name.startswith(".")
        or name.endswith("._COPYING_")
    )
    return exclude and not name.startswith(("_common_metadata", "_metadata"))


def _entry_problem(entry: str) -> str | None:
    """Why the local file or folder ``entry`` cannot be read; ``None`` when it can."""
    if os.path.islink(entry) and not os.path.exists(entry):
        return f"broken symlink to {os.readlink(entry)}"
    try:
        mode = os.stat(entry).st_mode
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    if stat.S_ISDIR(mode):
        return None if os.access(entry, os.R_OK | os.X_OK) else "permission denied"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    return None if os.access(entry, os.R_OK) else "permission denied"


def _check_local_folder(folder: str, listed: set[str], what: str) -> None:
    """Fail unless every visible entry of ``folder`` is readable and was listed by Hadoop."""
    try:
        names = sorted(n for n in os.listdir(folder) if not n.startswith(HIDDEN))
    except OSError as exc:
        raise IngestError(f"{what} {folder}: cannot list ({exc.strerror})") from None
    for name in names:
        entry = os.path.join(folder, name)
        problem = _entry_problem(entry)
        if problem is None and name not in listed:
            problem = "the Hadoop file system did not list it"
        if problem is not None:
            raise IngestError(f"{what} {entry}: cannot read ({problem})")


def list_files(spark: SparkSession, path: str, *, what: str) -> list[InputFile]:
    """The non-hidden files under ``path`` (itself when it is a file), sorted by path.

    Uses the Hadoop file system of the path's scheme, so local paths, ``hdfs://`` and
    ``s3a://`` behave alike. Inside folders, names starting with ``_`` or ``.`` are skipped,
    as Spark does; an explicitly named file is listed whatever its name. Local folders are
    checked against the operating system's listing (see the module docstring).

    Raises:
        IngestError: The path does not exist, holds no files, or holds an entry that cannot
            be read.
    """
    jvm: Any = spark._jvm  # the Hadoop FileSystem API has no Python wrapper
    conf = spark._jsc.hadoopConfiguration()
    try:
        hpath = jvm.org.apache.hadoop.fs.Path(path)
        fs = hpath.getFileSystem(conf)
        local = str(fs.getUri().getScheme()) == "file"
        exists = fs.exists(hpath)
        where = str(hpath.toUri().getPath()) if local else path
    except Exception as exc:  # bad scheme, unreachable cluster, ...
        raise IngestError(f"{what} {path}: cannot open ({short_error(exc)})") from None
    if not exists:
        if local and os.path.islink(where):
            raise IngestError(f"{what} {path}: cannot read ({_entry_problem(where)})")
        raise IngestError(f"{what} {path}: not found")
    found: list[InputFile] = []
    current = path
    try:
        pending = [fs.getFileStatus(hpath)]
        while pending:
            status = pending.pop()
            p = status.getPath()
            uri = p.toUri()
            current = str(uri.getPath()) if local else str(p.toString())
            if status.isDirectory():
                children = [
                    c for c in fs.listStatus(p) if not str(c.getPath().getName()).startswith(HIDDEN)
                ]
                if local:
                    names = {str(c.getPath().getName()) for c in children}
                    _check_local_folder(current, names, what)
                pending.extend(children)
                continue
            problem = _entry_problem(current) if local else None
            if problem is not None:
                raise IngestError(f"{what} {current}: cannot read ({problem})")
            found.append(InputFile(str(p.toString()), current, int(status.getLen())))
    except IngestError:
        raise
    except Exception as exc:  # an unreadable folder, a file system error
        raise IngestError(f"{what} {current}: cannot list ({short_error(exc)})") from None
    if not found:
        raise IngestError(f"{what} {path}: folder holds no files")
    return sorted(found, key=lambda f: f.path)


def _alias_name(what: str, index: int, name: str) -> str:
    """A visible file name, one per input and file, that keeps the compression suffix Hadoop
    picks the codec by."""
    suffix = next((s for s in COMPRESSED if name.lower().endswith(s)), "")
    prefix = re.sub(r"\W+", "-", what).strip("-") or "input"
    return f"{prefix}-{index}{name[len(name) - len(suffix) :] if suffix else ''}"


def make_visible(
    spark: SparkSession, files: list[InputFile], scratch: Path, *, what: str
) -> list[InputFile]:
    """``files`` with an alias (a symlink in ``scratch``) for each name Spark's readers skip,
    and for local names holding a ``:`` (Hadoop's checksummed local file system cannot build
    the path of their ``.crc`` file: "Relative path in absolute URI").

    Raises:
        IngestError: Such a file is not on the local file system (rename it).
    """
    jvm: Any = spark._jvm
    conf = spark._jsc.hadoopConfiguration()
    out: list[InputFile] = []
    for i, f in enumerate(files):
        name = f.display.rstrip("/").rsplit("/", 1)[-1]
        local = f.path.startswith("file:")
        if not (spark_hides(name) or (local and ":" in name)):
            out.append(f)
            continue
        if not local:
            raise IngestError(
                f"{what} {f.display}: Spark's readers skip file names starting with '_' or "
                "'.'; rename the file (only local files are read under such names)"
            )
        scratch.mkdir(parents=True, exist_ok=True)
        link = scratch.absolute() / _alias_name(what, i, name)
        link.unlink(missing_ok=True)
        os.symlink(f.display, link)
        hpath = jvm.org.apache.hadoop.fs.Path(str(link))
        qualified = hpath.getFileSystem(conf).makeQualified(hpath).toString()
        out.append(replace(f, alias=str(qualified)))
    return out
