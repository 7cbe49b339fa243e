"""Hashing a command's files speculatively while the rest of the program is still loading.

``rearguard assets verify`` spends over half a second importing SQLAlchemy, SQLModel and
pydantic and opening the database before it knows the manifest, while the second core sits
idle. The command line already names the asset, and the local store's layout says where its
files are, so a child process forked at start-up hashes them at once. (A thread would not do:
the imports hold the GIL for long stretches and starve it.) The child reports on a pipe when it
starts a file and what it found; :meth:`HashedAhead.take` reuses a digest only for the very
same file, unchanged: same device, inode, size, modification and change times before and after
hashing. A guess that misses (another store, another home) costs the child's work and nothing
else. The CLI owns the child's handle (its invocation's ``hashed_ahead``) and passes it to the
hashing of the one command that can use it.
"""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Iterable
from pathlib import Path

from rearguard.models.integrity.hashing import stream_sha256

Identity = tuple[int, int, int, int, int]


def _identity(path: Path | str) -> Identity | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _hash_in_child(paths: list[Path], fd: int) -> None:
    """The child: hash each file, reporting ``start`` and ``done`` lines; exit when done.

    Its standard streams go to /dev/null at once, so that whoever reads the command's output
    sees it end when the command ends, not when the child does.
    """
    devnull = os.open(os.devnull, os.O_RDWR)
    for stream in (0, 1, 2):
        os.dup2(devnull, stream)

    try:
        with os.fdopen(fd, "w", buffering=1) as out:
            for path in paths:
                identity = _identity(path)
                if identity is None:
                    continue
                key = " ".join(map(str, identity))
                out.write(f"start {key}\n")
                digest, size = stream_sha256(path)
                if _identity(path) == identity:
                    out.write(f"done {key} {digest} {size}\n")
    except OSError:
        pass  # the parent is gone or stopped listening: nothing left to do
    finally:
        os._exit(0)


class HashedAhead:
    """The parent's side of a hashing child: what it started and finished, read from its
    pipe."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lock = threading.Lock()
        self.buffer = b""
        self.eof = False
        self.started: set[str] = set()
        self.done: dict[str, tuple[str, int]] = {}

    def _read(self, *, block: bool) -> None:
        if self.eof:
            return
        ready, _, _ = select.select([self.fd], [], [], None if block else 0)
        if not ready:
            return
        chunk = os.read(self.fd, 65536)
        if not chunk:
            self.eof = True
            os.close(self.fd)
            return
        *lines, self.buffer = (self.buffer + chunk).split(b"\n")
        for line in lines:
            kind, *fields = line.decode().split(" ")
            key = " ".join(fields[:5])
            if kind == "start":
                self.started.add(key)
            else:
                self.done[key] = (fields[5], int(fields[6]))

    def finish(self) -> None:
        """Wait until the child has reported on every file (and exited)."""
        with self.lock:
            while not self.eof:
                self._read(block=True)

    def take(self, path: Path) -> tuple[str, int] | None:
        """The digest and size of ``path`` if the child hashed it and it has not changed since.

        Waits when the child is hashing it right now; returns None when the child has not
        started it, so the caller hashes it concurrently instead.
        """
        identity = _identity(path)
        if identity is None:
            return None
        key = " ".join(map(str, identity))
        with self.lock:
            self._read(block=False)
            # Started and not finished: the child is on it right now, so wait for it.
            while key in self.started and key not in self.done and not self.eof:
                self._read(block=True)
            result = self.done.get(key)
        # Changed since it was hashed: the caller hashes what is there now.
        return result if result is not None and _identity(path) == identity else None


def spawn(files: list[Path]) -> HashedAhead:
    """Fork a child that hashes ``files`` in order; return the parent's side of its pipe."""
    read_fd, write_fd = os.pipe()
    if os.fork() == 0:
        os.close(read_fd)
        _hash_in_child(files, write_fd)
    os.close(write_fd)
    return HashedAhead(read_fd)


def start(paths: Iterable[Path]) -> HashedAhead | None:
    """Fork a child that hashes ``paths`` and return its handle (None where there is nothing to
    hash or no fork).

    The child takes the files from the end of the list, so that the caller, which hashes what
    the child has not started from the front, meets it in the middle. (One child: a second
    only competes with the imports for this machine's two cores; measured, no faster.)
    """
    files = list(paths)
    if not files or not hasattr(os, "fork"):
        return None
    return spawn(files[::-1])


def store_files(home: Path, asset: str | None) -> list[Path]:
    """The files of the local store's versions of ``asset`` (every asset when None).

    Layout as in :mod:`rearguard.models.registry.local`; names that would leave the store are
    ignored (the real command reports them). With the MLflow backend the local store holds
    nothing (no child is forked) or what an earlier local setup left (hashed, never used):
    harmless either way.
    """
    assets = home / "store" / "assets"
    if asset is not None and (asset in ("", ".", "..") or "/" in asset or "\\" in asset):
        return []
    roots = [assets / asset / "versions"] if asset else sorted(assets.glob("*/versions"))
    files: list[Path] = []
    for root in roots:
        for dirpath, _dirnames, filenames in os.walk(root):
            files.extend(Path(dirpath, name) for name in sorted(filenames))
    return [f for f in files if not f.is_symlink()]
