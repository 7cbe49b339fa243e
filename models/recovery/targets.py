"""What a step acts on: the incident's asset (or the one named), and who the timeline says
acted."""

from __future__ import annotations

from sqlmodel import Session

from rearguard.models.assets.versions import (
    get_asset,
)
from rearguard.models.db.tables import Asset, Incident
from rearguard.models.enums import VersionStatus
from rearguard.models.errors import OperationFailed

UNTRUSTED = (VersionStatus.QUARANTINED, VersionStatus.RETIRED)


def playbook_actor(incident: Incident) -> str:
    return f"playbook:{incident.type}"


def incident_asset(session: Session, incident: Incident, name: str | None = None) -> Asset:
    """The asset a step acts on: the one named (multi-asset playbooks), else the incident's."""
    name = name or incident.asset_name
    if not name:
        raise OperationFailed(f"incident {incident.id} names no asset")
    return get_asset(session=session, name=name)
