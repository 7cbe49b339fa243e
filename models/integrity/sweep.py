"""The integrity sweep: verify every version of every asset; one incident per failing asset.

The detection half of Code of Practice 12.x. ``rearguard assets sweep`` calls it and a
scheduler can call it as it is: plain Python, no Prefect. Running the playbooks of the
incidents it opened is the caller's part (that needs Prefect, in ``flows/``).

What a failure opens:

- tampered bytes (a file that no longer matches its manifest, or one missing or added):
  ``model_compromise``, ``prompt_tampering`` or ``config_tampering`` by the asset's kind;
- a dangerous pickle opcode in a file that still matches its manifest (so it was registered
  that way): ``supply_chain``, with the offending file's digest in the incident's state;
- a dataset's tampered files: reported, no incident (``data_poisoning`` needs a ``--since``).

Only versions that could still be served or promoted (``candidate``, ``known_good``) count;
failures of versions already distrusted (suspect, quarantined, retired) are listed as known.
At most one incident per asset is active: a later sweep adds a ``sweep.found`` event to it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy import text
from sqlmodel import Session, col, select

from rearguard.models.assets.scan_records import save_checks
from rearguard.models.assets.versions import (
    alias_version,
    get_asset,
    list_assets,
    list_versions,
    manifest_of,
)
from rearguard.models.db.tables import Incident
from rearguard.models.enums import (
    AssetKind,
    EventKind,
    IncidentSource,
    IncidentStatus,
    Severity,
    VersionStatus,
)
from rearguard.models.incidents.types import INCIDENT_TYPES, sweep_type
from rearguard.models.integrity.scan.policy import policy_for
from rearguard.models.integrity.verification import VersionCheck, check_versions
from rearguard.models.registry.base import ManifestEntry, Progress
from rearguard.models.runtime import Runtime

DEDUP_PREFIX = "sweep:"
_SERVABLE = (VersionStatus.CANDIDATE, VersionStatus.KNOWN_GOOD)
_ACTIVE = (IncidentStatus.OPEN, IncidentStatus.CONTAINED, IncidentStatus.FAILED)
_MAX_SUMMARY = 2000


@dataclass(frozen=True)
class SweepPlan:
    """Every version to verify, with what the sweep needs to judge a failure."""

    items: list[tuple[str, str, list[ManifestEntry]]]
    kinds: dict[str, AssetKind]
    statuses: dict[tuple[str, str], VersionStatus]
    production: dict[str, str | None]

    @property
    def total_bytes(self) -> int:
        """Bytes to hash (for a progress bar)."""
        return sum(e.size for _, _, manifest in self.items for e in manifest)


def plan_sweep(*, runtime: Runtime, asset_name: str | None = None) -> SweepPlan:
    """List every version of every asset, its manifest and status, and each production alias.

    Args:
        runtime: the process runtime.
        asset_name: only this asset (``assets verify NAME``).

    Raises:
        NotFoundError: ``asset_name`` names no asset.
    """
    alias = runtime.settings.registry.alias
    items: list[tuple[str, str, list[ManifestEntry]]] = []
    kinds: dict[str, AssetKind] = {}
    statuses: dict[tuple[str, str], VersionStatus] = {}
    production: dict[str, str | None] = {}
    with runtime.db.read_session() as session:
        assets = (
            [get_asset(session=session, name=asset_name)]
            if asset_name
            else list_assets(session=session)
        )
        for asset in assets:
            kinds[asset.name] = AssetKind(asset.kind)
            current = alias_version(session=session, asset=asset, alias=alias)
            production[asset.name] = current.label if current else None
            for version in list_versions(session=session, asset=asset):
                manifest = manifest_of(session=session, version=version)
                items.append((asset.name, version.label, manifest))
                statuses[(asset.name, version.label)] = VersionStatus(version.status)
    return SweepPlan(items, kinds, statuses, production)


@dataclass
class SweepFinding:
    """One asset with at least one servable version that failed verification."""

    asset: str
    kind: str
    production: str | None
    versions: list[dict[str, Any]]
    incident_type: str | None
    production_affected: bool
    tampered: bool = False
    action: str = "reported"
    incident_id: int | None = None
    note: str | None = None
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def runnable(self) -> bool:
        """Whether running the incident's playbook now is the right response.

        A tamper playbook rolls production back, which is right only when production is among
        the failing versions; the playbook of a dangerous file handles every version it finds
        (see :class:`rearguard.models.incidents.types.SweepRule`).
        """
        if self.incident_id is None or self.action != "opened":
            return False
        return self.calls_for_playbook

    @property
    def calls_for_playbook(self) -> bool:
        """Whether the finding is one a playbook responds to: production fails (tampered
        bytes), or any version holds a dangerous file (whose playbook handles every version)."""
        return self.incident_type is not None and (not self.tampered or self.production_affected)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly form."""
        return {
            "asset": self.asset,
            "kind": self.kind,
            "production": self.production,
            "production_affected": self.production_affected,
            "incident_type": self.incident_type,
            "action": self.action,
            "incident": self.incident_id,
            "note": self.note,
            "versions": self.versions,
        }


@dataclass
class SweepReport:
    """What a sweep verified and found."""

    checks: list[VersionCheck]
    findings: list[SweepFinding]
    known: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        """True when no servable version failed verification."""
        return not self.findings

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly form."""
        return {
            "ok": self.ok,
            "versions_checked": len(self.checks),
            "versions_failed": sum(len(f.versions) for f in self.findings),
            "findings": [f.as_dict() for f in self.findings],
            "known": self.known,
        }


def run_sweep(
    *,
    runtime: Runtime,
    plan: SweepPlan,
    open_incidents: bool,
    actor: str,
    progress: Progress | None = None,
) -> SweepReport:
    """Verify every planned version; with ``open_incidents``, open or update one per asset.

    Every version whose own bytes were scanned gets its scan record (see
    :mod:`rearguard.models.assets.scan_records`).

    Args:
        runtime: the process runtime.
        plan: from :func:`plan_sweep`.
        open_incidents: open an incident per failing asset (or add to its active one).
        actor: who runs the sweep (recorded on incidents and events).
        progress: called with bytes hashed.

    Returns:
        The report; its findings say what was opened or attached.
    """
    policies = partial(policy_for, runtime.settings)
    checks = check_versions(
        registry=runtime.registry,
        items=plan.items,
        workers=runtime.settings.playbooks.hash_workers,
        progress=progress,
        policies=policies,
    )
    save_checks(db=runtime.db, checks=checks, policies=policies, during="sweep", actor=actor)
    return judge_checks(
        runtime=runtime, plan=plan, checks=checks, open_incidents=open_incidents, actor=actor
    )


def judge_checks(
    *,
    runtime: Runtime,
    plan: SweepPlan,
    checks: list[VersionCheck],
    open_incidents: bool,
    actor: str,
    found_by: str = "integrity sweep",
) -> SweepReport:
    """What failing checks call for: one finding per asset, and with ``open_incidents`` its
    incident opened (or the finding added to the asset's active one).

    Args:
        runtime: the process runtime.
        plan: the plan the checks were made from (kinds, statuses, production, manifests).
        checks: checks of versions in the plan.
        open_incidents: open an incident per failing asset (or add to its active one).
        actor: who found them (recorded on incidents and events).
        found_by: what found them, at the start of an incident's summary.

    Returns:
        The report; its findings say what was opened or attached.
    """
    manifests = {(a, lb): {e.path: e.sha256 for e in m} for a, lb, m in plan.items}
    failing: dict[str, list[VersionCheck]] = {}
    known: list[dict[str, Any]] = []
    for check in checks:
        if check.ok:
            continue
        status = plan.statuses[(check.asset, check.label)]
        if status in _SERVABLE:
            failing.setdefault(check.asset, []).append(check)
        else:
            known.append({**check.as_dict(), "status": str(status)})
    findings = [
        _finding(plan, asset, asset_checks, manifests) for asset, asset_checks in failing.items()
    ]
    if open_incidents:
        for finding in findings:
            _open_or_attach(runtime, finding, actor=actor, found_by=found_by)
    return SweepReport(checks, findings, known)


def _finding(
    plan: SweepPlan,
    asset: str,
    checks: list[VersionCheck],
    manifests: dict[tuple[str, str], dict[str, str]],
) -> SweepFinding:
    kind = plan.kinds[asset]
    production = plan.production[asset]
    affected = production in {c.label for c in checks}
    versions = [
        {
            **c.as_dict(),
            "status": str(plan.statuses[(asset, c.label)]),
            "tampered": c.tampered,
            "dangerous_pickle": c.scan_blocked,
            "dangerous_files": [
                {"path": p, "sha256": manifests[(asset, c.label)].get(p)} for p in c.flagged_files
            ],
        }
        for c in checks
    ]
    finding = SweepFinding(
        asset=asset,
        kind=str(kind),
        production=production,
        versions=versions,
        incident_type=None,
        production_affected=affected,
    )
    # Altered bytes say the store was tampered with, whatever they now hold; a dangerous
    # pickle whose bytes match the manifest was registered that way: a supply-chain artifact.
    finding.tampered = any(c.tampered for c in checks)
    opens = sweep_type(kind=kind, tampered=finding.tampered)
    finding.incident_type = opens.type if opens else None
    if finding.tampered:
        finding.state = {"compromised": production if affected else None}
        if finding.incident_type is None:
            finding.note = (
                "no playbook restores a dataset's files: see which models were trained on it, "
                "and open data_poisoning with --dataset and --since"
            )
    else:
        # Production's own file first: it is the one being served.
        ordered = sorted(checks, key=lambda c: c.label != production)
        files = [(p, manifests[(asset, c.label)].get(p)) for c in ordered for p in c.flagged_files]
        path, digest = files[0] if files else (None, None)
        finding.state = {
            "digest": digest,
            "file": path,
            "compromised": production if affected else None,
        }
    if finding.tampered and finding.incident_type is not None and not affected:
        finding.note = (
            f"production ({production or 'none'}) verifies; the failing versions are not "
            "served: no rollback is needed, review them"
        )
    return finding


def _summary(finding: SweepFinding, found_by: str) -> str:
    parts = [f"{v['version']}: {'; '.join(v['problems'])}" for v in finding.versions]
    text = f"{found_by}: {finding.asset} " + " | ".join(parts)
    return text if len(text) <= _MAX_SUMMARY else text[: _MAX_SUMMARY - 1] + "…"


def _open_or_attach(runtime: Runtime, finding: SweepFinding, *, actor: str, found_by: str) -> None:
    # Imported here: `assets verify` plans and checks through this module and opens nothing.
    from rearguard.models.audit.chain import append_event
    from rearguard.models.audit.redaction import redact_value
    from rearguard.models.incidents.dedup import type_asset_key
    from rearguard.models.incidents.service import (
        bind_keys,
        claim_incident_keys,
        get_incident,
        open_incident,
    )

    if finding.incident_type is None:
        finding.action = "not_opened"
        return
    spec = INCIDENT_TYPES[finding.incident_type]
    key = f"{DEDUP_PREFIX}{finding.asset}"
    with runtime.db.session() as session:
        _lock(session, key)
        existing = session.exec(
            select(Incident)
            .where(Incident.dedup_key == key, col(Incident.status).in_(_ACTIVE))
            .order_by(col(Incident.id).desc())
        ).first()
        holder_id: int | None = None
        claimed: list[str] = []
        if existing is None:
            # The same type + asset claim as `incident open` and the intake: an unresolved
            # incident of this type on the asset, opened by any of them, takes the finding.
            claimed, holder = claim_incident_keys(
                session=session,
                keys=[type_asset_key(finding.incident_type, finding.asset)],
                window_s=0.0,
                defer_to_holder=True,
            )
            holder_id = holder.incident_id if holder else None
        if existing is None and holder_id is None:
            incident = open_incident(
                session=session,
                type=finding.incident_type,
                actor=actor,
                asset_name=finding.asset,
                severity=Severity.SEV1 if finding.production_affected else Severity.SEV2,
                summary=_summary(finding, found_by),
                source=IncidentSource.SWEEP,
                dedup_key=key,
                atlas_ids=list(spec.atlas_ids),
                state=finding.state,
            )
            bind_keys(session=session, keys=claimed, incident_id=int(incident.id or 0))
            finding.action = "opened"
        else:
            incident = existing or get_incident(session=session, incident_id=int(holder_id or 0))
            finding.action = "attached"
        finding.incident_id = incident.id
        append_event(
            session,
            kind=EventKind.STATE,
            action="sweep.found",
            actor=actor,
            incident_id=incident.id,
            asset=finding.asset,
            data=redact_value(
                {
                    "incident_type": finding.incident_type,
                    "production": finding.production,
                    "versions": [
                        {k: v[k] for k in ("version", "status", "problems", "dangerous_files")}
                        for v in finding.versions
                    ],
                }
            ),
        )


def _lock(session: Session, key: str) -> None:
    """Serialise sweeps on one asset's dedup key until the transaction ends.

    SQLite's write transactions are already serial (BEGIN IMMEDIATE); on PostgreSQL two
    sweeps could both find no active incident and both open one without this lock.
    """
    if session.connection().dialect.name == "postgresql":
        number = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": number})
