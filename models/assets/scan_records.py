"""Versions' scan records: kept per version, announced in the timeline when they change.

Each scan of a version's own bytes (registration, approval, promotion, ``assets verify``, a
sweep, ``assets rescan``, a playbook's verification, known-good selection and containment)
replaces the version's row in ``version_scan``. The timeline holds
the record of a registration in its ``asset.registered`` event, and every later record that
differs from the one before in a ``scan.recorded`` event: a nightly verify that finds what it
found yesterday adds nothing to the chain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from sqlmodel import Session, col, select

from rearguard.models.audit.chain import append_event
from rearguard.models.db.engine import Database
from rearguard.models.db.tables import Asset, AssetVersion, VersionScan, utcnow
from rearguard.models.enums import EventKind
from rearguard.models.integrity.scan.opinions import Verdict
from rearguard.models.integrity.scan.policy import ScanPolicy
from rearguard.models.integrity.scan.record import EngineVerdict, ScanRecord, ScanVerdict
from rearguard.models.integrity.verification import VersionCheck

__all__ = ["latest_scans", "record_of_row", "save_checks", "save_scan"]


def record_of_row(row: VersionScan) -> ScanRecord:
    """The scan record a ``version_scan`` row holds."""
    verdict: ScanVerdict = "blocked" if row.verdict == "blocked" else "clean"
    return ScanRecord(
        scanner_version=row.scanner_version,
        allow_fingerprint=row.allow_fingerprint,
        verdict=verdict,
        counts=dict(row.counts),
        allowed=row.allowed,
        engines=tuple(_engine(entry) for entry in row.engines),
    )


def _engine(entry: dict[str, object]) -> EngineVerdict:
    verdict: Verdict = str(entry.get("verdict"))  # type: ignore[assignment]  # written by as_dict
    found = entry.get("version")
    return EngineVerdict(str(entry.get("engine")), str(found) if found else None, verdict)


def latest_scans(*, session: Session, version_ids: Iterable[int]) -> dict[int, VersionScan]:
    """The scan record row of each version that has one, by version id (one query)."""
    wanted = set(version_ids)
    if not wanted:
        return {}
    rows = session.exec(select(VersionScan).where(col(VersionScan.version_id).in_(wanted)))
    return {row.version_id: row for row in rows}


def save_scan(
    session: Session,
    *,
    asset: str,
    version: AssetVersion,
    record: ScanRecord,
    during: str,
    actor: str,
    announce: bool = True,
    incident_id: int | None = None,
) -> bool:
    """Store a version's latest scan record; announce it in the timeline when it changed.

    Args:
        session: the caller's write transaction.
        asset: the asset's name.
        version: the version (a stored row).
        record: what the scan found, under which rules.
        during: what scanned it (``registration``, ``verify``, ``rescan``, ...).
        actor: who or what scanned it, for the timeline.
        announce: append ``scan.recorded`` when the record differs from the stored one
            (False when the caller's own event carries it, as registration's does).
        incident_id: the incident the event belongs to, if any.

    Returns:
        True when the record differs from the one stored before (or there was none).
    """
    assert version.id is not None  # a stored row, as documented
    row = session.get(VersionScan, version.id)
    before = record_of_row(row).as_dict() if row is not None else None
    fields = record.as_dict()
    changed = before != fields
    if row is None:
        row = VersionScan(
            version_id=version.id,
            scanner_version=record.scanner_version,
            allow_fingerprint=record.allow_fingerprint,
            verdict=record.verdict,
            scanned_during=during,
        )
    row.scanner_version = record.scanner_version
    row.allow_fingerprint = record.allow_fingerprint
    row.verdict = record.verdict
    row.counts = dict(record.counts)
    row.allowed = record.allowed
    row.engines = [engine.as_dict() for engine in record.engines]
    row.scanned_during = during
    row.scanned_at = utcnow()
    session.add(row)
    if changed and announce:
        append_event(
            session,
            kind=EventKind.STATE,
            action="scan.recorded",
            actor=actor,
            incident_id=incident_id,
            asset=asset,
            version=version.label,
            data={**fields, "during": during, "before": before},
        )
    return changed


def save_checks(
    *,
    db: Database,
    checks: Sequence[VersionCheck],
    policies: Callable[[str], ScanPolicy],
    during: str,
    actor: str,
    incident_id: int | None = None,
) -> None:
    """Store the scan record of every check that scanned its version's own bytes, in one
    transaction (``assets verify``, sweeps, playbook steps; a tampered version's scan is no
    record of it).

    Args:
        db: the database.
        checks: the checks, as :func:`~rearguard.models.integrity.verification.check_versions`
            returned them.
        policies: the scan policy of an asset, by name (the one the checks judged by).
        during: what scanned them.
        actor: who or what scanned them, for the timeline.
        incident_id: the incident whose playbook scanned them, if any.
    """
    records = [
        (check, record)
        for check in checks
        if (record := check.scan_record(policies(check.asset))) is not None
    ]
    if not records:
        return
    with db.session() as session:
        versions = _versions(session, {(check.asset, check.label) for check, _ in records})
        for check, record in records:
            version = versions.get((check.asset, check.label))
            if version is None:
                continue  # removed meanwhile (a drill's sandbox): nothing to record against
            save_scan(
                session,
                asset=check.asset,
                version=version,
                record=record,
                during=during,
                actor=actor,
                incident_id=incident_id,
            )


def _versions(
    session: Session, wanted: set[tuple[str, str]]
) -> dict[tuple[str, str], AssetVersion]:
    names = {name for name, _ in wanted}
    rows = session.exec(
        select(Asset.name, AssetVersion)
        .join(Asset, col(Asset.id) == AssetVersion.asset_id)
        .where(col(Asset.name).in_(names))
    )
    return {(name, v.label): v for name, v in rows if (name, v.label) in wanted}
