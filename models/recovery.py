"""The bodies of the playbook steps, as plain Python.

Each function takes the runtime and an incident id, converges when called again after a crash,
and returns a JSON-friendly summary that becomes the step's outcome event. ``flows/steps.py``
wraps each one as a Prefect task with an intent event before and an outcome event after.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from rearguard.models.assets import (
    alias_version,
    get_asset,
    get_version,
    manifest_of,
    move_alias,
    set_status,
)
from rearguard.models.enums import IncidentStatus, VersionStatus
from rearguard.models.errors import OperationFailed
from rearguard.models.evidence import preserve_evidence
from rearguard.models.incidents import get_incident, set_incident_status, update_state
from rearguard.models.integrity import VersionCheck, check_versions
from rearguard.models.runtime import Runtime
from rearguard.models.tables import Asset, AssetVersion, Incident
from rearguard.models.validation import run_validation

_UNTRUSTED = (VersionStatus.QUARANTINED, VersionStatus.RETIRED)


def _actor(incident: Incident) -> str:
    return f"playbook:{incident.type}"


def _incident_asset(session: Session, incident: Incident) -> Asset:
    if not incident.asset_name:
        raise OperationFailed(f"incident {incident.id} names no asset")
    return get_asset(session=session, name=incident.asset_name)


def quarantine(*, runtime: Runtime, incident_id: int) -> dict[str, Any]:
    """Quarantine the version that was in production when the incident opened.

    The content as found is first copied read-only, with its hashes, under
    ``<home>/evidence/incident-<id>/<asset>/<label>``; then the status changes. Nothing is
    deleted.
    """
    with runtime.db.read_session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        asset = _incident_asset(session, incident)
        label = incident.state.get("compromised")
        if not label:
            return {"skipped": "no version was in production when the incident opened"}
        version = get_version(session=session, asset=asset, label=label)
        manifest = manifest_of(session=session, version=version)
    destination = (
        runtime.settings.home / "evidence" / f"incident-{incident_id}" / asset.name / label
    )
    record = preserve_evidence(
        registry=runtime.registry,
        asset=asset.name,
        label=label,
        manifest=manifest,
        destination=destination,
        incident_id=incident_id,
    )
    altered = [f["path"] for f in record["files"] if not f.get("matches")]
    with runtime.db.session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        asset = _incident_asset(session, incident)
        version = get_version(session=session, asset=asset, label=label)
        set_status(
            session=session,
            asset=asset,
            version=version,
            status=VersionStatus.QUARANTINED,
            actor=_actor(incident),
            reason=f"incident {incident_id}: in production when the incident opened",
            incident_id=incident_id,
        )
        if incident.status in (IncidentStatus.OPEN, IncidentStatus.FAILED):
            # A rerun of a recovered incident must not walk it back to contained.
            set_incident_status(
                session=session,
                incident=incident,
                status=IncidentStatus.CONTAINED,
                actor=_actor(incident),
            )
    return {"quarantined": label, "evidence": str(destination), "altered_files": altered}


def verify_integrity(*, runtime: Runtime, incident_id: int) -> dict[str, Any]:
    """Re-verify every version of the incident's asset that is not quarantined or retired.

    Versions that fail are marked suspect, with what failed.

    Returns:
        ``{"checks": {label: {ok, problems, ...}}, "failed": [labels]}``.
    """
    with runtime.db.read_session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        asset = _incident_asset(session, incident)
        versions = _versions(session, asset, exclude=_UNTRUSTED)
        items = [(asset.name, v.label, manifest_of(session=session, version=v)) for v in versions]
    checks = check_versions(
        registry=runtime.registry, items=items, workers=runtime.settings.playbooks.hash_workers
    )
    _mark_failed_suspect(runtime, incident_id, checks)
    return {
        "checks": {c.label: c.as_dict() for c in checks},
        "failed": [c.label for c in checks if not c.ok],
    }


def _mark_failed_suspect(runtime: Runtime, incident_id: int, checks: list[VersionCheck]) -> None:
    failed = [c for c in checks if not c.ok]
    if not failed:
        return
    with runtime.db.session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        asset = _incident_asset(session, incident)
        for check in failed:
            version = get_version(session=session, asset=asset, label=check.label)
            if version.status in _UNTRUSTED:
                continue
            set_status(
                session=session,
                asset=asset,
                version=version,
                status=VersionStatus.SUSPECT,
                actor=_actor(incident),
                reason=f"failed re-verification: {check.summary()}",
                incident_id=incident_id,
            )


def _versions(
    session: Session, asset: Asset, *, exclude: tuple[VersionStatus, ...] = ()
) -> list[AssetVersion]:
    statement = (
        select(AssetVersion)
        .where(AssetVersion.asset_id == asset.id)
        .order_by(col(AssetVersion.registered_at).desc(), col(AssetVersion.id).desc())
    )
    if exclude:
        statement = statement.where(col(AssetVersion.status).not_in(exclude))
    return list(session.exec(statement))


def select_known_good(
    *, runtime: Runtime, incident_id: int, checks: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Choose the version to roll back to, by the rule in DESIGN.md.

    The newest ``known_good`` version, registered before the incident's ``since`` when given,
    whose files re-hash to its manifest now (``checks`` from this run's verification count as
    now), and that passes the asset's validation command if one is set. A version that fails
    verification is marked suspect.

    Raises:
        OperationFailed: no version qualifies; the message lists why each was rejected.
    """
    with runtime.db.read_session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        asset = _incident_asset(session, incident)
        since = incident.since
        versions = _versions(session, asset)
        known_good = [
            (v, manifest_of(session=session, version=v))
            for v in versions
            if v.status == VersionStatus.KNOWN_GOOD
        ]
        # Approved versions that verification has just made suspect: say so in the reason.
        rejected: list[dict[str, str]] = [
            {"version": v.label, "reason": f"is suspect ({v.status_reason})"}
            for v in versions
            if v.status == VersionStatus.SUSPECT and v.approved_by
        ]
    checks = checks or {}
    for version, manifest in known_good:
        if since is not None and version.registered_at >= since:
            rejected.append({"version": version.label, "reason": "registered at or after --since"})
            continue
        verdict = checks.get(version.label)
        if verdict is None:
            (check,) = check_versions(
                registry=runtime.registry,
                items=[(asset.name, version.label, manifest)],
                workers=runtime.settings.playbooks.hash_workers,
            )
            if not check.ok:
                _mark_failed_suspect(runtime, incident_id, [check])
            verdict = check.as_dict()
        if not verdict["ok"]:
            rejected.append(
                {
                    "version": version.label,
                    "reason": "fails verification: " + "; ".join(verdict["problems"]),
                }
            )
            continue
        if asset.validate_command:
            result = run_validation(
                command=asset.validate_command,
                location=runtime.registry.version_location(asset=asset.name, label=version.label),
                asset=asset.name,
                label=version.label,
                timeout_s=runtime.settings.playbooks.validation_timeout_s,
                drill=runtime.drill,
            )
            if not result.ok:
                rejected.append({"version": version.label, "reason": f"validation {result.reason}"})
                continue
        with runtime.db.session() as session:
            incident = get_incident(session=session, incident_id=incident_id)
            update_state(session=session, incident=incident, selected=version.label)
        return {"selected": version.label, "rejected": rejected}
    reasons = "; ".join(f"{r['version']} {r['reason']}" for r in rejected) or (
        "the asset has no known-good version"
    )
    raise OperationFailed(f"no known-good version of {asset.name} qualifies: {reasons}")


def rollback(*, runtime: Runtime, incident_id: int, label: str) -> dict[str, Any]:
    """Move the production alias to ``label`` (a no-op when it is already there)."""
    alias = runtime.settings.registry.alias
    with runtime.db.session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        asset = _incident_asset(session, incident)
        version = get_version(session=session, asset=asset, label=label)
        if version.status != VersionStatus.KNOWN_GOOD:
            raise OperationFailed(f"{asset.name}@{label} is {version.status}; not rolling back")
        before = move_alias(
            session=session,
            registry=runtime.registry,
            asset=asset,
            version=version,
            alias=alias,
            actor=_actor(incident),
            incident_id=incident_id,
        )
    return {"alias": alias, "from": before, "to": label}


def validate(*, runtime: Runtime, incident_id: int) -> dict[str, Any]:
    """Run the asset's validation command against what production serves now.

    Raises:
        OperationFailed: the command failed or timed out; its evidence is in the message.
    """
    with runtime.db.read_session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        asset = _incident_asset(session, incident)
        current = alias_version(session=session, asset=asset, alias=runtime.settings.registry.alias)
    if current is None:
        raise OperationFailed(f"{asset.name} has no production version to validate")
    if not asset.validate_command:
        return {"skipped": "the asset has no validation command", "version": current.label}
    result = run_validation(
        command=asset.validate_command,
        location=runtime.registry.alias_location(
            asset=asset.name, alias=runtime.settings.registry.alias
        ),
        asset=asset.name,
        label=current.label,
        timeout_s=runtime.settings.playbooks.validation_timeout_s,
        drill=runtime.drill,
    )
    if not result.ok:
        raise OperationFailed(
            f"validation of {asset.name}@{current.label} {result.reason}: "
            f"{result.output_tail[-200:].strip()}"
        )
    return {"version": current.label, **result.as_dict()}


def conclude(
    *, runtime: Runtime, incident_id: int, status: IncidentStatus, reason: str | None = None
) -> dict[str, Any]:
    """Record the incident's end state (recovered or failed) and the reason.

    Returns:
        ``changed`` is False when the incident already ended that way (a converged rerun),
        so nobody is notified twice of the same outcome.
    """
    with runtime.db.session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        changed = set_incident_status(
            session=session, incident=incident, status=status, actor=_actor(incident), reason=reason
        )
    return {"status": str(status), "reason": reason, "changed": changed}
