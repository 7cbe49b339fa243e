"""What every asset registry backend provides."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

Progress = Callable[[int], None]


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

    def publish_version(self, staged: StagedVersion, *, asset: str, label: str) -> None:
        """Make a staged version visible; the caller holds the label (its uncommitted row)."""
        ...

    def discard_staged(self, staged: StagedVersion) -> None:
        """Remove what is left of a staged version."""
        ...

    def discard_version(self, *, asset: str, label: str) -> None:
        """Remove a version whose registration did not commit."""
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
