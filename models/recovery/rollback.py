"""Rollback: move the production alias to the selected version, validate it, and conclude the
incident."""

from __future__ import annotations

from dataclasses import dataclass

from rearguard.models.assets.checks import run_validation
from rearguard.models.assets.versions import (
    alias_version,
    get_version,
    move_alias,
    refuse_unrecorded,
)
from rearguard.models.enums import IncidentStatus, VersionStatus
from rearguard.models.errors import OperationFailed
from rearguard.models.incidents.service import get_incident, set_incident_status, update_state
from rearguard.models.metrics.counters import count_ended
from rearguard.models.recovery.results import Rollback, Skipped, Validated
from rearguard.models.recovery.targets import incident_asset, playbook_actor
from rearguard.models.runtime import Runtime


def rollback(
    *, runtime: Runtime, incident_id: int, label: str, asset: str | None = None
) -> Rollback:
    """Move the production alias of an asset (default: the incident's) to ``label``.

    A no-op when it is already there, so a rerun never moves it twice. Only to a known-good
    version whose row the audit chain bears out.
    """
    alias = runtime.settings.registry.alias
    with runtime.db.session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        target = incident_asset(session, incident, asset)
        version = get_version(session=session, asset=target, label=label)
        if version.status != VersionStatus.KNOWN_GOOD:
            raise OperationFailed(f"{target.name}@{label} is {version.status}; not rolling back")
        refuse_unrecorded(session=session, asset=target, version=version)
        before = move_alias(
            session=session,
            registry=runtime.registry,
            asset=target,
            version=version,
            alias=alias,
            actor=playbook_actor(incident),
            incident_id=incident_id,
        )
    return Rollback(
        # Named only when the playbook named it (a multi-asset playbook).
        asset=target.name if asset is not None else None,
        alias=alias,
        from_=before,
        to=label,
    )


def validate(
    *, runtime: Runtime, incident_id: int, asset: str | None = None
) -> Validated | Skipped:
    """Run an asset's (default: the incident's) validation command against what production serves.

    Raises:
        OperationFailed: the command failed or timed out; its evidence is in the message.
    """
    with runtime.db.read_session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        asset_row = incident_asset(session, incident, asset)
        current = alias_version(
            session=session, asset=asset_row, alias=runtime.settings.registry.alias
        )
    if current is None:
        raise OperationFailed(f"{asset_row.name} has no production version to validate")
    if not asset_row.validate_command:
        return Skipped(skipped="the asset has no validation command", version=current.label)
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
    return Validated.model_validate({"version": current.label, **result.as_dict()})


@dataclass(frozen=True)
class Concluded:
    """An incident's end state as recorded; ``changed`` is False on a converged rerun."""

    status: IncidentStatus
    reason: str | None
    changed: bool


def conclude(
    *, runtime: Runtime, incident_id: int, status: IncidentStatus, reason: str | None = None
) -> Concluded:
    """Record the incident's end state (recovered or failed) and the reason.

    Returns:
        ``changed`` is False when the incident already ended that way (a converged rerun),
        so nobody is notified twice of the same outcome.
    """
    with runtime.db.session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        changed = set_incident_status(
            session=session,
            incident=incident,
            status=status,
            actor=playbook_actor(incident),
            reason=reason,
        )
        # A playbook that ends contained (model_theft) has concluded there, unlike one that
        # stopped mid-run after containing: a person may resolve it (see resolution.py).
        newly_concluded = status == IncidentStatus.CONTAINED and "concluded" not in incident.state
        if newly_concluded:
            update_state(session=session, incident=incident, concluded=str(status))
        if changed or newly_concluded:
            count_ended(session, incident, status)
    return Concluded(status=status, reason=reason, changed=changed)
