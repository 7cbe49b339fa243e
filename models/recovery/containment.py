"""Containment: quarantine a version (its content kept read-only as evidence first), and check
production against its manifest."""

from __future__ import annotations

from rearguard.models.assets.versions import (
    alias_version,
    get_version,
    manifest_of,
    set_status,
)
from rearguard.models.enums import IncidentStatus, VersionStatus
from rearguard.models.incidents.service import get_incident, set_incident_status
from rearguard.models.recovery.evidence import preserve_evidence
from rearguard.models.recovery.results import ProductionCheck, Quarantined, Skipped
from rearguard.models.recovery.selection import check_and_record, mark_failed_suspect
from rearguard.models.recovery.settling import recent_restoration
from rearguard.models.recovery.targets import incident_asset, playbook_actor
from rearguard.models.runtime import Runtime


def quarantine(
    *,
    runtime: Runtime,
    incident_id: int,
    asset: str | None = None,
    label: str | None = None,
    reason: str = "in production when the incident opened",
) -> Quarantined | Skipped:
    """Quarantine a version: by default the one in production when the incident opened.

    The content as found is first copied read-only, with its hashes, under
    ``<home>/evidence/incident-<id>/<asset>/<label>``; then the status changes. Nothing is
    deleted.

    Args:
        runtime: the process runtime.
        incident_id: the incident.
        asset: the asset (default: the incident's).
        label: the version (default: the incident's ``compromised`` version).
        reason: why, as recorded on the version.
    """
    with runtime.db.read_session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        target = incident_asset(session, incident, asset)
        label = label or incident.state.get("compromised")
        if not label:
            return Skipped(skipped="no version was in production when the incident opened")
        version = get_version(session=session, asset=target, label=label)
        manifest = manifest_of(session=session, version=version)
        restored = recent_restoration(
            session=session,
            asset=target,
            version=version,
            alias=runtime.settings.registry.alias,
            settle_s=runtime.settings.playbooks.settle_s,
        )
    if restored is not None:
        (check,) = check_and_record(
            runtime, incident, [(target.name, label, manifest)], during="quarantine"
        )
        if check.ok:
            return Skipped(
                skipped=f"{restored.describe()}; its files still match: not quarantined",
                # Named only when the playbook named it, as for Quarantined below.
                asset=target.name if asset is not None else None,
            )
    destination = (
        runtime.settings.home / "evidence" / f"incident-{incident_id}" / target.name / label
    )
    record = preserve_evidence(
        registry=runtime.registry,
        asset=target.name,
        label=label,
        manifest=manifest,
        destination=destination,
        incident_id=incident_id,
    )
    altered = tuple(f.path for f in record.files if not f.matches)
    with runtime.db.session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        target = incident_asset(session, incident, asset)
        version = get_version(session=session, asset=target, label=label)
        set_status(
            session=session,
            registry=runtime.registry,
            asset=target,
            version=version,
            status=VersionStatus.QUARANTINED,
            actor=playbook_actor(incident),
            reason=f"incident {incident_id}: {reason}",
            incident_id=incident_id,
        )
        if incident.status in (IncidentStatus.OPEN, IncidentStatus.FAILED):
            # A rerun of a recovered incident must not walk it back to contained.
            set_incident_status(
                session=session,
                incident=incident,
                status=IncidentStatus.CONTAINED,
                actor=playbook_actor(incident),
            )
    return Quarantined(
        # Named only when the playbook named it (a multi-asset playbook).
        asset=target.name if asset is not None else None,
        quarantined=label,
        evidence=str(destination),
        altered_files=altered,
    )


def verify_production(*, runtime: Runtime, incident_id: int) -> ProductionCheck | Skipped:
    """Re-verify the version production serves now; a failure marks it suspect.

    Returns:
        The check; skipped when nothing is in production.
    """
    with runtime.db.read_session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        target = incident_asset(session, incident)
        current = alias_version(
            session=session, asset=target, alias=runtime.settings.registry.alias
        )
        if current is None:
            return Skipped(skipped="nothing in production")
        manifest = manifest_of(session=session, version=current)
    (check,) = check_and_record(
        runtime, incident, [(target.name, current.label, manifest)], during="production check"
    )
    mark_failed_suspect(runtime, incident_id, [check], target.name)
    return ProductionCheck(version=current.label, ok=check.ok, problems=tuple(check.problems))
