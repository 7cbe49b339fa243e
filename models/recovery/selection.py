"""Known-good selection: re-verify an asset's versions and choose the one to restore.

The newest ``known_good`` version registered before the incident's ``since``, whose row the
audit chain bears out (its registration with this manifest, and a person's approval after it:
:mod:`rearguard.models.assets.evidence`), whose files re-hash to its manifest now and which
passes the asset's validation check; versions that fail re-verification become ``suspect``.
None qualifying is a failure, never a promotion of an unverified version."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial

from sqlmodel import Session, col, select

from rearguard.models.assets.checks import run_validation
from rearguard.models.assets.denylist import denied_in_version
from rearguard.models.assets.evidence import load_evidence
from rearguard.models.assets.scan_records import save_checks
from rearguard.models.assets.versions import (
    get_asset,
    get_version,
    manifest_of,
    set_status,
)
from rearguard.models.db.tables import Asset, AssetVersion, Incident
from rearguard.models.enums import VersionStatus
from rearguard.models.errors import OperationFailed
from rearguard.models.incidents.service import get_incident, update_state
from rearguard.models.integrity.scan.policy import policy_for
from rearguard.models.integrity.signatures import check_stored_signature
from rearguard.models.integrity.verification import VersionCheck, check_versions
from rearguard.models.recovery.results import (
    IntegrityReport,
    Rejection,
    Selection,
    VersionVerdict,
)
from rearguard.models.recovery.targets import UNTRUSTED, incident_asset, playbook_actor
from rearguard.models.registry.base import ManifestEntry
from rearguard.models.runtime import Runtime


def verify_integrity(
    *, runtime: Runtime, incident_id: int, asset: str | None = None
) -> IntegrityReport:
    """Re-verify every version of an asset (default: the incident's) not quarantined or retired.

    Versions that fail are marked suspect, with what failed.

    Returns:
        What each version's check found, by label, and the labels that failed.
    """
    with runtime.db.read_session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        target = incident_asset(session, incident, asset)
        versions = _versions(session, target, exclude=UNTRUSTED)
        items = [(target.name, v.label, manifest_of(session=session, version=v)) for v in versions]
    checks = check_and_record(runtime, incident, items, during="verification")
    mark_failed_suspect(runtime, incident_id, checks, target.name)
    return IntegrityReport(
        checks={c.label: VersionVerdict.of(c) for c in checks},
        failed=tuple(c.label for c in checks if not c.ok),
    )


def check_and_record(
    runtime: Runtime,
    incident: Incident,
    items: Sequence[tuple[str, str, Sequence[ManifestEntry]]],
    *,
    during: str,
) -> list[VersionCheck]:
    """Re-hash versions and scan their files now, under each asset's scan policy (the engine
    and rules of registration, approval and sweeps), and keep their scan records.

    Args:
        runtime: the process runtime.
        incident: the incident whose playbook checks them (its actor, in the timeline).
        items: (asset, label, manifest) of each version.
        during: the playbook step, as the scan records name it.

    Returns:
        The checks, in the order of ``items``.
    """
    policies = partial(policy_for, runtime.settings)
    checks = check_versions(
        registry=runtime.registry,
        items=items,
        workers=runtime.settings.playbooks.hash_workers,
        policies=policies,
    )
    save_checks(
        db=runtime.db,
        checks=checks,
        policies=policies,
        during=during,
        actor=playbook_actor(incident),
        incident_id=incident.id,
    )
    return checks


def mark_failed_suspect(
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
            if version.status in UNTRUSTED:
                continue
            set_status(
                session=session,
                registry=runtime.registry,
                asset=asset,
                version=version,
                status=VersionStatus.SUSPECT,
                actor=playbook_actor(incident),
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
    checks: dict[str, VersionVerdict] | None = None,
    honour_since: bool = True,
    clean_lineage: bool = False,
) -> Selection:
    """Choose the version to roll back to, by the rule in DESIGN.md.

    The newest ``known_good`` version, registered before the incident's ``since`` when given,
    whose status the audit chain bears out (a status column set by hand is not trusted),
    whose files re-hash to its manifest now (``checks`` from this run's verification count as
    now), that holds no denylisted file, that was not trained on a suspect or quarantined
    dataset version, whose signature holds (where it has one, or the asset requires one), and
    that passes the asset's validation command if one is set. A version that fails
    verification is marked suspect.

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
        target = incident_asset(session, incident, asset)
        since = incident.since if honour_since else None
        versions = _versions(session, target)
        evidence = load_evidence(session, asset=target.name)
        known_good = [
            (v, manifest_of(session=session, version=v), _distrust(session, v, need_lineage))
            for v in versions
            if v.status == VersionStatus.KNOWN_GOOD
        ]
        # Approved versions that verification has just made suspect: say so in the reason.
        rejected: list[Rejection] = [
            Rejection(version=v.label, reason=f"is suspect ({v.status_reason})")
            for v in versions
            if v.status == VersionStatus.SUSPECT and v.approved_by
        ]
    checks = checks or {}
    for version, manifest, distrust in known_good:
        if since is not None and version.registered_at >= since:
            rejected.append(
                Rejection(
                    version=version.label,
                    reason=f"registered {_moment(version.registered_at)}, at or after "
                    f"--since {_moment(since)}",
                )
            )
            continue
        doubt = evidence.doubt(asset=target.name, version=version, manifest=manifest)
        if doubt:
            reason = f"is not trusted: {doubt} (see `rearguard audit verify`)"
            rejected.append(Rejection(version=version.label, reason=reason))
            continue
        if distrust:
            rejected.append(Rejection(version=version.label, reason=distrust))
            continue
        verdict = checks.get(version.label)
        if verdict is None:
            (check,) = check_and_record(
                runtime,
                incident,
                [(target.name, version.label, manifest)],
                during="selection",
            )
            if not check.ok:
                mark_failed_suspect(runtime, incident_id, [check], target.name)
            verdict = VersionVerdict.of(check)
        if not verdict.ok:
            rejected.append(
                Rejection(
                    version=version.label,
                    reason="fails verification: " + "; ".join(verdict.problems),
                )
            )
            continue
        signature = check_stored_signature(
            settings=runtime.settings,
            registry=runtime.registry,
            asset=target.name,
            label=version.label,
            manifest=manifest,
        )
        if signature.blocks:
            rejected.append(Rejection(version=version.label, reason=signature.describe()))
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
                rejected.append(
                    Rejection(version=version.label, reason=f"validation {result.reason}")
                )
                continue
        with runtime.db.session() as session:
            incident = get_incident(session=session, incident_id=incident_id)
            if asset is None:
                update_state(session=session, incident=incident, selected=version.label)
            else:
                chosen = {**incident.state.get("selected_by_asset", {}), asset: version.label}
                update_state(session=session, incident=incident, selected_by_asset=chosen)
        return Selection(
            # Named only when the playbook named it (a multi-asset playbook).
            asset=target.name if asset is not None else None,
            selected=version.label,
            rejected=tuple(rejected),
        )
    reasons = "; ".join(f"{r.version} {r.reason}" for r in rejected) or (
        "the asset has no known-good version"
    )
    raise OperationFailed(f"no known-good version of {target.name} qualifies: {reasons}")


def _moment(moment: datetime) -> str:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _distrust(session: Session, version: AssetVersion, need_lineage: bool) -> str | None:
    """Why an approved version may not be restored whatever its bytes, or None."""
    denied = denied_in_version(session=session, version=version)
    if denied:
        return f"holds denylisted digest {denied[0].sha256}"
    if version.trained_on_id is None:
        return "records no training dataset (lineage required)" if need_lineage else None
    dataset = session.get(AssetVersion, version.trained_on_id)
    if dataset is not None and dataset.status in (VersionStatus.SUSPECT, *UNTRUSTED):
        parent = session.get(Asset, dataset.asset_id)
        name = parent.name if parent else "?"
        return f"trained on {dataset.status} dataset {name}@{dataset.label}"
    return None
