"""Re-scanning versions whose scan record predates the current rules.

Scanner bypasses are found every month. ``rearguard assets rescan`` scans again the versions
that can be served or approved (``known_good``, ``candidate``) whose scan record is out of
date: none, an older :data:`~rearguard.models.integrity.scan.record.SCANNER_VERSION`, another
allow-list fingerprint, other second-opinion engines or engine versions. A record whose
verdict already blocks (written by ``assets verify`` or a sweep, which change no status) is
out of date too: nothing has acted on it yet. Versions whose record is current are not read at
all: no hashing, no scanning.

A version scanned again is re-hashed as well as scanned (a scan of bytes that are not the
version's would be no record of it). What fails:

- a ``known_good`` version becomes ``suspect`` (its ``version.suspect`` event holds the reason
  and findings), and an incident opens exactly as a sweep's would
  (:func:`~rearguard.models.integrity.sweep.judge_checks`: ``supply_chain`` for what it was
  registered with, the kind's tamper playbook for altered bytes; one per asset, attached to the
  asset's active one);
- a ``candidate`` becomes ``suspect`` too, so that approval refuses it, and opens no incident.

The incidents are opened before the statuses change: a rescan killed in between runs again
(the version is still known-good), attaches to the incident, and then marks it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial

from sqlmodel import Session, col, select

from rearguard.models.assets.scan_records import record_of_row, save_scan
from rearguard.models.assets.versions import (
    alias_version,
    get_asset,
    get_version,
    manifest_of,
    scan_reason,
    set_status,
)
from rearguard.models.db.tables import Asset, AssetVersion, VersionScan
from rearguard.models.enums import AssetKind, VersionStatus
from rearguard.models.integrity.scan.opinions import engine_versions
from rearguard.models.integrity.scan.policy import policy_for
from rearguard.models.integrity.scan.record import SCANNER_VERSION, ScanRecord, allow_fingerprint
from rearguard.models.integrity.sweep import SweepPlan, judge_checks
from rearguard.models.integrity.verification import VersionCheck, check_versions, finding_dict
from rearguard.models.registry.base import ManifestEntry, Progress
from rearguard.models.runtime import Runtime
from rearguard.models.schemas import RescannedVersionRead, RescanRead

__all__ = ["RescanPlan", "plan_rescan", "run_rescan"]

_RESCANNED = (VersionStatus.CANDIDATE, VersionStatus.KNOWN_GOOD)


@dataclass(frozen=True)
class RescanPlan:
    """The versions to scan again, why, and what their records said.

    Attributes:
        versions: the versions to scan again, as a sweep plan (kinds, statuses, production).
        why: why each one is scanned again, by (asset, label).
        verdicts: each one's recorded verdict (``none`` without a record).
        current: how many versions have a current record (not scanned again).
        engines: the configured engines and their installed versions.
        fingerprints: each asset's allow-list fingerprint now.
    """

    versions: SweepPlan
    why: dict[tuple[str, str], str]
    verdicts: dict[tuple[str, str], str]
    current: int
    engines: dict[str, str | None]
    fingerprints: dict[str, str] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        """Bytes to re-hash and scan (for a progress bar)."""
        return self.versions.total_bytes


def plan_rescan(
    *, runtime: Runtime, asset_name: str | None = None, force: bool = False
) -> RescanPlan:
    """Find the known-good and candidate versions whose scan record is out of date.

    Reads the database only: a version with a current record costs no file read.

    Args:
        runtime: the process runtime.
        asset_name: only this asset.
        force: every known-good and candidate version, current or not.

    Raises:
        NotFoundError: ``asset_name`` names no asset.
    """
    settings = runtime.settings
    engines = engine_versions(settings.scanning.engines)
    alias = settings.registry.alias
    items: list[tuple[str, str, list[ManifestEntry]]] = []
    kinds: dict[str, AssetKind] = {}
    statuses: dict[tuple[str, str], VersionStatus] = {}
    production: dict[str, str | None] = {}
    why: dict[tuple[str, str], str] = {}
    verdicts: dict[tuple[str, str], str] = {}
    fingerprints: dict[str, str] = {}
    current = 0
    with runtime.db.read_session() as session:
        statement = (
            select(Asset, AssetVersion, VersionScan)
            .join(Asset, col(Asset.id) == AssetVersion.asset_id)
            .outerjoin(VersionScan, col(VersionScan.version_id) == AssetVersion.id)
            .where(col(AssetVersion.status).in_(_RESCANNED))
            .order_by(
                col(Asset.name), col(AssetVersion.registered_at).desc(), col(AssetVersion.id).desc()
            )
        )
        if asset_name:
            statement = statement.where(
                AssetVersion.asset_id == get_asset(session=session, name=asset_name).id
            )
        for asset, version, found in session.exec(statement):
            row: VersionScan | None = found  # None: no record (the outer join's empty side)
            if asset.name not in fingerprints:
                fingerprints[asset.name] = allow_fingerprint(policy_for(settings, asset.name))
            record = record_of_row(row) if row is not None else None
            reason = _why(record, fingerprint=fingerprints[asset.name], engines=engines)
            reason = "forced" if force and reason is None else reason
            if reason is None:
                current += 1
                continue
            key = (asset.name, version.label)
            items.append((asset.name, version.label, manifest_of(session=session, version=version)))
            statuses[key] = VersionStatus(version.status)
            why[key] = reason
            verdicts[key] = record.verdict if record is not None else "none"
            kinds[asset.name] = AssetKind(asset.kind)
            if asset.name not in production:
                served = alias_version(session=session, asset=asset, alias=alias)
                production[asset.name] = served.label if served else None
    return RescanPlan(
        versions=SweepPlan(items, kinds, statuses, production),
        why=why,
        verdicts=verdicts,
        current=current,
        engines=engines,
        fingerprints=fingerprints,
    )


def _why(
    record: ScanRecord | None, *, fingerprint: str, engines: Mapping[str, str | None]
) -> str | None:
    """Why a version must be scanned again; None when its record is current."""
    if record is None:
        return "no scan record"
    outdated = record.outdated(fingerprint=fingerprint, engines=engines)
    if outdated is None and record.verdict == "blocked":
        return "its recorded verdict blocks trust"  # written by verify or a sweep: not acted on
    return outdated


def run_rescan(
    *, runtime: Runtime, plan: RescanPlan, actor: str, progress: Progress | None = None
) -> RescanRead:
    """Scan the planned versions again; mark what now fails, open incidents for known-good ones.

    Args:
        runtime: the process runtime.
        plan: from :func:`plan_rescan`.
        actor: who runs the rescan (recorded on events and incidents).
        progress: called with bytes hashed.

    Returns:
        What was scanned again and found, version by version.
    """
    policies = partial(policy_for, runtime.settings)
    checks = check_versions(
        registry=runtime.registry,
        items=plan.versions.items,
        workers=runtime.settings.playbooks.hash_workers,
        progress=progress,
        policies=policies,
    )
    statuses = plan.versions.statuses
    fallen = [
        c for c in checks if not c.ok and statuses[(c.asset, c.label)] == VersionStatus.KNOWN_GOOD
    ]
    fallen_keys = {(c.asset, c.label) for c in fallen}
    incidents: dict[str, int] = {}
    if fallen:
        report = judge_checks(
            runtime=runtime,
            plan=plan.versions,
            checks=fallen,
            open_incidents=True,
            actor=actor,
            found_by="rescan",
        )
        incidents = {f.asset: f.incident_id for f in report.findings if f.incident_id is not None}
    results: list[RescannedVersionRead] = []
    with runtime.db.session() as session:
        for check in checks:
            results.append(
                _settle(
                    session,
                    runtime,
                    plan,
                    check,
                    actor=actor,
                    incident_id=incidents.get(check.asset)
                    if (check.asset, check.label) in fallen_keys
                    else None,
                )
            )
    return RescanRead(
        ok=all(not r.blocks for r in results),
        scanner_version=SCANNER_VERSION,
        engines=plan.engines,
        rescanned=results,
        current=plan.current,
        incidents=sorted(set(incidents.values())),
    )


def _settle(
    session: Session,
    runtime: Runtime,
    plan: RescanPlan,
    check: VersionCheck,
    *,
    actor: str,
    incident_id: int | None,
) -> RescannedVersionRead:
    """Record one version's new scan and, when it fails, make it suspect."""
    key = (check.asset, check.label)
    asset = get_asset(session=session, name=check.asset)
    version = get_version(session=session, asset=asset, label=check.label)
    before = VersionStatus(version.status)
    record = check.scan_record(
        policy_for(runtime.settings, check.asset), fingerprint=plan.fingerprints.get(check.asset)
    )
    if record is not None:
        save_scan(
            session,
            asset=asset.name,
            version=version,
            record=record,
            during="rescan",
            actor=actor,
            incident_id=incident_id,
        )
    # A status that changed since the plan (a playbook quarantined it) is left alone.
    if not check.ok and before == plan.versions.statuses[key]:
        set_status(
            session=session,
            registry=runtime.registry,
            asset=asset,
            version=version,
            status=VersionStatus.SUSPECT,
            actor=actor,
            reason=scan_reason(check, prefix="rescan"),
            incident_id=incident_id,
            details={
                "why_rescanned": plan.why[key],
                "problems": list(check.problems),
                "findings": [finding_dict(f) for f in check.findings],
            },
        )
    return RescannedVersionRead(
        asset=check.asset,
        version=check.label,
        why=plan.why[key],
        status_before=str(before),
        status_after=str(version.status),
        verdict_before=plan.verdicts[key],
        verdict_after=record.verdict
        if record is not None
        else ("tampered" if check.tampered else "unreadable"),
        blocks=not check.ok,
        problems=list(check.problems),
        counts=dict(record.counts) if record is not None else {},
        incident=incident_id,
    )
