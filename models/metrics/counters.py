"""Counters kept in the database, incremented in the transaction of what they count.

A scrape of ``/metrics`` must not recount 100,000 incidents, so what only ever grows (incidents
opened, ended and resolved; the time they took to contain and recover; playbook steps; intake
alerts; deliveries) is counted where it happens, in the same transaction as the event that
records it, in the ``metric_counter`` table: one row per metric and label set. A rolled-back
transaction counts nothing, and two processes counting at once both count.

A histogram is stored per bucket, not cumulatively (``<name>_bucket`` with an ``le`` label:
the smallest bound at or above the value) with its ``<name>_sum``; the reader accumulates.
So an observation is two upserts, and a bound added later only refines new observations.

Lock order: on PostgreSQL every writer takes the audit chain's lock before its first counter
row (:func:`add` takes it), the order every writer already follows, so that two transactions
never wait for each other's rows the other way round.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import Connection, text
from sqlmodel import Session

from rearguard.models.audit.chain import canonical_json, lock_chain
from rearguard.models.db.tables import Incident
from rearguard.models.enums import IncidentSource, IncidentStatus

Labels = Mapping[str, str]


@dataclass(frozen=True)
class Family:
    """One metric family: its name (without ``_total``), help, labels and kind."""

    name: str
    doc: str
    labels: tuple[str, ...]
    kind: Literal["counter", "histogram"] = "counter"
    buckets: tuple[float, ...] = ()

    def bucket_of(self, value: float) -> str:
        """The ``le`` label of the bucket a value falls in."""
        bound = next((b for b in self.buckets if value <= b), math.inf)
        return bound_label(bound)


def bound_label(bound: float) -> str:
    """How a bucket bound is stored: ``+Inf``, or the float's text (``0.5``, ``60.0``)."""
    return "+Inf" if math.isinf(bound) else str(float(bound))


_INCIDENT = ("type", "severity", "source")
# A playbook contains and recovers in seconds; a person's part (an approval, a failed run
# finished by hand) takes minutes to a day.
_RESPONSE_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0)
_STEP_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0, 600.0)

INCIDENTS_OPENED = Family("incidents_opened", "Incidents opened", _INCIDENT)
INCIDENTS_ENDED = Family(
    "incidents_ended",
    "Playbook runs that concluded an incident, by outcome (recovered, contained, failed)",
    (*_INCIDENT, "outcome"),
)
INCIDENTS_RESOLVED = Family("incidents_resolved", "Incidents resolved by a person", _INCIDENT)
TIME_TO_CONTAIN = Family(
    "time_to_contain_seconds",
    "Seconds from an incident's opening to its containment (drills excluded)",
    ("type",),
    "histogram",
    _RESPONSE_BUCKETS,
)
TIME_TO_RECOVER = Family(
    "time_to_recover_seconds",
    "Seconds from an incident's opening to its recovery (drills excluded)",
    ("type",),
    "histogram",
    _RESPONSE_BUCKETS,
)
STEP_DURATION = Family(
    "playbook_step_duration_seconds",
    "Seconds a playbook step's body ran",
    ("type", "step"),
    "histogram",
    _STEP_BUCKETS,
)
STEP_FAILURES = Family("playbook_step_failures", "Playbook steps that failed", ("type", "step"))
INTAKE_ALERTS = Family(
    "intake_alerts",
    "Alerts the intake took: result accepted, deduplicated or rejected; action what it did",
    ("result", "action"),
)
OUTBOX_DELIVERED = Family("outbox_delivered", "Notifications delivered", ("channel",))
OUTBOX_FAILED = Family("outbox_failed", "Notifications that failed for good", ("channel",))
FAMILIES = (
    INCIDENTS_OPENED,
    INCIDENTS_ENDED,
    INCIDENTS_RESOLVED,
    TIME_TO_CONTAIN,
    TIME_TO_RECOVER,
    STEP_DURATION,
    STEP_FAILURES,
    INTAKE_ALERTS,
    OUTBOX_DELIVERED,
    OUTBOX_FAILED,
)
"""Every family kept in ``metric_counter``."""

_ALERT_RESULTS = {"attached": "deduplicated", "rejected": "rejected"}
_UPSERT = text(
    "INSERT INTO metric_counter (name, labels, value) VALUES (:name, :labels, :value) "
    "ON CONFLICT (name, labels) DO UPDATE SET value = metric_counter.value + excluded.value"
)


def add(target: Session | Connection, counts: Iterable[tuple[str, Labels, float]]) -> None:
    """Add to counter rows in the caller's transaction.

    Args:
        target: an open write session, or a connection in a write transaction.
        counts: (stored name, labels, amount); equal names and labels are summed first.
    """
    summed: dict[tuple[str, str], float] = {}
    for name, labels, amount in counts:
        key = (name, canonical_json(dict(labels)))
        summed[key] = summed.get(key, 0.0) + amount
    if not summed:
        return
    connection = target.connection() if isinstance(target, Session) else target
    lock_chain(connection)
    connection.execute(
        _UPSERT,
        [
            {"name": name, "labels": labels, "value": value}
            for (name, labels), value in summed.items()
        ],
    )


def observation(family: Family, labels: Labels, value: float) -> list[tuple[str, Labels, float]]:
    """The rows one histogram observation adds to: its bucket and the sum."""
    return [
        (f"{family.name}_bucket", {**labels, "le": family.bucket_of(value)}, 1.0),
        (f"{family.name}_sum", labels, value),
    ]


def incident_labels(incident: Incident) -> dict[str, str]:
    """The labels every incident family has."""
    return {
        "type": incident.type,
        "severity": str(incident.severity),
        "source": str(incident.source),
    }


def count_opened(target: Session | Connection, incident: Incident) -> None:
    """Count an incident opened."""
    add(target, [(INCIDENTS_OPENED.name, incident_labels(incident), 1.0)])


def count_ended(target: Session | Connection, incident: Incident, outcome: IncidentStatus) -> None:
    """Count a playbook run that concluded an incident (recovered, contained or failed)."""
    labels = {**incident_labels(incident), "outcome": str(outcome)}
    add(target, [(INCIDENTS_ENDED.name, labels, 1.0)])


def count_status(
    target: Session | Connection,
    incident: Incident,
    *,
    previous: IncidentStatus,
    now: datetime | None = None,
) -> None:
    """Count what an incident's new status says: its containment or recovery time (not for
    drills: their recovery is measured against the RTO), or its resolution."""
    status = IncidentStatus(incident.status)
    counts: list[tuple[str, Labels, float]] = []
    elapsed = ((now or datetime.now(UTC)) - incident.opened_at).total_seconds()
    response = {"type": incident.type}
    drill = str(incident.source) == IncidentSource.DRILL
    if not drill and previous == IncidentStatus.OPEN and status == IncidentStatus.CONTAINED:
        counts += observation(TIME_TO_CONTAIN, response, elapsed)
    if not drill and status == IncidentStatus.RECOVERED and previous != status:
        counts += observation(TIME_TO_RECOVER, response, elapsed)
    if status == IncidentStatus.RESOLVED and previous != status:
        counts.append((INCIDENTS_RESOLVED.name, incident_labels(incident), 1.0))
    add(target, counts)


def count_step(
    target: Session | Connection, *, incident_type: str, step: str, seconds: float, ok: bool
) -> None:
    """Count a playbook step that ended: its duration, and its failure."""
    labels = {"type": incident_type, "step": step}
    counts = observation(STEP_DURATION, labels, seconds)
    if not ok:
        counts.append((STEP_FAILURES.name, labels, 1.0))
    add(target, counts)


def count_alerts(target: Session | Connection, actions: Iterable[str]) -> None:
    """Count intake alerts by what became of them (opened, attached, resolved, unmatched,
    rejected): ``attached`` is deduplicated, ``rejected`` rejected, the rest accepted."""
    add(
        target,
        [
            (
                INTAKE_ALERTS.name,
                {"result": _ALERT_RESULTS.get(action, "accepted"), "action": action},
                1.0,
            )
            for action in actions
        ],
    )


_DELIVERY_FAMILIES = {"delivered": OUTBOX_DELIVERED.name, "failed": OUTBOX_FAILED.name}


def count_deliveries(target: Session | Connection, outcomes: Iterable[tuple[str, str]]) -> None:
    """Count notifications that ended, as (channel, ``delivered`` or ``failed``)."""
    add(
        target,
        [(_DELIVERY_FAMILIES[status], {"channel": channel}, 1.0) for channel, status in outcomes],
    )


def declare_channels(target: Session | Connection, channels: Iterable[str]) -> None:
    """Make a channel's delivered and failed series exist (at 0) from its first queued
    notification: Prometheus's ``increase()`` ignores a series' first sample, so a series born
    with its first failure would never fire the failing-notifications rule for it."""
    add(
        target,
        [
            (family, {"channel": channel}, 0.0)
            for channel in set(channels)
            for family in _DELIVERY_FAMILIES.values()
        ],
    )
