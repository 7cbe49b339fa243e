"""Settling: a version an incident has just restored is not taken away by the next one.

A retry, a second responder or a late alert can start another containment right after a
playbook restored a person-approved version; quarantining that version again would undo the
recovery and roll production back one more step. For ``[playbooks] settle_s`` after a
playbook moved production to an approved version, containment leaves it alone, unless its
files no longer match its manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, col, select

from rearguard.models.db.tables import Alias, Asset, AssetVersion, TimelineEvent
from rearguard.models.enums import VersionStatus


@dataclass(frozen=True)
class Restoration:
    """A playbook's recent move of production to an approved version."""

    label: str
    approved_by: str
    incident_id: int | None
    moved_at: datetime

    def describe(self) -> str:
        """Why containment leaves the version alone, in words."""
        by = f"incident {self.incident_id}" if self.incident_id else "a playbook"
        return (
            f"{self.label} (approved by {self.approved_by}) was restored by {by} at "
            f"{self.moved_at.isoformat(timespec='seconds')}, within [playbooks] settle_s"
        )


def recent_restoration(
    *,
    session: Session,
    asset: Asset,
    version: AssetVersion,
    alias: str,
    settle_s: float,
    now: datetime | None = None,
) -> Restoration | None:
    """The restoration that protects ``version`` now, or None.

    Only a known-good version a person approved, which the alias points at because a
    playbook moved it there less than ``settle_s`` seconds ago.
    """
    if settle_s <= 0 or version.status != VersionStatus.KNOWN_GOOD or not version.approved_by:
        return None
    row = session.get(Alias, (asset.id, alias))
    if row is None or row.version_id != version.id or not row.moved_by.startswith("playbook:"):
        return None
    moved_at = row.moved_at if row.moved_at.tzinfo else row.moved_at.replace(tzinfo=UTC)
    if (now or datetime.now(UTC)) - moved_at >= timedelta(seconds=settle_s):
        return None
    incident_id = session.exec(
        select(TimelineEvent.incident_id)
        .where(
            TimelineEvent.action == "alias.moved",
            TimelineEvent.asset == asset.name,
            TimelineEvent.version == version.label,
        )
        .order_by(col(TimelineEvent.seq).desc())
        .limit(1)
    ).first()
    return Restoration(version.label, version.approved_by, incident_id, moved_at)
