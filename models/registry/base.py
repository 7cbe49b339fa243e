"""What every asset registry backend provides."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

Progress = Callable[[int], None]

SIGNATURE_FILE = "model.sig"
"""A version's OpenSSF model signature (an OMS bundle), at the root of its directory, as
``model_signing`` names it by default. It vouches for the other files, so it is not one of them:
a source directory's ``model.sig`` is kept beside the version's files, outside its manifest."""


@dataclass(frozen=True)
class ManifestEntry:
    """One file of a version as hashed: its relative POSIX path, SHA-256 and size."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class StagedVersion:
    """A version's content copied and hashed, not yet visible as a version."""

    manifest: list[ManifestEntry]
    work: Path


class RegistryBackend(Protocol):
    """Stores version contents and the aliases serving systems read."""

    def stage_version(self, *, source: Path, progress: Progress | None = None) -> StagedVersion:
        """Copy and hash ``source`` without making it visible as a version yet."""
        ...

    def publish_version(self, staged: StagedVersion, *, asset: str, label: str, kind: str) -> None:
        """Make a staged version visible; the caller holds the label (its uncommitted row)."""
        ...

    def discard_staged(self, staged: StagedVersion) -> None:
        """Remove what is left of a staged version."""
        ...

    def discard_version(self, *, asset: str, label: str) -> None:
        """Remove a version whose registration did not commit."""
        ...

    def copy_version(self, *, asset: str, label: str, kind: str, files: dict[str, Path]) -> int:
        """Store a copy of another registry's version (a drill sandbox's).

        Returns:
            How many files share their storage with the source (hard links) instead of
            being copied.
        """
        ...

    def mirror_status(self, *, asset: str, label: str, status: str) -> None:
        """Show a version's new status where the registry's users look, if it has a place."""
        ...

    def attach_signature(self, *, asset: str, label: str, bundle: Path) -> None:
        """Put a copy of ``bundle`` beside a stored version's files as its ``model.sig``."""
        ...

    def version_files(self, *, asset: str, label: str) -> dict[str, Path]:
        """Return where each file of a stored version lives now, by relative path."""
        ...

    def version_location(self, *, asset: str, label: str) -> Path:
        """Return the directory a serving system or validation command reads."""
        ...

    def read_alias(self, *, asset: str, alias: str) -> str | None:
        """Return the label an alias points at, or None."""
        ...

    def move_alias(self, *, asset: str, alias: str, label: str) -> None:
        """Point an alias at a version, atomically."""
        ...

    def alias_location(self, *, asset: str, alias: str) -> Path | str:
        """Return what a serving system reads to follow the alias."""
        ...

    def for_sandbox(self, *, home: Path, name: str) -> RegistryBackend:
        """A registry of the same kind for a drill sandbox, sharing nothing writable with this."""
        ...

    def delete_sandbox(self) -> None:
        """Delete what a sandbox's registry holds outside the sandbox's home."""
        ...
