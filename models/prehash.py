"""Hashing a command's files speculatively while the rest of the program is still loading.

``rearguard assets verify`` spends about a second importing SQLAlchemy, SQLModel and pydantic
and opening the database before it knows the manifest, while one core sits idle. The command
line already names the asset, and the local store's layout says where its files are, so one
thread starts hashing them at once. Whatever it finished is reused by
:func:`rearguard.models.hashing.sha256_file` only for the very same file, unchanged: same device,
inode, size, modification and change times before and after hashing. A guess that misses
(another store, another home) costs that thread's work and nothing else.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path

Identity = tuple[int, int, int, int, int]


def _identity(path: Path | str) -> Identity | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class _Plan:
    """Files to hash ahead, each planned, then taken by the hasher or by a caller."""

    def __init__(self, paths: list[Path]) -> None:
        self.lock = threading.Lock()
        self.planned: dict[Identity, Path] = {}
        for path in paths:
            identity = _identity(path)
            if identity is not None:
                self.planned.setdefault(identity, path)
        self.running: dict[Identity, threading.Event] = {}
        self.done: dict[Identity, tuple[str, int]] = {}

    def run(self) -> None:
        # Imported here: hashing consults this module for every file it hashes.
        from rearguard.models.hashing import stream_sha256

        while True:
            with self.lock:
                if not self.planned:
                    return
                identity, path = self.planned.popitem()
                finished = self.running[identity] = threading.Event()
            try:
                result = stream_sha256(path)
                if _identity(path) == identity:
                    with self.lock:
                        self.done[identity] = result
            except OSError:
                pass
            finally:
                with self.lock:
                    del self.running[identity]
                finished.set()

    def take(self, path: Path) -> tuple[str, int] | None:
        identity = _identity(path)
        if identity is None:
            return None
        with self.lock:
            if self.planned.pop(identity, None) is not None:
                return None  # not started: the caller hashes it now, in parallel
            finished = self.running.get(identity)
        if finished is not None:
            finished.wait()
        with self.lock:
            result = self.done.get(identity)
        # Changed since it was hashed: the caller hashes what is there now.
        return result if result is not None and _identity(path) == identity else None


_plan: _Plan | None = None


def start(paths: Iterable[Path]) -> None:
    """Start hashing ``paths`` on one background thread (once per process).

    One thread: the other core is busy with the imports this is meant to overlap.
    """
    global _plan
    if _plan is not None:
        return
    _plan = _Plan(list(paths))
    threading.Thread(target=_plan.run, name="rearguard-prehash", daemon=True).start()


def take(path: Path) -> tuple[str, int] | None:
    """The digest and size of ``path`` if it was hashed ahead and has not changed since.

    Waits when it is being hashed right now; returns None (and drops it from the plan) when it
    was not started yet, so the caller hashes it concurrently instead.
    """
    return _plan.take(path) if _plan is not None else None


def store_files(home: Path, asset: str | None) -> list[Path]:
    """The files of the local store's versions of ``asset`` (every asset when None).

    Layout as in :mod:`rearguard.models.registry.local`; names that would leave the store are
    ignored (the real command reports them).
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
