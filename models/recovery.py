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
from rearguard.models.denylist import denied_in_version
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


def _incident_asset(session: Session, incident: Incident, name: str | None = None) -> Asset:
    """The asset a step acts on: the one named (multi-asset playbooks), else the incident's."""
    name = name or incident.asset_name
    if not name:
        raise OperationFailed(f"incident {incident.id} names no asset")
    return get_asset(session=session, name=name)


def quarantine(
    *,
    runtime: Runtime,
    incident_id: int,
    asset: str | None = None,
    label: str | None = None,
    reason: str = "in production when the incident opened",
) -> dict[str, Any]:
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
        target = _incident_asset(session, incident, asset)
        label = label or incident.state.get("compromised")
        if not label:
            return {"skipped": "no version was in production when the incident opened"}
        version = get_version(session=session, asset=target, label=label)
        manifest = manifest_of(session=session, version=version)
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
    altered = [f["path"] for f in record["files"] if not f.get("matches")]
    with runtime.db.session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        target = _incident_asset(session, incident, asset)
        version = get_version(session=session, asset=target, label=label)
        set_status(
            session=session,
            registry=runtime.registry,
            asset=target,
            version=version,
            status=VersionStatus.QUARANTINED,
            actor=_actor(incident),
            reason=f"incident {incident_id}: {reason}",
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
    result = {"quarantined": label, "evidence": str(destination), "altered_files": altered}
    return result if asset is None else {"asset": target.name, **result}


def verify_production(*, runtime: Runtime, incident_id: int) -> dict[str, Any]:
    """Re-verify the version production serves now; a failure marks it suspect.

    Returns:
        ``{"version", "ok", "problems"}``; ``version`` is None when nothing is in production.
    """
    with runtime.db.read_session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        target = _incident_asset(session, incident)
        current = alias_version(
            session=session, asset=target, alias=runtime.settings.registry.alias
        )
        if current is None:
            return {"version": None, "ok": True, "problems": [], "skipped": "nothing in production"}
        manifest = manifest_of(session=session, version=current)
    (check,) = check_versions(
        registry=runtime.registry,
        items=[(target.name, current.label, manifest)],
        workers=runtime.settings.playbooks.hash_workers,
    )
    _mark_failed_suspect(runtime, incident_id, [check], target.name)
    return {"version": current.label, "ok": check.ok, "problems": check.as_dict()["problems"]}


def verify_integrity(
    *, runtime: Runtime, incident_id: int, asset: str | None = None
) -> dict[str, Any]:
    """Re-verify every version of an asset (default: the incident's) not quarantined or retired.

    Versions that fail are marked suspect, with what failed.

    Returns:
        ``{"checks": {label: {ok, problems, ...}}, "failed": [labels]}``.
    """
    with runtime.db.read_session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        target = _incident_asset(session, incident, asset)
        versions = _versions(session, target, exclude=_UNTRUSTED)
        items = [(target.name, v.label, manifest_of(session=session, version=v)) for v in versions]
    checks = check_versions(
        registry=runtime.registry, items=items, workers=runtime.settings.playbooks.hash_workers
    )
    _mark_failed_suspect(runtime, incident_id, checks, target.name)
    return {
        "checks": {c.label: c.as_dict() for c in checks},
        "failed": [c.label for c in checks if not c.ok],
    }


def _mark_failed_suspect(
    runtime: Runtime, incident_id: int, checks: list[VersionCheck], asset_name: str
) -> None:
    failed = [c for c in checks if not c.ok]
    if not failed:
        return
    with runtime.db.session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        asset = get_asset(session=session, name=asset_name)
        for check in failed:
            version = get_version(session=session, asset=asset, label=check.label)
            if version.status in _UNTRUSTED:
                continue
            set_status(
                session=session,
                registry=runtime.registry,
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
    *,
    runtime: Runtime,
    incident_id: int,
    asset: str | None = None,
    checks: dict[str, dict[str, Any]] | None = None,
    honour_since: bool = True,
    clean_lineage: bool = False,
) -> dict[str, Any]:
    """Choose the version to roll back to, by the rule in DESIGN.md.

    The newest ``known_good`` version, registered before the incident's ``since`` when given,
    whose files re-hash to its manifest now (``checks`` from this run's verification count as
    now), that holds no denylisted file, that was not trained on a suspect or quarantined
    dataset version, and that passes the asset's validation command if one is set. A version
    that fails verification is marked suspect.

    Args:
        runtime: the process runtime.
        incident_id: the incident.
        asset: the asset (default: the incident's); its choice is recorded per asset.
        checks: this run's verification results, by label.
        honour_since: False when the incident's ``since`` dates something else (the dataset
            of a data-poisoning incident), not this asset's versions.
        clean_lineage: also reject versions that record no training dataset, unless
            ``[playbooks] allow_unlineaged_rollback`` is set.

    Raises:
        OperationFailed: no version qualifies; the message lists why each was rejected.
    """
    need_lineage = clean_lineage and not runtime.settings.playbooks.allow_unlineaged_rollback
    with runtime.db.read_session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        target = _incident_asset(session, incident, asset)
        since = incident.since if honour_since else None
        versions = _versions(session, target)
        known_good = [
            (v, manifest_of(session=session, version=v), _distrust(session, v, need_lineage))
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
    for version, manifest, distrust in known_good:
        if since is not None and version.registered_at >= since:
            rejected.append({"version": version.label, "reason": "registered at or after --since"})
            continue
        if distrust:
            rejected.append({"version": version.label, "reason": distrust})
            continue
        verdict = checks.get(version.label)
        if verdict is None:
            (check,) = check_versions(
                registry=runtime.registry,
                items=[(target.name, version.label, manifest)],
                workers=runtime.settings.playbooks.hash_workers,
            )
            if not check.ok:
                _mark_failed_suspect(runtime, incident_id, [check], target.name)
            verdict = check.as_dict()
        if not verdict["ok"]:
            rejected.append(
                {
                    "version": version.label,
                    "reason": "fails verification: " + "; ".join(verdict["problems"]),
                }
            )
            continue
        if target.validate_command:
            result = run_validation(
                command=target.validate_command,
                location=runtime.registry.version_location(asset=target.name, label=version.label),
                asset=target.name,
                label=version.label,
                timeout_s=runtime.settings.playbooks.validation_timeout_s,
                drill=runtime.drill,
            )
            if not result.ok:
                rejected.append({"version": version.label, "reason": f"validation {result.reason}"})
                continue
        with runtime.db.session() as session:
            incident = get_incident(session=session, incident_id=incident_id)
            if asset is None:
                update_state(session=session, incident=incident, selected=version.label)
            else:
                chosen = {**incident.state.get("selected_by_asset", {}), asset: version.label}
                update_state(session=session, incident=incident, selected_by_asset=chosen)
        found = {"selected": version.label, "rejected": rejected}
        return found if asset is None else {"asset": target.name, **found}
    reasons = "; ".join(f"{r['version']} {r['reason']}" for r in rejected) or (
        "the asset has no known-good version"
    )
    raise OperationFailed(f"no known-good version of {target.name} qualifies: {reasons}")


def _distrust(session: Session, version: AssetVersion, need_lineage: bool) -> str | None:
    """Why an approved version may not be restored whatever its bytes, or None."""
    denied = denied_in_version(session=session, version=version)
    if denied:
        return f"holds denylisted digest {denied[0].sha256}"
    if version.trained_on_id is None:
        return "records no training dataset (lineage required)" if need_lineage else None
    dataset = session.get(AssetVersion, version.trained_on_id)
    if dataset is not None and dataset.status in (VersionStatus.SUSPECT, *_UNTRUSTED):
        parent = session.get(Asset, dataset.asset_id)
        name = parent.name if parent else "?"
        return f"trained on {dataset.status} dataset {name}@{dataset.label}"
    return None


def rollback(
    *, runtime: Runtime, incident_id: int, label: str, asset: str | None = None
) -> dict[str, Any]:
    """Move the production alias of an asset (default: the incident's) to ``label``.

    A no-op when it is already there, so a rerun never moves it twice.
    """
    alias = runtime.settings.registry.alias
    with runtime.db.session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        target = _incident_asset(session, incident, asset)
        version = get_version(session=session, asset=target, label=label)
        if version.status != VersionStatus.KNOWN_GOOD:
            raise OperationFailed(f"{target.name}@{label} is {version.status}; not rolling back")
        before = move_alias(
            session=session,
            registry=runtime.registry,
            asset=target,
            version=version,
            alias=alias,
            actor=_actor(incident),
            incident_id=incident_id,
        )
    moved = {"alias": alias, "from": before, "to": label}
    return moved if asset is None else {"asset": target.name, **moved}


def validate(*, runtime: Runtime, incident_id: int, asset: str | None = None) -> dict[str, Any]:
    """Run an asset's (default: the incident's) validation command against what production serves.

    Raises:
        OperationFailed: the command failed or timed out; its evidence is in the message.
    """
    with runtime.db.read_session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        asset_row = _incident_asset(session, incident, asset)
        current = alias_version(
            session=session, asset=asset_row, alias=runtime.settings.registry.alias
        )
    if current is None:
        raise OperationFailed(f"{asset_row.name} has no production version to validate")
    if not asset_row.validate_command:
        return {"skipped": "the asset has no validation command", "version": current.label}
    result = run_validation(
        command=asset_row.validate_command,
        # The directory of the version the alias points at, with either backend (MLflow's
        # alias location is a models:/ URI, which a validation command cannot read).
        location=runtime.registry.version_location(asset=asset_row.name, label=current.label),
        asset=asset_row.name,
        label=current.label,
        timeout_s=runtime.settings.playbooks.validation_timeout_s,
        drill=runtime.drill,
    )
    if not result.ok:
        raise OperationFailed(
            f"validation of {asset_row.name}@{current.label} {result.reason}: "
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
