"""What a metrics scrape reads: the kept counters, and a few gauges from cheap queries.

Everything here costs a handful of indexed reads whatever the number of incidents: the counters
are the rows of ``metric_counter`` (hundreds to a few thousand), read again only when
:func:`counters_version` says they changed; the gauges count what is waiting now (unresolved
incidents and pending approvals through their status indexes, pending outbox rows through the
outbox's status index), the drills' few runs, the chain head's one row and the latest
checkpoint. ``bench/bench_metrics.py`` measures it on 100,000 incidents.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import case, func, select
from sqlmodel import Session

from rearguard.models.db.tables import (
    ApprovalRequest,
    AuditCheckpoint,
    ChainHead,
    CheckpointDelivery,
    Drill,
    DrillRun,
    Incident,
    NotificationOutbox,
    table_of,
)
from rearguard.models.enums import IncidentStatus
from rearguard.models.metrics.counters import Family, bound_label

_INCIDENTS = table_of(Incident)
_APPROVALS = table_of(ApprovalRequest)
_OUTBOX = table_of(NotificationOutbox)
_RUNS = table_of(DrillRun)
_DRILLS = table_of(Drill)
_HEAD = table_of(ChainHead)
_CHECKPOINTS = table_of(AuditCheckpoint)
_DELIVERIES = table_of(CheckpointDelivery)
RESULTS = ("pass", "fail", "missed")
"""What a drill run ends as."""
UNRESOLVED = (
    IncidentStatus.OPEN,
    IncidentStatus.CONTAINED,
    IncidentStatus.RECOVERED,
    IncidentStatus.FAILED,
)


class Sample(NamedTuple):
    """One value of a family: its label values, in the family's label order."""

    values: tuple[str, ...]
    value: float


class HistogramSample(NamedTuple):
    """One histogram of a family: its label values, cumulative counts per bound (``le``),
    and the sum."""

    values: tuple[str, ...]
    buckets: list[tuple[str, float]]
    sum: float


@dataclass(frozen=True)
class DrillState:
    """A drill's runs by result, its latest RTO margin and when it last passed."""

    runs: dict[str, int] = field(default_factory=dict)
    rto_margin_s: float | None = None
    last_pass: datetime | None = None


@dataclass(frozen=True)
class KeptCounters:
    """The ``metric_counter`` rows as they are stored: by name, (labels as canonical JSON,
    value); :meth:`counter` and :meth:`histogram` give them per family."""

    rows: dict[str, list[tuple[str, float]]]

    def counter(self, family: Family) -> list[Sample]:
        """A counter family's samples (rows stored with labels the family no longer has are
        summed into the series they now belong to)."""
        return [Sample(v, n) for v, n in _summed(self.rows.get(family.name, []), family)]

    def histogram(self, family: Family) -> list[HistogramSample]:
        """A histogram family's samples, accumulated over its bounds.

        A stored bound that is not one of the family's (the bounds changed since it was
        counted) counts in every bound at or above it, as ``le`` means.
        """
        grouped: dict[tuple[str, ...], dict[float, float]] = {}
        for labels, count in self.rows.get(f"{family.name}_bucket", []):
            values, bound = _bucket(labels, family.labels)
            counts = grouped.setdefault(values, {})
            counts[bound] = counts.get(bound, 0.0) + count
        sums = dict(_summed(self.rows.get(f"{family.name}_sum", []), family))
        bounds = [(bound, bound_label(bound)) for bound in (*family.buckets, math.inf)]
        found = []
        for values, counts in sorted(grouped.items()):
            cumulative, total = [], 0.0
            stored = sorted(counts.items())
            for bound, label in bounds:
                while stored and stored[0][0] <= bound:
                    total += stored.pop(0)[1]
                cumulative.append((label, total))
            found.append(HistogramSample(values, cumulative, sums.get(values, 0.0)))
        return found


def _summed(rows: list[tuple[str, float]], family: Family) -> list[tuple[tuple[str, ...], float]]:
    summed: dict[tuple[str, ...], float] = {}
    for labels, value in rows:
        values = _values(labels, family.labels)
        summed[values] = summed.get(values, 0.0) + value
    return sorted(summed.items())


@lru_cache(maxsize=8192)  # the same few hundred label sets come back at every scrape
def _values(labels: str, names: tuple[str, ...]) -> tuple[str, ...]:
    """A stored label set's values in the order of ``names`` (absent: empty)."""
    parsed = json.loads(labels)
    return tuple(str(parsed.get(name, "")) for name in names)


@lru_cache(maxsize=8192)
def _bucket(labels: str, names: tuple[str, ...]) -> tuple[tuple[str, ...], float]:
    """A stored bucket's label values and its bound."""
    return _values(labels, names), float(json.loads(labels).get("le", "+Inf"))


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@dataclass(frozen=True)
class Gauges:
    """What is waiting now, and the audit chain's state."""

    unresolved: dict[str, int]
    approvals_pending: int
    approvals_overdue: int
    outbox_pending: dict[str, int]
    outbox_oldest_pending_s: dict[str, float]
    drills: dict[str, DrillState]
    chain_head_seq: int
    last_checkpoint_age_s: float | None
    checkpoints_unpublished: int


def counters_version(*, session: Session) -> tuple[int, float]:
    """What changes whenever a kept counter does: the number of rows and the sum of their
    values (every increment adds 1 to a counter or a histogram bucket, and nothing is ever
    taken away), so that a reader can keep what it built from them until this changes."""
    count, total = (
        session.connection()
        .exec_driver_sql("SELECT COUNT(*), COALESCE(SUM(value), 0) FROM metric_counter")
        .one()
    )
    return int(count), float(total)


def read_counters(*, session: Session) -> KeptCounters:
    """Every kept counter row."""
    rows: dict[str, list[tuple[str, float]]] = {}
    for name, labels, value in (
        session.connection().exec_driver_sql("SELECT name, labels, value FROM metric_counter").all()
    ):
        rows.setdefault(name, []).append((labels, float(value)))
    return KeptCounters(rows)


def read_gauges(*, session: Session, now: datetime | None = None) -> Gauges:
    """Read what is waiting now (indexed counts) and the chain's head and checkpoints.

    Args:
        session: a read session.
        now: the time ages and overdue approvals are measured against (default: now).
    """
    now = now or datetime.now(UTC)
    connection = session.connection()
    unresolved = dict.fromkeys((str(s) for s in UNRESOLVED), 0)
    for status, count in connection.execute(
        select(_INCIDENTS.c.status, func.count())
        .where(_INCIDENTS.c.status.in_([str(s) for s in UNRESOLVED]))
        .group_by(_INCIDENTS.c.status)
    ):
        unresolved[str(status)] = int(count)
    pending, overdue = connection.execute(
        select(
            func.count(),
            func.coalesce(func.sum(case((_APPROVALS.c.deadline < now, 1), else_=0)), 0),
        ).where(_APPROVALS.c.status == "pending")
    ).one()
    outbox_pending: dict[str, int] = {}
    oldest: dict[str, float] = {}
    for channel, count, first in connection.execute(
        select(_OUTBOX.c.channel, func.count(), func.min(_OUTBOX.c.created_at))
        .where(_OUTBOX.c.status.in_(("pending", "sending")))
        .group_by(_OUTBOX.c.channel)
    ):
        outbox_pending[channel] = int(count)
        oldest[channel] = max(0.0, (now - _aware(first)).total_seconds())
    head = connection.execute(select(_HEAD.c.seq).where(_HEAD.c.id == 1)).scalar()
    unpublished = connection.execute(
        select(func.count()).select_from(_DELIVERIES).where(_DELIVERIES.c.published_at.is_(None))
    ).scalar()
    return Gauges(
        unresolved=unresolved,
        approvals_pending=int(pending),
        approvals_overdue=int(overdue),
        outbox_pending=outbox_pending,
        outbox_oldest_pending_s=oldest,
        drills=_drills(connection),
        chain_head_seq=int(head or 0),
        last_checkpoint_age_s=_checkpoint_age(connection, now),
        checkpoints_unpublished=int(unpublished or 0),
    )


def _drills(connection: Any) -> dict[str, DrillState]:
    """Each drill's runs by result (running ones not yet; every result present, 0 when none,
    so that a first failure is an increase), the RTO margin of its latest run measured against
    an RTO, and its latest pass; every defined drill, run or not, and removed ones that ran."""
    runs: dict[str, dict[str, int]] = {
        name: dict.fromkeys(RESULTS, 0) for (name,) in connection.execute(select(_DRILLS.c.name))
    }
    passed: dict[str, datetime] = {}
    for name, status, count, last in connection.execute(
        select(_RUNS.c.drill_name, _RUNS.c.status, func.count(), func.max(_RUNS.c.finished_at))
        .where(_RUNS.c.status != "running")
        .group_by(_RUNS.c.drill_name, _RUNS.c.status)
    ):
        runs.setdefault(name, dict.fromkeys(RESULTS, 0))[status] = int(count)
        if status == "pass" and last is not None:
            passed[name] = _aware(last)
    latest = (
        select(func.max(_RUNS.c.id))
        .where(_RUNS.c.rto_s.is_not(None), _RUNS.c.recovery_s.is_not(None))
        .group_by(_RUNS.c.drill_name)
    )
    margins = {
        name: float(rto - recovery)
        for name, rto, recovery in connection.execute(
            select(_RUNS.c.drill_name, _RUNS.c.rto_s, _RUNS.c.recovery_s).where(
                _RUNS.c.id.in_(latest)
            )
        )
    }
    return {
        name: DrillState(by_result, margins.get(name), passed.get(name))
        for name, by_result in runs.items()
    }


def _checkpoint_age(connection: Any, now: datetime) -> float | None:
    """Seconds since the latest signed checkpoint, None when there is none."""
    record = connection.execute(
        select(_CHECKPOINTS.c.record).order_by(_CHECKPOINTS.c.number.desc()).limit(1)
    ).scalar()
    if record is None:
        return None
    signed = datetime.fromisoformat(json.loads(record)["time"])
    return max(0.0, (now - _aware(signed)).total_seconds())
