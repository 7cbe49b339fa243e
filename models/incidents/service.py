"""Incident services: open, get, list, and move an incident through its states."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from rearguard.models.assets.versions import alias_version, get_asset
from rearguard.models.audit.chain import append_event, events_for_incident, lock_chain
from rearguard.models.audit.redaction import redact_optional, redact_text
from rearguard.models.db.tables import Incident, utcnow
from rearguard.models.enums import AssetKind, EventKind, IncidentSource, IncidentStatus, Severity
from rearguard.models.errors import NotFoundError, UsageError
from rearguard.models.incidents.dedup import KeyHolder, bind_key, claim_key, type_asset_key
from rearguard.models.metrics.counters import count_opened, count_status
from rearguard.models.names import check_storable
from rearguard.models.schemas import IncidentDetail, IncidentNow

_MAX_SUMMARY = 10_000


def parse_since(value: str | None) -> datetime | None:
    """Parse an ISO 8601 timestamp; a naive one is taken as UTC.

    Raises:
        UsageError: the value is not ISO 8601, or is out of range once in UTC.
    """
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(
            f"invalid --since {value!r}", hint="use ISO 8601, e.g. 2026-11-25T03:00:00Z"
        ) from exc
    return as_utc(moment, what="--since")


def as_utc(moment: datetime, *, what: str) -> datetime:
    """A moment in UTC; a naive one is taken as UTC.

    Raises:
        UsageError: the moment is outside what a datetime holds once in UTC
            (``0001-01-01T00:00:00+23:59`` is before year 1).
    """
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise UsageError(
            f"{what} {moment.isoformat()} is out of range in UTC",
            hint="use a time between years 1 and 9999, e.g. 2026-11-25T03:00:00Z",
        ) from None


def open_incident(
    *,
    session: Session,
    type: str,
    actor: str,
    asset_name: str | None = None,
    severity: Severity = Severity.SEV2,
    since: datetime | None = None,
    summary: str = "",
    source: IncidentSource = IncidentSource.CLI,
    dedup_key: str | None = None,
    atlas_ids: list[str] | None = None,
    state: dict[str, Any] | None = None,
) -> Incident:
    """Record a new incident and its ``incident.opened`` event in the caller's transaction.

    Args:
        session: an open write session.
        type: the incident type (a playbook in the catalog).
        actor: who opened it.
        asset_name: the affected asset.
        severity: sev1 (worst) to sev4.
        since: the suspected start of the compromise.
        summary: free text from the reporter.
        source: what opened it.
        dedup_key: groups repeated alerts onto this incident.
        atlas_ids: MITRE ATLAS technique ids of the type.
        state: initial playbook state (e.g. the version in production at opening).

    Returns:
        The incident, flushed so it has an id.
    """
    if since is not None and since > datetime.now(UTC):
        raise UsageError(f"--since {since.isoformat()} is in the future")
    if len(summary) > _MAX_SUMMARY:
        raise UsageError(f"the summary is {len(summary)} characters; at most {_MAX_SUMMARY}")
    # A pasted token or password must not reach the timeline or anything built from it.
    summary = redact_text(check_storable(summary, what="summary") or "")
    dedup_key = redact_optional(check_storable(dedup_key, what="dedup key"))
    actor = redact_text(check_storable(actor, what="actor") or "")
    incident = Incident(
        type=type,
        severity=severity,
        asset_name=asset_name,
        since=since,
        summary=summary,
        source=source,
        dedup_key=dedup_key,
        atlas_ids=list(atlas_ids or []),
        opened_by=actor,
        state=dict(state or {}),
    )
    session.add(incident)
    session.flush()
    append_event(
        session,
        kind=EventKind.STATE,
        action="incident.opened",
        actor=actor,
        incident_id=incident.id,
        asset=asset_name,
        data={
            "type": type,
            "severity": str(severity),
            "since": since.isoformat() if since else None,
            "summary": summary,
            "source": str(source),
            "atlas_ids": incident.atlas_ids,
            **incident.state,
        },
    )
    count_opened(session, incident)
    return incident


@dataclass(frozen=True)
class Opening:
    """What :func:`open_asset_incident` did: opened ``incident``, or found ``holder`` active."""

    incident: Incident | None = None
    holder: KeyHolder | None = None


def open_asset_incident(
    *,
    session: Session,
    type: str,
    asset: str,
    asset_kinds: Sequence[AssetKind],
    atlas_ids: Sequence[str],
    alias: str,
    actor: str,
    severity: Severity = Severity.SEV2,
    since: datetime | None = None,
    summary: str = "",
    source: IncidentSource = IncidentSource.CLI,
    dedup_key: str | None = None,
    defer_to_holder: bool = False,
    window_s: float = 0.0,
) -> Opening:
    """Open an incident on an asset, the one path for the CLI and the HTTP intake.

    Checks the asset exists and is a kind the playbook handles, records the version production
    serves now, and claims the incident's dedup keys (its type + asset, and ``dedup_key``).

    Args:
        session: an open write session.
        type: the incident type.
        asset: the affected asset.
        asset_kinds: the asset kinds the type's playbook handles.
        atlas_ids: MITRE ATLAS technique ids of the type.
        alias: the production alias name.
        actor: who opens it.
        severity: sev1 (worst) to sev4.
        since: the suspected start of the compromise.
        summary: free text from the reporter.
        source: what opened it.
        dedup_key: the alert's own dedup key, if any.
        defer_to_holder: when a key is held by an active incident, open nothing and return
            that incident (the intake). Otherwise (a person at the CLI) open anyway, leaving
            the key with its holder. A caller that defers must roll back its savepoint when a
            holder is returned, since keys claimed before it stay claimed.
        window_s: how long after resolution an incident still holds its keys.

    Raises:
        NotFoundError: unknown asset.
        UsageError: the asset's kind is not one the playbook handles; bad since or summary.
    """
    # Redacted before it is claimed: the key table holds no more of a secret than the chain.
    dedup_key = redact_optional(dedup_key)
    target = get_asset(session=session, name=asset)
    if target.kind not in asset_kinds:
        kinds = ", ".join(str(k) for k in asset_kinds)
        raise UsageError(f"{type} handles {kinds} assets; {asset!r} is a {target.kind}")
    claimed, holder = claim_incident_keys(
        session=session,
        keys=[type_asset_key(type, asset), dedup_key],
        window_s=window_s,
        defer_to_holder=defer_to_holder,
    )
    if holder is not None:
        return Opening(holder=holder)
    current = alias_version(session=session, asset=target, alias=alias)
    incident = open_incident(
        session=session,
        type=type,
        actor=actor,
        asset_name=asset,
        severity=severity,
        since=since,
        summary=summary,
        source=source,
        dedup_key=dedup_key or type_asset_key(type, asset),
        atlas_ids=list(atlas_ids),
        state={"compromised": current.label if current else None},
    )
    bind_keys(session=session, keys=claimed, incident_id=int(incident.id or 0))
    return Opening(incident=incident)


def claim_incident_keys(
    *,
    session: Session,
    keys: Sequence[str | None],
    window_s: float,
    defer_to_holder: bool,
) -> tuple[list[str], KeyHolder | None]:
    """Claim an incident's dedup keys before it is opened, under the chain lock.

    Every path that opens an incident on an asset (the CLI, the intake) claims its keys here,
    so two of them at once, in one process or several, agree on one incident.

    Args:
        session: an open write session (the claims are part of its transaction).
        keys: the keys; None entries and repeats are skipped.
        window_s: how long after resolution an incident still holds its keys.
        defer_to_holder: stop at the first key an active incident holds and return it.

    Returns:
        The keys claimed (bind them with :func:`bind_keys` once the incident has an id), and
        the active incident holding a key when deferring to it, else None.
    """
    connection = session.connection()
    # Chain lock before the key rows: one lock order for every writer (see lock_chain).
    lock_chain(connection)
    claimed: list[str] = []
    for key in dict.fromkeys(k for k in keys if k):
        holder = claim_key(connection, key, window_s=window_s)
        if holder is None:
            claimed.append(key)
        elif defer_to_holder:
            return claimed, holder
    return claimed, None


def bind_keys(*, session: Session, keys: Sequence[str], incident_id: int) -> None:
    """Point the keys :func:`claim_incident_keys` claimed at the incident just opened."""
    connection = session.connection()
    for key in keys:
        bind_key(connection, key, incident_id)


def attach_report(
    *,
    session: Session,
    incident: Incident,
    actor: str,
    severity: Severity,
    summary: str,
    source: IncidentSource,
) -> None:
    """Record on an unresolved incident that someone reported it again (``incident.attached``).

    Nothing else changes: its playbook is not run a second time.
    """
    append_event(
        session,
        kind=EventKind.ALERT,
        action="incident.attached",
        actor=actor,
        incident_id=incident.id,
        asset=incident.asset_name,
        data={
            "severity": str(severity),
            "summary": redact_text(summary[:_MAX_SUMMARY]),
            "source": str(source),
            "status": str(incident.status),
        },
    )


def get_incident(*, session: Session, incident_id: int) -> Incident:
    """Return an incident by id.

    Raises:
        NotFoundError: there is no such incident.
    """
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise NotFoundError(f"unknown incident {incident_id}", hint="see `rearguard incident list`")
    return incident


def list_incidents(
    *,
    session: Session,
    status: IncidentStatus | None = None,
    limit: int = 100,
    include_drills: bool = False,
) -> list[Incident]:
    """Return incidents, newest first; recovery drills' only with ``include_drills``."""
    statement = select(Incident).order_by(col(Incident.id).desc()).limit(limit)
    if not include_drills:
        statement = statement.where(Incident.source != IncidentSource.DRILL)
    if status is not None:
        statement = statement.where(Incident.status == status)
    return list(session.exec(statement))


def set_incident_status(
    *,
    session: Session,
    incident: Incident,
    status: IncidentStatus,
    actor: str,
    reason: str | None = None,
) -> bool:
    """Move an incident to a status and record it; return False when nothing changed."""
    reason = redact_optional(check_storable(reason, what="reason"))
    if incident.status == status and incident.reason == reason:
        return False
    previous = incident.status
    incident.status = status
    incident.reason = reason
    incident.updated_at = utcnow()
    session.add(incident)
    append_event(
        session,
        kind=EventKind.STATE,
        action=f"incident.{status}",
        actor=actor,
        incident_id=incident.id,
        asset=incident.asset_name,
        data={"from": str(previous), "to": str(status), "reason": reason},
    )
    count_status(session, incident, previous=IncidentStatus(previous))
    return True


def update_state(*, session: Session, incident: Incident, **changes: Any) -> None:
    """Record what the playbook decided (e.g. the selected version) on the incident."""
    incident.state = {**incident.state, **changes}
    incident.updated_at = utcnow()
    session.add(incident)


def production_of(*, session: Session, incident: Incident, alias: str) -> str | None:
    """The label the production alias of an incident's asset points at now, if any."""
    if not incident.asset_name:
        return None
    try:
        asset = get_asset(session=session, name=incident.asset_name)
    except NotFoundError:  # an alert may name an asset nobody registered
        return None
    current = alias_version(session=session, asset=asset, alias=alias)
    return current.label if current else None


def incident_now(*, session: Session, incident: Incident, alias: str) -> IncidentNow:
    """The read form of an incident with where its asset's production points now."""
    return IncidentNow.of_now(
        incident, production=production_of(session=session, incident=incident, alias=alias)
    )


def incident_detail(*, session: Session, incident_id: int, alias: str) -> IncidentDetail:
    """The read form of an incident with where production points and its timeline.

    Raises:
        NotFoundError: there is no such incident.
    """
    incident = get_incident(session=session, incident_id=incident_id)
    return IncidentDetail.of_timeline(
        incident,
        events_for_incident(session=session, incident_id=incident_id),
        production=production_of(session=session, incident=incident, alias=alias),
    )
