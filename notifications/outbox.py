"""The durable outbox: notifications written in the transaction of the event that causes them.

:func:`enqueue` appends the ``notify.<event>`` timeline event and one outbox row per channel
and destination, in the caller's transaction: the notification exists exactly when its event
does. The dispatcher (``dispatcher.py``) delivers the rows later, so a channel outage never
holds up the step that wrote them. :func:`list_notifications` and :func:`retry` serve the CLI.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlmodel import Session, col
from sqlmodel import select as select_rows

from rearguard.models.audit.chain import append_event, canonical_json
from rearguard.models.audit.redaction import redact_value
from rearguard.models.config.settings import Settings
from rearguard.models.config.slack_commands import RESPONSE_CHANNEL
from rearguard.models.db.tables import (
    Incident,
    NotificationOutbox,
    NotificationThread,
    TimelineEvent,
    table_of,
)
from rearguard.models.enums import EventKind
from rearguard.models.errors import ConflictError, NotFoundError
from rearguard.models.metrics.counters import declare_channels
from rearguard.notifications.routing import PAGE_ONLY_EVENTS, Route, Target, route_for

OUTBOX = table_of(NotificationOutbox)
THREADS = table_of(NotificationThread)
_EVENTS = table_of(TimelineEvent)

PENDING = "pending"
SENDING = "sending"
DELIVERED = "delivered"
FAILED = "failed"
STATUSES = (PENDING, SENDING, DELIVERED, FAILED)


@dataclass(frozen=True)
class Enqueued:
    """What :func:`enqueue` wrote."""

    rows: int
    targets: dict[str, str]
    event_seq: int | None
    duplicate: bool


def incident_context(incident: Incident) -> dict[str, Any]:
    """The incident's facts as templates see them (``incident.*``)."""
    return {
        "id": incident.id,
        "type": incident.type,
        "severity": str(incident.severity),
        "status": str(incident.status),
        "asset": incident.asset_name,
        "summary": incident.summary,
        "reason": incident.reason,
        "source": str(incident.source),
        "opened_by": incident.opened_by,
        "opened_at": incident.opened_at.isoformat(timespec="seconds"),
        "since": incident.since.isoformat(timespec="seconds") if incident.since else None,
        "atlas_ids": list(incident.atlas_ids or []),
        "state": dict(incident.state or {}),
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat(timespec="seconds") if moment else None


def build_context(
    *,
    event: str,
    incident: Incident,
    alias: str,
    production: str | None,
    mentions: list[str],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything a template may use, with secret-looking text redacted.

    Free text (the summary, the failure reason) is typed or pasted by people; it passes through
    ``rearguard.models.audit.redaction`` so a pasted token never reaches a channel or the outbox.
    """
    context = {
        "event": event,
        "incident": incident_context(incident),
        "alias": alias,
        "production": production,
        "drill": str(incident.source) == "drill",
        "mentions": mentions,
        "command": f"rearguard incident show {incident.id}",
        "extra": dict(extra or {}),
    }
    redacted: dict[str, Any] = redact_value(context)
    return redacted


def _state_seq(connection: Connection, incident_id: int) -> int | None:
    statement = select(func.max(_EVENTS.c.seq)).where(
        _EVENTS.c.incident_id == incident_id, _EVENTS.c.kind == str(EventKind.STATE)
    )
    return connection.execute(statement).scalar()


def _dedup_key(*parts: Any) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


def target_label(channel: str, destination: str) -> str:
    """How a target is named in receipts: ``console``, ``file``, ``slack:#incidents``,
    ``pagerduty:key-...``..."""
    if channel in ("console", "file", "webhook", RESPONSE_CHANNEL):
        return channel
    return f"{channel}:{destination}"


def enqueue(
    target: Session | Connection,
    *,
    settings: Settings,
    incident: Incident,
    event: str,
    actor: str,
    production: str | None = None,
    extra: Mapping[str, Any] | None = None,
    roles: Sequence[str] = (),
    also: Sequence[Target] = (),
    targets: Sequence[Target] | None = None,
) -> Enqueued:
    """Record a notification and its outbox rows in the caller's transaction.

    Idempotent: the same event for the same incident state (the incident's latest state
    event, and the same ``extra``) is recorded once, so a step rerun after a crash does not
    notify twice.

    Args:
        target: an open write session, or a connection in a write transaction.
        settings: the resolved settings (routing, channels).
        incident: the incident the notification is about.
        event: opened, contained, recovered, failed, approval_needed, approval_code,
            drill_result, or the page-only acknowledged and resolved (recorded only when
            PagerDuty takes them).
        actor: who records it (``playbook:<type>``, a person).
        production: the label production serves now, for the templates.
        extra: further facts for the event's template (e.g. who can approve); no secrets.
        roles: stakeholder roles to reach besides the routed ones.
        also: destinations told besides the routed ones (the response_url of the Slack
            command that asked for a drill).
        targets: these targets alone instead of the routed ones (a one-time approval code
            goes to its approver only).

    Returns:
        How many rows were written, per target what was done, the event's sequence number.
    """
    connection = target.connection() if isinstance(target, Session) else target
    assert incident.id is not None
    route = (
        Route(targets=list(targets))
        if targets is not None
        else route_for(
            settings,
            incident_id=incident.id,
            incident_type=incident.type,
            severity=str(incident.severity),
            asset=incident.asset_name,
            drill=str(incident.source) == "drill",
            roles=roles,
            event=event,
        )
    )
    destinations = [*route.targets, *also]
    if not destinations and event in PAGE_ONLY_EVENTS:
        # Nobody to page (no PagerDuty configured): no notification, so nothing to record.
        return Enqueued(0, {}, None, False)
    state_seq = _state_seq(connection, incident.id)
    extra_key = canonical_json({**dict(extra or {}), **({"roles": list(roles)} if roles else {})})
    keys = [
        _dedup_key(incident.id, event, state_seq, extra_key, t.channel, t.destination)
        for t in destinations
    ]
    labels = {target_label(t.channel, t.destination): "queued" for t in destinations}
    if keys:
        seen = connection.execute(
            select(func.count()).select_from(OUTBOX).where(OUTBOX.c.dedup_key.in_(keys))
        ).scalar()
        if seen:
            return Enqueued(0, {k: "already queued" for k in labels}, None, True)
    context = build_context(
        event=event,
        incident=incident,
        alias=settings.registry.alias,
        production=production,
        mentions=route.mentions,
        extra=extra,
    )
    title = (
        f"Incident {incident.id} ({incident.type}, {incident.severity}) on "
        f"{incident.asset_name or 'no asset'}: {event}"
    )
    appended = append_event(
        connection,
        kind=EventKind.NOTIFICATION,
        action=f"notify.{event}",
        actor=actor,
        incident_id=incident.id,
        asset=incident.asset_name,
        data={"title": title, "receipts": labels, "drill": context["drill"]},
    )
    if not destinations:
        return Enqueued(0, labels, appended.seq, False)
    payload = canonical_json(context)
    now = datetime.now(UTC)
    rows = [
        {
            "incident_id": incident.id,
            "event": event,
            "channel": t.channel,
            "destination": t.destination,
            "ordering_key": f"{incident.id}:{t.channel}:{t.destination}"[:320],
            "dedup_key": key,
            "idempotency_key": str(uuid.uuid4()),
            "cause_seq": appended.seq,
            "payload": payload,
            "status": PENDING,
            "attempts": 0,
            "in_doubt": False,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for t, key in zip(destinations, keys, strict=True)
    ]
    connection.execute(insert(OUTBOX), rows)
    declare_channels(connection, (t.channel for t in destinations))
    return Enqueued(len(rows), labels, appended.seq, False)


def list_notifications(
    session: Session,
    *,
    status: str | None = None,
    incident_id: int | None = None,
    limit: int = 200,
) -> list[NotificationOutbox]:
    """Outbox rows, newest first, optionally only one status or one incident's."""
    statement = (
        select_rows(NotificationOutbox).order_by(col(NotificationOutbox.id).desc()).limit(limit)
    )
    if status is not None:
        statement = statement.where(NotificationOutbox.status == status)
    if incident_id is not None:
        statement = statement.where(NotificationOutbox.incident_id == incident_id)
    return list(session.exec(statement))


def retry(connection: Connection, *, outbox_ids: list[int], actor: str) -> list[int]:
    """Make failed (or waiting) notifications due now; a person's decision, recorded.

    A retry also clears "in doubt": the person has decided the message is to be sent again.

    Raises:
        NotFoundError: an id is unknown.
        ConflictError: a notification was delivered already, or is being sent right now.
    """
    rows = connection.execute(select(OUTBOX).where(OUTBOX.c.id.in_(outbox_ids))).mappings().all()
    found = {row["id"]: row for row in rows}
    now = datetime.now(UTC)
    for outbox_id in outbox_ids:
        row = found.get(outbox_id)
        if row is None:
            raise NotFoundError(
                f"unknown notification {outbox_id}", hint="see `rearguard notifications list`"
            )
        if row["status"] == DELIVERED:
            raise ConflictError(f"notification {outbox_id} was delivered already")
        lease = row["lease_until"]
        if row["status"] == SENDING and lease is not None and _aware(lease) > now:
            raise ConflictError(f"notification {outbox_id} is being sent right now")
    for outbox_id in outbox_ids:
        row = found[outbox_id]
        connection.execute(
            update(OUTBOX)
            .where(OUTBOX.c.id == outbox_id)
            .values(
                status=PENDING,
                next_attempt_at=now,
                lease_until=None,
                claimed_by=None,
                in_doubt=False,
                updated_at=now,
            )
        )
        append_event(
            connection,
            kind=EventKind.DECISION,
            action="notification.retry",
            actor=actor,
            incident_id=row["incident_id"],
            asset=(json.loads(row["payload"]).get("incident") or {}).get("asset"),
            data={
                "outbox_id": outbox_id,
                "channel": row["channel"],
                "destination": row["destination"],
                "event": row["event"],
                "was": row["status"],
                "last_error": row["last_error"],
            },
        )
    return outbox_ids


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
