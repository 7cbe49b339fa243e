"""Where an export goes: standard output, or a regular file written atomically.

A file is written to a temporary name in its directory and renamed over the target when
complete, so a failed export never leaves half a document behind and a reader never sees one.
Only a regular file (or nothing) is ever replaced: a device, a FIFO, a socket, a directory or a
symlink to one of them is refused (``-o /dev/null`` as root would otherwise replace the
system's), and ``-`` or ``/dev/stdout`` mean standard output. rearguard creates at most what it
was named: ``-o DIR`` for ``--all`` creates ``DIR`` itself, but a missing parent directory is an
error (a typo should not grow a directory tree), and so is ``-o newdir/`` for one incident
(a trailing slash names a directory, which must exist).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import secrets
import stat
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
# The names of standard output for ``-o``.
STANDARD_OUTPUT_NAMES = ("-", "/dev/stdout")
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
)


def is_standard_output(name: str | None) -> bool:
    """True when ``-o`` names standard output (or is absent)."""
    return name is None or name in STANDARD_OUTPUT_NAMES


def target_file(name: str, default_name: str) -> Path:
    """The file to write for ``-o NAME``: NAME itself, or ``NAME/default_name`` for a directory.

    Raises:
        UsageError: the parent directory does not exist or is not a directory; NAME ends with a
            slash and is not an existing directory; the name is too long or unusable.
    """
    path = Path(name).expanduser()
    try:
        if path.is_dir():
            return path / default_name
        if name.endswith(("/", os.sep)):
            raise UsageError(
                f"directory {path} does not exist", hint=f"create it first: mkdir {path}"
            )
        parent = path.parent
        if not parent.exists():
            raise UsageError(
                f"directory {parent} does not exist", hint=f"create it first: mkdir -p {parent}"
            )
        if not parent.is_dir():
            raise UsageError(f"{parent} is not a directory")
    except OSError as exc:  # e.g. a name too long for the file system
        raise UsageError(f"cannot write {name}: {exc.strerror or exc}") from exc
    return path


def _refuse_unless_replaceable(path: Path) -> None:
    """Refuse a target that exists (through symlinks) and is not a regular file."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return  # nothing there, or a dangling symlink: the rename replaces the link
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from exc
    if stat.S_ISREG(mode):
        return
    kind = next((what for test, what in _KINDS if test(mode)), "not a regular file")
    raise UsageError(
        f"{path} is {kind}; an export replaces only a regular file",
        hint="choose another -o path; -o - (or /dev/stdout) writes to standard output",
    )


def output_directory(path: Path) -> Path:
    """The directory for ``--all -o DIR``, created if missing (its parent must exist).

    Raises:
        UsageError: the parent is missing, or the path is a file, or it cannot be created.
    """
    path = path.expanduser()
    try:
        if path.is_dir():
            return path
        exists = path.exists()
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from exc
    if exists:
        raise UsageError(f"{path} is not a directory", hint="--all writes one file per incident")
    if not path.parent.is_dir():
        raise UsageError(
            f"directory {path.parent} does not exist",
            hint=f"create it first: mkdir -p {path.parent}",
        )
    try:
        path.mkdir()
    except OSError as exc:
        raise UsageError(f"cannot create {path}: {exc.strerror or exc}") from exc
    return path


@contextmanager
def atomic_text_file(
    path: Path, *, mode: int = 0o666, hint: str = "choose another -o path"
) -> Iterator[TextIO]:
    """Open a UTF-8 text stream that replaces ``path`` only when the block completes.

    ``mode`` is the new file's, less the umask (0o600 for what rearguard keeps in its home);
    ``hint`` what a person can do when the file cannot be created there.

    Raises:
        UsageError: the file cannot be created there (permissions, read-only, not a directory).
        OperationFailed: writing failed part-way (e.g. the disk is full); nothing is left behind.
    """
    _refuse_unless_replaceable(path)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        # The mode less the umask, as any new file; O_EXCL so an existing name is never
        # followed.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}", hint=hint) from exc
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
