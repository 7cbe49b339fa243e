"""Confirming a degradation: does the production version fail its asset's validation check?

The degradation playbook (MITRE ATLAS AML.T0031, AML.T0015) rolls back only a version that
fails the check; a production version that passes is said to pass, and nothing is moved.
"""

from __future__ import annotations

from rearguard.models.assets.checks import run_validation
from rearguard.models.assets.versions import alias_version, get_version, set_status
from rearguard.models.audit.redaction import redact_value
from rearguard.models.enums import VersionStatus
from rearguard.models.errors import OperationFailed
from rearguard.models.incidents.service import get_incident, update_state
from rearguard.models.recovery.results import Degraded, Skipped
from rearguard.models.recovery.targets import incident_asset
from rearguard.models.runtime import Runtime


def confirm_degradation(*, runtime: Runtime, incident_id: int) -> Degraded | Skipped:
    """Run the asset's validation command against production; a failure marks it suspect.

    On a rerun after the degraded version was found (and perhaps rolled back), the first
    finding stands: the step does not re-judge whatever production serves now.

    Returns:
        The degraded version and its validation run; skipped when an earlier run found it.

    Raises:
        OperationFailed: the asset has no validation command or no production version, or
            production passes its check (the degradation is not confirmed: nothing rolls back).
    """
    alias = runtime.settings.registry.alias
    with runtime.db.read_session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        asset = incident_asset(session, incident)
        found = incident.state.get("degraded")
        current = alias_version(session=session, asset=asset, alias=alias)
    if found:
        return Skipped(skipped=f"{found} was found degraded by an earlier run", version=found)
    if not asset.validate_command:
        raise OperationFailed(
            f"{asset.name} has no validation command, so a degradation cannot be confirmed",
            hint="register a version with --validate COMMAND; the check decides what is degraded",
        )
    if current is None:
        raise OperationFailed(f"{asset.name} has no {alias} version to check")
    result = run_validation(
        command=asset.validate_command,
        # The files of the version the alias points at: a directory with either backend
        # (MLflow's alias location is a models:/ URI, which a validation command cannot read).
        location=runtime.registry.version_location(asset=asset.name, label=current.label),
        asset=asset.name,
        label=current.label,
        timeout_s=runtime.settings.playbooks.validation_timeout_s,
        drill=runtime.drill,
    )
    if result.ok:
        raise OperationFailed(
            f"{alias} {asset.name}@{current.label} passes its validation check: degradation "
            "not confirmed, nothing rolled back",
            hint="extend the validation command to catch what was seen, then rerun the playbook",
        )
    with runtime.db.session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        asset = incident_asset(session, incident)
        version = get_version(session=session, asset=asset, label=current.label)
        if version.status not in (VersionStatus.QUARANTINED, VersionStatus.RETIRED):
            set_status(
                session=session,
                registry=runtime.registry,
                asset=asset,
                version=version,
                status=VersionStatus.SUSPECT,
                actor=f"playbook:{incident.type}",
                reason=f"fails its validation check in {alias}: {result.reason}",
                incident_id=incident_id,
            )
        update_state(session=session, incident=incident, degraded=current.label)
    return Degraded.model_validate({"version": current.label, **redact_value(result.as_dict())})
