"""Where an export goes: standard output, or a file written atomically.

A file is written to a temporary name in its directory and renamed over the target when
complete, so a failed export never leaves half a document behind and a reader never sees one.
rearguard creates at most what it was named: ``-o DIR`` for ``--all`` creates ``DIR`` itself,
but a missing parent directory is an error (a typo should not grow a directory tree).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from rearguard.models.errors import OperationFailed, UsageError

# Errors that say the path was wrong, rather than that writing went wrong.
_PATH_ERRORS = {
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOENT,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.ENAMETOOLONG,
    errno.ELOOP,
}


def target_file(path: Path, default_name: str) -> Path:
    """The file to write for ``-o PATH``: PATH itself, or ``PATH/default_name`` for a directory.

    Raises:
        UsageError: the parent directory does not exist or is not a directory.
    """
    path = path.expanduser()
    if path.is_dir():
        return path / default_name
    parent = path.parent
    if not parent.exists():
        raise UsageError(
            f"directory {parent} does not exist", hint=f"create it first: mkdir -p {parent}"
        )
    if not parent.is_dir():
        raise UsageError(f"{parent} is not a directory")
    return path


def output_directory(path: Path) -> Path:
    """The directory for ``--all -o DIR``, created if missing (its parent must exist).

    Raises:
        UsageError: the parent is missing, or the path is a file, or it cannot be created.
    """
    path = path.expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise UsageError(f"{path} is not a directory", hint="--all writes one file per incident")
    if not path.parent.is_dir():
        raise UsageError(
            f"directory {path.parent} does not exist",
            hint=f"create it first: mkdir -p {path.parent}",
        )
    try:
        path.mkdir()
    except OSError as exc:
        raise UsageError(f"cannot create {path}: {exc.strerror}") from exc
    return path


@contextmanager
def atomic_text_file(path: Path) -> Iterator[TextIO]:
    """Open a UTF-8 text stream that replaces ``path`` only when the block completes.

    Raises:
        UsageError: the file cannot be created there (permissions, read-only, not a directory).
        OperationFailed: writing failed part-way (e.g. the disk is full); nothing is left behind.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        # 0o666 and the umask, as any new file; O_EXCL so an existing name is never followed.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise UsageError(
            f"cannot write {path}: {exc.strerror}", hint="choose another -o path"
        ) from exc
    try:
        with open(descriptor, "w", encoding="utf-8", newline="") as handle:
            yield handle
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink()
        if exc.errno in _PATH_ERRORS:
            raise UsageError(f"cannot write {path}: {exc.strerror}") from exc
        raise OperationFailed(f"writing {path} failed: {exc.strerror or exc}") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


@contextmanager
def standard_output() -> Iterator[TextIO]:
    """Standard output as a UTF-8 text stream (whatever the locale), flushed at the end."""
    stream = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="", write_through=False)
    try:
        yield stream
        stream.flush()
    finally:
        stream.detach()
