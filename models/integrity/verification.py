"""Integrity checks of stored versions: re-hash against the manifest, scan pickles by opcode.

Nothing here loads an artifact: bytes stream through hashlib, and pickle-based files are read
as an opcode stream only.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from rearguard.models.errors import NotFoundError
from rearguard.models.integrity.hashing import hash_files
from rearguard.models.integrity.prehash import HashedAhead
from rearguard.models.integrity.scan.pickle import is_pickle_candidate, scan_pickle_file
from rearguard.models.registry.base import ManifestEntry, Progress, RegistryBackend


@dataclass
class VersionCheck:
    """What re-verifying one version found."""

    asset: str
    label: str
    files: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)
    tampered: bool = False
    dangerous_pickle: bool = False
    dangerous_files: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every file matches its manifest entry and no pickle is dangerous."""
        return not self.problems

    def summary(self) -> str:
        """One line for the user."""
        if self.ok:
            return f"{self.files} files, {self.bytes} bytes verified"
        return "; ".join(self.problems)

    def as_dict(self) -> dict[str, object]:
        """A JSON-friendly form."""
        return {
            "asset": self.asset,
            "version": self.label,
            "ok": self.ok,
            "files": self.files,
            "bytes": self.bytes,
            "problems": list(self.problems),
        }


def check_version(
    *,
    registry: RegistryBackend,
    asset: str,
    label: str,
    manifest: Sequence[ManifestEntry],
    workers: int = 1,
    progress: Progress | None = None,
    ahead: HashedAhead | None = None,
) -> VersionCheck:
    """Re-hash a version's files now and compare them with its manifest; scan its pickles.

    Args:
        registry: where the version is stored.
        asset: asset name.
        label: version label.
        manifest: the manifest recorded at registration.
        workers: threads hashing files in parallel.
        progress: called with bytes hashed (possibly from worker threads).
        ahead: the child hashing files ahead of the command (``assets verify``), if any.

    Returns:
        The check, listing every problem found.
    """
    check = VersionCheck(asset=asset, label=label)
    try:
        present = registry.version_files(asset=asset, label=label)
    except NotFoundError as exc:
        check.problems.append(str(exc))
        check.tampered = True
        return check
    expected = {entry.path: entry for entry in manifest}
    for extra in sorted(set(present) - set(expected)):
        check.problems.append(f"{extra}: unexpected file (not in the manifest)")
        check.tampered = True
    to_hash: list[tuple[ManifestEntry, Path]] = []
    for path, entry in sorted(expected.items()):
        location = present.get(path)
        if location is None or not location.is_file():
            check.problems.append(f"{path}: missing")
            check.tampered = True
        else:
            to_hash.append((entry, location))
    try:
        digests = hash_files(
            [loc for _, loc in to_hash], workers=workers, progress=progress, ahead=ahead
        )
    except OSError as exc:
        check.problems.append(f"unreadable: {exc}")
        check.tampered = True
        return check
    for (entry, location), (digest, size) in zip(to_hash, digests, strict=True):
        check.files += 1
        check.bytes += size
        if digest != entry.sha256:
            check.problems.append(
                f"{entry.path}: sha256 mismatch (recorded {entry.sha256[:12]}…, "
                f"found {digest[:12]}…, {size} bytes)"
            )
            check.tampered = True
        if is_pickle_candidate(location):
            for finding in scan_pickle_file(location, display_path=entry.path):
                where = f"{finding.path}" + (f"!{finding.member}" if finding.member else "")
                if finding.callable:
                    check.problems.append(
                        f"{where}: pickle references {finding.callable} at offset "
                        f"{finding.offset} ({finding.reason})"
                    )
                else:
                    check.problems.append(f"{where}: {finding.reason} at offset {finding.offset}")
                check.dangerous_pickle = True
                if entry.path not in check.dangerous_files:
                    check.dangerous_files.append(entry.path)
    return check


def check_versions(
    *,
    registry: RegistryBackend,
    items: Sequence[tuple[str, str, Sequence[ManifestEntry]]],
    workers: int = 1,
    progress: Progress | None = None,
    ahead: HashedAhead | None = None,
) -> list[VersionCheck]:
    """Check several versions, sharing the hashing threads between them.

    Args:
        registry: where the versions are stored.
        items: (asset, label, manifest) triples.
        workers: total hashing threads.
        progress: called with bytes hashed.
        ahead: the child hashing files ahead of the command, if any.

    Returns:
        One check per item, in order.
    """
    if workers <= 1 or len(items) <= 1:
        # One version (or one thread): its files share the hashing threads.
        return [
            check_version(
                registry=registry,
                asset=a,
                label=lb,
                manifest=m,
                workers=workers,
                progress=progress,
                ahead=ahead,
            )
            for a, lb, m in items
        ]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        futures = [
            pool.submit(
                check_version,
                registry=registry,
                asset=a,
                label=lb,
                manifest=m,
                workers=1,
                progress=progress,
                ahead=ahead,
            )
            for a, lb, m in items
        ]
        return [future.result() for future in futures]
