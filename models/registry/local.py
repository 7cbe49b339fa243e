"""The local content-addressed store, the embedded default registry.

Layout under ``<home>/store``::

    objects/sha256/ab/abcdef...        every distinct file content once, read-only
    assets/<asset>/versions/<label>/   a version's files, hard links to the objects
    assets/<asset>/<alias>             a symlink to versions/<label>, replaced atomically
    staging/                           registrations in progress

A serving system reads ``assets/<asset>/production``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rearguard.models.errors import NotFoundError, UnsafePathError, UsageError
from rearguard.models.registry.base import (
    SIGNATURE_FILE,
    ManifestEntry,
    Progress,
    StagedVersion,
)

_CHUNK = 1024 * 1024
_READ_ONLY_FILE = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


class LocalStore:
    """A content-addressed store of versions under one directory.

    Args:
        root: the store directory (``<home>/store``).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "objects" / "sha256"
        self.assets = root / "assets"
        self.staging = root / "staging"

    # -- registration ------------------------------------------------------------------------

    def stage_version(self, *, source: Path, progress: Progress | None = None) -> StagedVersion:
        """Copy a file or directory into the objects, hashing it, and link a staged version.

        Nothing is visible under ``assets/`` until :meth:`publish_version`.

        Args:
            source: a file or a directory; symlinks inside it must stay inside it.
            progress: called with the number of bytes copied, chunk by chunk.

        Returns:
            The staged version, its manifest sorted by path.

        Raises:
            NotFoundError: the source does not exist.
            UnsafePathError: a symlink in the source points outside it.
            UsageError: the source holds no files.
        """
        work = self.staging / uuid.uuid4().hex

        def link_object(path: Path, target: Path) -> tuple[str, int]:
            digest, size = self._ingest(path, work, progress)
            os.link(self._object_path(digest), target)
            return digest, size

        return stage_files(collect_source_files(source), work=work, place=link_object)

    def publish_version(self, staged: StagedVersion, *, asset: str, label: str, kind: str) -> None:
        """Move a staged version into ``assets/<asset>/versions/<label>``.

        ``kind`` is not stored here: the database holds it.

        The caller must hold the label exclusively (its uncommitted database row): a directory
        already there was then left by a registration that crashed before its commit, and is
        replaced. Without that guarantee a registration racing a committed one would delete
        the committed version's files.
        """
        final = self._version_dir(asset, label)
        if final.exists():
            remove_tree(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        (staged.work / "version").rename(final)

    def discard_staged(self, staged: StagedVersion) -> None:
        """Remove what is left of a staged version (all of it, if it was never published)."""
        remove_tree(staged.work)

    def _ingest(self, path: Path, work: Path, progress: Progress | None) -> tuple[str, int]:
        """Copy one file into the objects directory while hashing it; return (sha256, size)."""
        tmp = work / f"obj-{uuid.uuid4().hex}"
        digest, size = copy_with_hash(path, tmp, progress=progress)
        target = self._object_path(digest)
        if target.exists():
            tmp.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp.chmod(_READ_ONLY_FILE)
            tmp.replace(target)
        return digest, size

    def discard_version(self, *, asset: str, label: str) -> None:
        """Remove a version directory whose registration did not commit."""
        remove_tree(self._version_dir(asset, label))

    def copy_version(self, *, asset: str, label: str, kind: str, files: dict[str, Path]) -> int:
        """Store a copy of another store's version (a drill sandbox's) under the same label.

        Files are hard-linked when on the same filesystem, else copied read-only; symlinks
        are recreated as they are.

        Returns:
            How many files were hard-linked rather than copied.
        """
        root = self._version_dir(asset, label)
        linked = 0
        for relative, path in files.items():
            destination = root / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink():
                os.symlink(os.readlink(path), destination)
            elif _link_or_copy(path, destination):
                linked += 1
        return linked

    def mirror_status(self, *, asset: str, label: str, status: str) -> None:
        """Nothing to do: the local store keeps no statuses; the database holds them."""

    def attach_signature(self, *, asset: str, label: str, bundle: Path) -> None:
        """Copy ``bundle`` into the version's directory as ``model.sig``, read-only, replacing
        any there with one rename (made in staging first, so the directory never holds a
        half-written or stray file).

        Raises:
            NotFoundError: the version's directory is gone.
        """
        final = self._version_dir(asset, label) / SIGNATURE_FILE
        if not final.parent.is_dir():
            raise NotFoundError(f"{asset}@{label}: stored content is missing from {final.parent}")
        self.staging.mkdir(parents=True, exist_ok=True)
        tmp = self.staging / f"signature-{uuid.uuid4().hex}"
        copy_with_hash(bundle, tmp)
        tmp.chmod(_READ_ONLY_FILE)
        tmp.replace(final)
        _fsync_dir(final.parent)

    # -- reading -----------------------------------------------------------------------------

    def version_location(self, *, asset: str, label: str) -> Path:
        """The directory holding a version's files."""
        return self._version_dir(asset, label)

    def version_files(self, *, asset: str, label: str) -> dict[str, Path]:
        """Every regular file or link found in a version's directory now, by relative path.

        Raises:
            NotFoundError: the version's directory is gone.
        """
        root = self._version_dir(asset, label)
        if not root.is_dir():
            raise NotFoundError(f"{asset}@{label}: stored content is missing from {root}")
        return walk_version_dir(root)

    def object_path(self, digest: str) -> Path:
        """Where the content with this SHA-256 is stored."""
        return self._object_path(digest)

    # -- aliases -----------------------------------------------------------------------------

    def alias_location(self, *, asset: str, alias: str) -> Path:
        """The symlink a serving system reads."""
        return self.assets / asset / alias

    def read_alias(self, *, asset: str, alias: str) -> str | None:
        """Return the label the alias symlink points at, or None when there is none."""
        link = self.alias_location(asset=asset, alias=alias)
        try:
            target = os.readlink(link)
        except (FileNotFoundError, OSError):
            return None
        return Path(target).name

    def move_alias(self, *, asset: str, alias: str, label: str) -> None:
        """Point the alias at a version with one atomic rename of a fresh symlink."""
        link = self.alias_location(asset=asset, alias=alias)
        tmp = link.with_name(f".{alias}.{uuid.uuid4().hex}.tmp")
        os.symlink(Path("versions") / label, tmp)
        tmp.replace(link)
        _fsync_dir(link.parent)

    # -- drills ------------------------------------------------------------------------------

    def for_sandbox(self, *, home: Path, name: str) -> LocalStore:
        """A store of a drill sandbox's own, under its home."""
        return LocalStore(home / "store")

    def delete_sandbox(self) -> None:
        """Nothing to do: a sandbox's store lives in its home, removed with it."""

    # -- paths -------------------------------------------------------------------------------

    def _object_path(self, digest: str) -> Path:
        return self.objects / digest[:2] / digest

    def _version_dir(self, asset: str, label: str) -> Path:
        return self.assets / asset / "versions" / label


def copy_with_hash(
    source: Path, target: Path, *, progress: Progress | None = None
) -> tuple[str, int]:
    """Copy a file, hashing the bytes on the way, and fsync the copy.

    Returns:
        (sha256 of what was copied, size).
    """
    hasher = hashlib.sha256()
    size = 0
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with source.open("rb") as src, target.open("wb") as dst:
        while n := src.readinto(buffer):
            hasher.update(view[:n])
            dst.write(view[:n])
            size += n
            if progress:
                progress(n)
        dst.flush()
        os.fsync(dst.fileno())
    return hasher.hexdigest(), size


def walk_version_dir(root: Path) -> dict[str, Path]:
    """Every regular file or link found under a version's directory, by relative POSIX path."""
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames + [d for d in dirnames if Path(dirpath, d).is_symlink()]:
            path = Path(dirpath, name)
            found[path.relative_to(root).as_posix()] = path
    return found


def _link_or_copy(source: Path, destination: Path) -> bool:
    """Hard-link a stored file; copy it (read-only) across filesystems. True when linked."""
    try:
        os.link(source, destination, follow_symlinks=False)
        return True
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
    shutil.copyfile(source, destination)
    destination.chmod(_READ_ONLY_FILE)
    return False


def stage_files(
    files: list[tuple[str, Path]],
    *,
    work: Path,
    place: Callable[[Path, Path], tuple[str, int]],
) -> StagedVersion:
    """Stage a version's files under ``work/version``, each put there by ``place``.

    Args:
        files: (relative POSIX path, source file) pairs, as :func:`collect_source_files` gives.
        work: the staging directory (created; removed again if anything fails).
        place: called as ``place(source, target)``; puts the file at ``target`` (a copy, a
            link) and returns its SHA-256 and size.

    Returns:
        The staged version, its manifest sorted by path.
    """
    (work / "version").mkdir(parents=True)
    try:
        manifest: list[ManifestEntry] = []
        for relative, path in files:
            target = work / "version" / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                digest, size = place(path, target)
            except PermissionError as exc:
                raise UsageError(
                    f"cannot read {_shown(path)}: {exc.strerror}",
                    hint="a version must hold every entry of its source; fix the permissions",
                ) from None
            manifest.append(ManifestEntry(relative, digest, size))
    except BaseException:
        remove_tree(work)
        raise
    return StagedVersion(sorted(manifest, key=lambda entry: entry.path), work)


def collect_source_files(source: Path) -> list[tuple[str, Path]]:
    """List the files to register from a file or directory, refusing what cannot be stored
    faithfully: a version that silently missed an entry could still become known-good.

    A directory's own ``model.sig`` (:data:`SIGNATURE_FILE`) is not listed: it is the
    version's signature, not one of the files it signs.

    Returns:
        (relative POSIX path, absolute path) pairs, sorted.

    Raises:
        NotFoundError: the source does not exist.
        UnsafePathError: a symlink resolves outside the source directory, or to a directory.
        UsageError: the source is empty or is neither a file nor a directory; an entry is a
            FIFO, a socket or a device, cannot be read, or has a name that is not UTF-8.
    """
    if not source.exists():
        raise NotFoundError(f"path {source} does not exist")
    _check_name(source.name, source)
    if source.is_file():
        _check_readable(source, os.R_OK, source)
        return [(source.name, source.resolve())]
    if not source.is_dir():
        raise UsageError(f"path {source} is neither a file nor a directory")
    root = source.resolve()
    _check_readable(root, os.R_OK | os.X_OK, source)

    def unreadable(exc: OSError) -> None:
        raise UsageError(
            f"cannot read {_shown(exc.filename or source)}: {exc.strerror or exc}",
            hint="a version must hold every entry of its source; fix the permissions",
        )

    files: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=False):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath, name)
            shown = source / path.relative_to(root)
            _check_name(name, shown)
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                target = path.resolve()
                if target != root and root not in target.parents:
                    raise UnsafePathError(
                        f"{_shown(path)} is a symlink to {_shown(target)}, outside {source}",
                        hint="register the target itself, or copy it into the directory",
                    )
                try:
                    target_mode = target.stat().st_mode
                except OSError as exc:
                    raise UsageError(
                        f"{_shown(shown)} is a symlink to {_shown(target)}: {exc.strerror}",
                        hint=_STORE_ONLY,
                    ) from None
                if stat.S_ISDIR(target_mode):
                    raise UnsafePathError(
                        f"{_shown(path)} is a symlink to a directory; not followed"
                    )
                _check_entry(target_mode, shown)
                _check_readable(target, os.R_OK, shown)
                files.append((path.relative_to(root).as_posix(), target))
            elif stat.S_ISDIR(mode):
                _check_readable(path, os.R_OK | os.X_OK, shown)
            else:
                _check_entry(mode, shown)
                _check_readable(path, os.R_OK, shown)
                files.append((path.relative_to(root).as_posix(), path))
    files = [(relative, path) for relative, path in files if relative != SIGNATURE_FILE]
    if not files:
        raise UsageError(f"{source} holds no files to register")
    return sorted(files)


_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)
_STORE_ONLY = "a version stores regular files only; move it out of the source"


def _shown(path: Path | str) -> str:
    """A path as the user may see it, a name that is not UTF-8 shown with escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _check_name(name: str, shown: Path) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(
            f"{_shown(shown)}: the name is not valid UTF-8",
            hint="rename it: a manifest records every path as UTF-8",
        ) from None


def _check_entry(mode: int, shown: Path) -> None:
    if stat.S_ISREG(mode):
        return
    kind = next((what for test, what in _SPECIAL_KINDS if test(mode)), "not a regular file")
    raise UsageError(f"{_shown(shown)} is {kind}", hint=_STORE_ONLY)


def _check_readable(path: Path, mode: int, shown: Path) -> None:
    # Checked up front, and again when the bytes are read (a race, or root's access rules).
    if not os.access(path, mode):
        what = "directory" if mode & os.X_OK else "file"
        raise UsageError(
            f"cannot read the {what} {_shown(shown)}: permission denied",
            hint="a version must hold every entry of its source; fix the permissions",
        )


def remove_tree(path: Path) -> None:
    """Delete a directory of stored (read-only) content, if it exists."""
    if not path.exists():
        return

    def _make_writable(func: Any, target: str, _exc: Any) -> None:
        # Stored content is read-only; its directory must be writable to unlink it.
        Path(target).parent.chmod(0o755)
        func(target)

    shutil.rmtree(path, onerror=_make_writable)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
