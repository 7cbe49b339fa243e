"""The digest denylist: file contents known to be malicious (supply-chain incidents).

A digest on the list is refused by ``assets register`` and ``assets promote`` (exit 3, an
integrity violation), and every stored version holding it is found by one indexed query on
``version_file.sha256``, never by re-hashing the store.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from rearguard.models.audit.chain import append_event
from rearguard.models.db.tables import Asset, AssetVersion, DeniedDigest, VersionFile
from rearguard.models.enums import EventKind
from rearguard.models.errors import IntegrityViolation, NotFoundError, UsageError
from rearguard.models.integrity.hashing import sha256_file

_SHA256 = re.compile(r"[0-9a-f]{64}")


def parse_digest(value: str) -> str:
    """Normalise a SHA-256 hex digest (``sha256:`` prefix and upper case accepted).

    Raises:
        UsageError: the value is not 64 hexadecimal characters.
    """
    digest = value.strip().lower().removeprefix("sha256:")
    if not _SHA256.fullmatch(digest):
        raise UsageError(
            f"invalid --digest {value!r}", hint="give a SHA-256 as 64 hexadecimal characters"
        )
    return digest


def digest_of_file(path: Path) -> str:
    """The SHA-256 of a local file (``--file``).

    Raises:
        UsageError: the path is not a readable file.
    """
    if not path.is_file():
        raise UsageError(f"--file {str(path)!r} is not a file")
    try:
        return sha256_file(path)[0]
    except OSError as exc:
        raise UsageError(f"cannot read --file {str(path)!r}: {exc.strerror}") from exc


def deny_digest(
    *, session: Session, digest: str, reason: str, actor: str, incident_id: int | None = None
) -> DeniedDigest:
    """Add a digest to the denylist and record it; an entry already there is returned as is."""
    entry = session.get(DeniedDigest, digest)
    if entry is not None:
        return entry
    entry = DeniedDigest(sha256=digest, reason=reason, incident_id=incident_id, added_by=actor)
    session.add(entry)
    append_event(
        session,
        kind=EventKind.STATE,
        action="denylist.added",
        actor=actor,
        incident_id=incident_id,
        data={"sha256": digest, "reason": reason},
    )
    return entry


@dataclass(frozen=True)
class DenylistEntry:
    """One denylisted digest: why, from which incident, by whom and when."""

    sha256: str
    reason: str
    incident_id: int | None
    added_by: str
    added_at: datetime

    def json_value(self) -> dict[str, str | int | None]:
        """The JSON form (``denylist list --json``), the time in ISO 8601."""
        return {
            "sha256": self.sha256,
            "reason": self.reason,
            "incident_id": self.incident_id,
            "added_by": self.added_by,
            "added_at": self.added_at.isoformat(),
        }


def list_denied(*, session: Session) -> list[DenylistEntry]:
    """Every denylist entry, newest first (plain records, usable after the session closes)."""
    rows = session.exec(
        select(DeniedDigest).order_by(col(DeniedDigest.added_at).desc(), col(DeniedDigest.sha256))
    )
    return [DenylistEntry(e.sha256, e.reason, e.incident_id, e.added_by, e.added_at) for e in rows]


def lift_digest(*, session: Session, digest: str, actor: str, reason: str) -> DeniedDigest:
    """Remove a digest from the denylist on a person's word, recorded as ``denylist.removed``.

    Versions quarantined because of it stay quarantined (``assets release`` is per version).

    Raises:
        NotFoundError: the digest is not on the denylist.
    """
    entry = session.get(DeniedDigest, digest)
    if entry is None:
        raise NotFoundError(
            f"{digest} is not on the denylist", hint="see `rearguard denylist list`"
        )
    session.delete(entry)
    append_event(
        session,
        kind=EventKind.DECISION,
        action="denylist.removed",
        actor=actor,
        incident_id=entry.incident_id,
        data={"sha256": digest, "reason": reason, "was": entry.reason, "added_by": entry.added_by},
    )
    return entry


def denied_among(*, session: Session, digests: Iterable[str]) -> list[DeniedDigest]:
    """The denylist entries for any of ``digests``."""
    wanted = sorted(set(digests))
    if not wanted:
        return []
    return list(session.exec(select(DeniedDigest).where(col(DeniedDigest.sha256).in_(wanted))))


def denied_in_version(*, session: Session, version: AssetVersion) -> list[DeniedDigest]:
    """The denylist entries matching any file of a stored version."""
    statement = (
        select(DeniedDigest)
        .join(VersionFile, col(VersionFile.sha256) == col(DeniedDigest.sha256))
        .where(VersionFile.version_id == version.id)
    )
    return list(session.exec(statement))


def refuse_denied(entries: list[DeniedDigest], *, what: str) -> None:
    """Raise when any denylist entry matched.

    Raises:
        IntegrityViolation: ``what`` holds a denylisted file (exit 3).
    """
    if not entries:
        return
    first = entries[0]
    source = f" (incident {first.incident_id})" if first.incident_id else ""
    raise IntegrityViolation(
        f"{what} holds a file with denylisted digest {first.sha256}{source}",
        hint="remove the file; `rearguard incident show` of that incident says why it is denied",
    )


@dataclass(frozen=True)
class DigestHit:
    """One stored file with the looked-for digest."""

    asset: str
    kind: str
    label: str
    status: str
    path: str


def versions_with_digest(*, session: Session, digest: str) -> list[DigestHit]:
    """Every stored file with ``digest``, by asset and version (one query on the sha256 index)."""
    statement = (
        # SQLAlchemy's select: SQLModel's types a select of at most four columns.
        core_select(
            col(Asset.name),
            col(Asset.kind),
            col(AssetVersion.label),
            col(AssetVersion.status),
            col(VersionFile.path),
        )
        .join(AssetVersion, col(AssetVersion.id) == col(VersionFile.version_id))
        .join(Asset, col(Asset.id) == col(AssetVersion.asset_id))
        .where(col(VersionFile.sha256) == digest)
        .order_by(col(Asset.name), col(AssetVersion.id), col(VersionFile.path))
    )
    return [
        DigestHit(name, str(kind), label, str(status), path)
        for name, kind, label, status, path in session.connection().execute(statement)
    ]
