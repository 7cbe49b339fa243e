"""An incident's facts, read from the database alone: what every export is built from.

:func:`load_facts` reads the incident, streams its timeline once in sequence order to gather
the milestones, step runs, actions, versions and event times (a few bytes per event, so an
incident with 100,000 events costs little memory), and looks up the versions involved and
the alias move that put the compromised version in production. The timeline itself is never
held in memory: formats that list every event stream it again with :meth:`IncidentFacts.events`
(or :func:`iter_rows` for the raw, hashed fields), bounded by the sequence number the first
pass ended at, so every part of one export describes the same events.

Everything textual passes through :mod:`rearguard.models.audit.redaction`.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Row, func
from sqlmodel import col, select

from rearguard.flows.timeline_text import describe_event
from rearguard.models.audit.redaction import json_text_may_hold_secret, redact_text, redact_value
from rearguard.models.db.engine import Database
from rearguard.models.db.tables import Alias, Asset, AssetVersion, TimelineEvent, table_of
from rearguard.models.errors import NotFoundError
from rearguard.models.incidents.service import get_incident
from rearguard.models.incidents.types import ExportProfile, IncidentType, get_incident_type
from rearguard.models.recovery.results import (
    IntegrityReport,
    Quarantined,
    Selection,
    StepResult,
    outcome_result,
)
from rearguard.models.schemas import IncidentRead

_EVENTS = table_of(TimelineEvent)
ROW_COLUMNS = (
    "seq",
    "ts",
    "incident_id",
    "kind",
    "action",
    "actor",
    "asset",
    "version",
    "data",
    "prev_hash",
    "hash",
)
EventRow = Row[int, str, int | None, str, str, str, str | None, str | None, str, str, str]
"""A stored event as :func:`iter_rows` gives it: its :data:`ROW_COLUMNS`, in that order."""
KINDS = ("intent", "outcome", "decision", "notification", "state")
_MAX_ACTIONS = 500
_MAX_STEPS = 500
# Events the chart draws one by one (with their action); above this it draws counts.
MAX_MARKS = 200
_STREAM_BATCH = 5000


def parse_ts(value: str) -> datetime:
    """Parse a chain timestamp (``2026-11-25T03:00:00.000000Z``) as an aware UTC datetime."""
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)


def iso(moment: datetime | None) -> str | None:
    """A datetime as the exports write it: UTC, microseconds, a trailing ``Z``."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class EventView(NamedTuple):
    """One timeline event, redacted, with a one-line description (a tuple: one per event)."""

    seq: int
    ts: str
    kind: str
    action: str
    actor: str
    asset: str | None
    version: str | None
    data: dict[str, Any]
    prev_hash: str
    hash: str
    redacted: bool
    detail: str


@dataclass(frozen=True)
class VersionFacts:
    """A version of the affected asset that the incident involved."""

    label: str
    status: str
    digest: str
    file_count: int
    total_size: int
    registered_by: str
    registered_at: datetime
    approved_by: str | None
    approved_at: datetime | None
    roles: tuple[str, ...]


@dataclass(frozen=True)
class StepRun:
    """One run of a playbook step: its intent and, unless it was interrupted, its outcome."""

    name: str
    actor: str
    started: datetime
    ended: datetime | None
    ok: bool | None
    detail: str
    intent_seq: int
    outcome_seq: int | None
    outcome_hash: str | None


@dataclass(frozen=True)
class Action:
    """Something done during the incident and who did it."""

    seq: int
    ts: datetime
    actor: str
    action: str
    kind: str
    detail: str


@dataclass(frozen=True)
class Metric:
    """A duration between two moments of the incident (None where one is not recorded)."""

    key: str
    name: str
    start: datetime | None
    end: datetime | None
    start_label: str
    end_label: str
    missing: str

    @property
    def seconds(self) -> float | None:
        """The duration in seconds, or None."""
        if self.start is None or self.end is None:
            return None
        return round((self.end - self.start).total_seconds(), 6)


@dataclass(frozen=True)
class Exposure:
    """How long the compromised version served production."""

    label: str
    start: datetime | None
    end: datetime | None
    start_seq: int | None
    end_seq: int | None
    moved_in_by: str | None

    @property
    def summary(self) -> str:
        """The exposure in words when it has no duration: not rolled back, or not recorded."""
        if self.start is not None and self.end is None:
            return "not rolled back"
        return "not recorded" if self.start is None else ""

    @property
    def seconds(self) -> float | None:
        """The time in production, or None when a bound is not recorded."""
        if self.start is None or self.end is None:
            return None
        return round((self.end - self.start).total_seconds(), 6)


@dataclass
class Milestones:
    """When the incident reached each point of its life, per its timeline."""

    opened: datetime | None = None
    acknowledged: datetime | None = None
    contained: datetime | None = None
    recovered: datetime | None = None
    failed: datetime | None = None
    resolved: datetime | None = None
    opened_seq: int | None = None


@dataclass(frozen=True)
class Mark:
    """One event as the chart shows it, for incidents small enough to draw event by event."""

    seq: int
    ts: datetime
    kind: str
    action: str


@dataclass(frozen=True)
class Resolution:
    """Who resolved the incident, when, and their note."""

    actor: str
    ts: datetime
    note: str | None
    seq: int
    hash: str


@dataclass
class IncidentFacts:
    """Everything the exports say about one incident, except the events themselves."""

    db: Database
    incident: IncidentRead
    alias: str
    asset_kind: str | None
    playbook_title: str | None
    provisions: tuple[str, ...]
    profile: ExportProfile
    versions: list[VersionFacts]
    milestones: Milestones
    exposure: Exposure | None
    steps: list[StepRun]
    steps_omitted: int
    actions: list[Action]
    actions_omitted: int
    event_count: int
    first_seq: int | None
    last_seq: int | None
    first_prev_hash: str | None
    first_hash: str | None
    last_hash: str | None
    event_times: array[float]
    marks: list[Mark]
    evidence: str | None
    alteration_found: bool
    resolution: Resolution | None
    production_now: str | None

    @property
    def last_ts(self) -> datetime | None:
        """The time of the last event."""
        return _from_epoch(self.event_times[-1]) if self.event_times else None

    @property
    def metrics(self) -> list[Metric]:
        """Time to detect, acknowledge, contain, recover and resolve."""
        m = self.milestones
        opened = m.opened or self.incident.opened_at
        return [
            Metric(
                "detect",
                "Time to detect",
                self.incident.since,
                opened,
                "suspected start",
                "opened",
                "no suspected start (--since) was given",
            ),
            Metric(
                "acknowledge",
                "Time to acknowledge",
                opened,
                m.acknowledged,
                "opened",
                "first response",
                "no response recorded",
            ),
            Metric(
                "contain",
                "Time to contain",
                opened,
                m.contained,
                "opened",
                "contained",
                "not contained",
            ),
            Metric(
                "recover",
                "Time to recover",
                opened,
                m.recovered,
                "opened",
                "recovered",
                "not recovered" + (" (the playbook failed)" if m.failed else ""),
            ),
            Metric(
                "resolve",
                "Time to resolve",
                opened,
                m.resolved,
                "opened",
                "resolved",
                "not resolved yet",
            ),
        ]

    @property
    def incident_id(self) -> int:
        """The incident's id."""
        return self.incident.id

    def rows(self) -> Iterator[EventRow]:
        """Stream the incident's events as stored (hashed fields, data as canonical text)."""
        if self.last_seq is None:
            return iter(())
        return iter_rows(self.db, self.incident.id, upto_seq=self.last_seq)

    def events(self, counter: RedactionCounter | None = None) -> Iterator[EventView]:
        """Stream the incident's events, redacted and described, in sequence order.

        Args:
            counter: counts the events that had something redacted, as they stream by.
        """
        for row in self.rows():
            event = event_view(row)
            if counter is not None and event.redacted:
                counter.events += 1
            yield event

    def count_redacted(self) -> int:
        """How many of the incident's events hold something the exports redact (a full pass)."""
        counter = RedactionCounter()
        for _ in self.events(counter):
            pass
        return counter.events


@dataclass
class RedactionCounter:
    """The number of events redacted so far in a stream."""

    events: int = 0


@dataclass(frozen=True)
class Timeline:
    """Where an incident's stretch of the chain starts and ends; its rows stream on demand."""

    db: Database
    incident_id: int
    first_seq: int | None
    first_prev_hash: str | None
    last_seq: int | None

    def rows(self) -> Iterator[EventRow]:
        """Stream the incident's events as stored, up to ``last_seq``."""
        if self.last_seq is None:
            return iter(())
        return iter_rows(self.db, self.incident_id, upto_seq=self.last_seq)


def load_timeline(db: Database, incident_id: int) -> Timeline:
    """The bounds of an incident's timeline, without reading its events (for the jsonl export).

    Raises:
        NotFoundError: there is no such incident.
    """
    with db.read_session() as session:
        get_incident(session=session, incident_id=incident_id)
        connection = session.connection()
        bounds = connection.execute(
            select(func.min(_EVENTS.c.seq), func.max(_EVENTS.c.seq)).where(
                _EVENTS.c.incident_id == incident_id
            )
        ).one()
        first_prev_hash = None
        if bounds[0] is not None:
            first_prev_hash = connection.execute(
                select(_EVENTS.c.prev_hash).where(_EVENTS.c.seq == bounds[0])
            ).scalar_one()
    return Timeline(db, incident_id, bounds[0], first_prev_hash, bounds[1])


def _from_epoch(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def iter_rows(db: Database, incident_id: int, *, upto_seq: int | None = None) -> Iterator[EventRow]:
    """Stream an incident's stored events in sequence order, one query, rows fetched in batches.

    The rows carry the hashed fields as stored (``data`` as canonical JSON text) and ``hash``,
    in :data:`ROW_COLUMNS` order and by name. One read transaction covers the whole stream, so
    it is one consistent snapshot; ``upto_seq`` bounds it to what an earlier pass saw.
    """
    columns = [_EVENTS.c[name] for name in ROW_COLUMNS]
    statement = select(*columns).where(_EVENTS.c.incident_id == incident_id)
    if upto_seq is not None:
        statement = statement.where(_EVENTS.c.seq <= upto_seq)
    statement = statement.order_by(_EVENTS.c.seq)
    with db.read_session() as session:
        connection = session.connection().execution_options(yield_per=_STREAM_BATCH)
        result = connection.execute(statement)
        for partition in result.partitions():
            yield from partition


def event_view(row: EventRow) -> EventView:
    """Redact and describe one stored event."""
    seq, ts, _, kind, action, actor, asset, version, data_text, prev_hash, digest = row
    data = json.loads(data_text)
    redacted = False
    # One quick test of everything the event holds; the slow path only when it may be needed.
    if json_text_may_hold_secret(f"{data_text}\n{action}\n{actor}\n{asset}\n{version}"):
        clean = redact_value(data)
        redacted = clean != data
        data = clean
        names = (action, actor, asset, version)
        action, actor = redact_text(action), redact_text(actor)
        asset = redact_text(asset) if asset else asset
        version = redact_text(version) if version else version
        redacted = redacted or (action, actor, asset, version) != names
    return EventView(
        seq=seq,
        ts=ts,
        kind=kind,
        action=action,
        actor=actor,
        asset=asset,
        version=version,
        data=data,
        prev_hash=prev_hash,
        hash=digest,
        redacted=redacted,
        detail=describe_event(kind, action, data),
    )


def load_facts(db: Database, incident_id: int, *, alias: str = "production") -> IncidentFacts:
    """Read everything about an incident that the exports need, streaming its timeline once.

    Args:
        db: the database.
        incident_id: the incident.
        alias: the production alias name (``[registry] alias``).

    Returns:
        The facts.

    Raises:
        NotFoundError: there is no such incident.
    """
    with db.read_session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        view = IncidentRead.of(incident).redacted()
    gather = _Gatherer(view, alias)
    for row in iter_rows(db, incident_id):
        gather.add(row)
    gather.finish()
    with db.read_session() as session:
        asset = (
            session.exec(select(Asset).where(Asset.name == incident.asset_name)).first()
            if incident.asset_name
            else None
        )
        versions = _versions(session, asset, gather) if asset else []
        production_now = _alias_label(session, asset, alias) if asset else None
        exposure = _exposure(session, view, gather, alias) if asset and view.compromised else None
    spec = _type_entry(view.type)
    return IncidentFacts(
        db=db,
        incident=view,
        alias=alias,
        asset_kind=str(asset.kind) if asset else None,
        playbook_title=spec.title if spec else None,
        provisions=spec.provisions if spec else (),
        profile=spec.profile if spec else ExportProfile(),
        versions=versions,
        milestones=gather.milestones,
        exposure=exposure,
        steps=gather.steps,
        steps_omitted=gather.steps_omitted,
        actions=gather.actions,
        actions_omitted=gather.actions_omitted,
        event_count=gather.count,
        first_seq=gather.first_seq,
        last_seq=gather.last_seq,
        first_prev_hash=gather.first_prev_hash,
        first_hash=gather.first_hash,
        last_hash=gather.last_hash,
        event_times=gather.times,
        marks=gather.marks,
        evidence=gather.evidence,
        alteration_found=gather.alteration_found,
        resolution=gather.resolution,
        production_now=production_now,
    )


def _type_entry(incident_type: str) -> IncidentType | None:
    # An incident of a plug-in type since uninstalled is still exported, generically.
    try:
        return get_incident_type(incident_type)
    except NotFoundError:
        return None


# Actions whose data the first pass reads; the rest are counted and timed only.
_STATE_PREFIXES = ("incident.", "version.", "alias.", "notify.")


class _Gatherer:
    """The first pass over a timeline: everything but the events themselves."""

    def __init__(self, incident: IncidentRead, alias: str) -> None:
        self.incident = incident
        self.alias = alias
        self.count = 0
        self.first_seq: int | None = None
        self.first_prev_hash: str | None = None
        self.last_seq: int | None = None
        self.last_hash: str | None = None
        self.times: array[float] = array("d")
        self.marks: list[Mark] = []
        self.milestones = Milestones()
        self.steps: list[StepRun] = []
        self.steps_omitted = 0
        self.actions: list[Action] = []
        self.actions_omitted = 0
        self.evidence: str | None = None
        self.alteration_found = False
        self.first_hash: str | None = None
        self.resolution: Resolution | None = None
        self.labels: set[str] = set()
        self.roles: dict[str, list[str]] = {}
        self.rollback_seq: int | None = None
        self.rollback_ts: datetime | None = None
        self._open_steps: dict[str, tuple[int, datetime, str]] = {}

    def add(self, row: EventRow) -> None:
        seq, ts, _, kind, action, _, _, version, _, prev_hash, digest = row
        if self.first_seq is None:
            self.first_seq, self.first_prev_hash, self.first_hash = seq, prev_hash, digest
        self.count += 1
        self.last_seq, self.last_hash = seq, digest
        moment = parse_ts(ts)
        self.times.append(moment.timestamp())
        if len(self.marks) < MAX_MARKS:
            self.marks.append(Mark(seq, moment, kind, redact_text(action)))
        if version:
            self.labels.add(version)
        interesting = kind in ("intent", "outcome", "decision") or action.startswith(
            _STATE_PREFIXES
        )
        if not interesting:
            return
        event = event_view(row)
        result = outcome_result(event.action, event.data) if event.kind == "outcome" else None
        self._milestone(event, moment)
        self._step(event, moment, result)
        self._roles(event, result)
        if event.kind != "intent" and event.action != "incident.opened":
            self._action(event, moment)

    def _milestone(self, event: EventView, moment: datetime) -> None:
        m = self.milestones
        action = event.action
        if action == "incident.opened" and m.opened is None:
            m.opened, m.opened_seq = moment, event.seq
        elif m.opened and m.acknowledged is None and event.kind in ("intent", "decision"):
            m.acknowledged = moment
        if action == "incident.contained" and m.contained is None:
            m.contained = moment
        elif action == "incident.recovered" and m.recovered is None:
            m.recovered = moment
        elif action == "incident.failed":
            m.failed = moment
        elif action == "incident.resolved":
            m.resolved = moment
        elif action == "incident.resolve":
            note = event.data.get("note")
            self.resolution = Resolution(
                event.actor, moment, str(note) if note else None, event.seq, event.hash
            )
        elif (
            action == "alias.moved"
            and self.rollback_seq is None
            and event.asset == self.incident.asset
            and event.data.get("alias", self.alias) == self.alias
        ):
            self.rollback_seq, self.rollback_ts = event.seq, moment

    def _step(self, event: EventView, moment: datetime, result: StepResult | None) -> None:
        if event.kind == "intent":
            interrupted = self._open_steps.pop(event.action, None)
            if interrupted is not None:
                self._add_step(event.action, interrupted, None, None, "interrupted: no outcome")
            self._open_steps[event.action] = (event.seq, moment, event.actor)
        elif event.kind == "outcome":
            started = self._open_steps.pop(event.action, None) or (event.seq, moment, event.actor)
            ok = bool(event.data.get("ok"))
            # A failed step's detail is its error; the step tables say "failed" themselves.
            detail = event.detail if ok else str(event.data.get("error") or "unknown error")
            self._add_step(event.action, started, (event.seq, moment, event.hash), ok, detail)
            if isinstance(result, Quarantined):
                self.evidence = result.evidence or self.evidence
                self.alteration_found |= bool(result.altered_files)
            if isinstance(result, IntegrityReport):
                self.alteration_found |= bool(result.failed)

    def _add_step(
        self,
        name: str,
        started: tuple[int, datetime, str],
        ended: tuple[int, datetime, str] | None,
        ok: bool | None,
        detail: str,
    ) -> None:
        if len(self.steps) >= _MAX_STEPS:
            self.steps_omitted += 1
            return
        self.steps.append(
            StepRun(
                name=name,
                actor=started[2],
                started=started[1],
                ended=ended[1] if ended else None,
                ok=ok,
                detail=detail,
                intent_seq=started[0],
                outcome_seq=ended[0] if ended else None,
                outcome_hash=ended[2] if ended else None,
            )
        )

    def finish(self) -> None:
        """Close the pass: steps still without an outcome, and the roles of the state labels."""
        for name, started in sorted(self._open_steps.items(), key=lambda item: item[1][0]):
            self._add_step(name, started, None, None, "no outcome recorded")
        self._open_steps.clear()
        self.steps.sort(key=lambda step: step.intent_seq)
        for label, role in (
            (self.incident.compromised, "compromised"),
            (self.incident.selected, "restored"),
        ):
            if label:
                self.labels.add(label)
                roles = self.roles.setdefault(label, [])
                if role not in roles:
                    roles.insert(0, role)

    def _roles(self, event: EventView, result: StepResult | None) -> None:
        if event.action.startswith("version.") and event.version:
            self._role(event.version, f"marked {event.action.removeprefix('version.')}")
        if isinstance(result, IntegrityReport):
            for label, check in result.checks.items():
                self._role(label, "verified intact" if check.ok else "failed verification")
        elif isinstance(result, Selection):
            for rejected in result.rejected:
                self._role(rejected.version, f"rejected: {rejected.reason}")

    def _role(self, label: str, role: str) -> None:
        self.labels.add(label)
        roles = self.roles.setdefault(label, [])
        if role not in roles:
            roles.append(role)

    def _action(self, event: EventView, moment: datetime) -> None:
        if len(self.actions) >= _MAX_ACTIONS:
            self.actions_omitted += 1
            return
        what = event.action + (f" {event.version}" if event.version else "")
        self.actions.append(Action(event.seq, moment, event.actor, what, event.kind, event.detail))


def _versions(session: Any, asset: Asset, gather: _Gatherer) -> list[VersionFacts]:
    labels = gather.labels
    if not labels:
        return []
    rows = session.exec(
        select(AssetVersion).where(
            AssetVersion.asset_id == asset.id, col(AssetVersion.label).in_(sorted(labels))
        )
    ).all()
    rows = sorted(rows, key=lambda v: (v.registered_at, v.label))
    return [
        VersionFacts(
            label=v.label,
            status=str(v.status),
            digest=v.digest,
            file_count=v.file_count,
            total_size=v.total_size,
            registered_by=redact_text(v.registered_by),
            registered_at=v.registered_at,
            approved_by=redact_text(v.approved_by) if v.approved_by else None,
            approved_at=v.approved_at,
            roles=tuple(gather.roles.get(v.label, ())),
        )
        for v in rows
    ]


def _alias_label(session: Any, asset: Asset, alias: str) -> str | None:
    row = session.get(Alias, (asset.id, alias))
    if row is None:
        return None
    version = session.get(AssetVersion, row.version_id)
    return version.label if version else None


def _exposure(session: Any, incident: IncidentRead, gather: _Gatherer, alias: str) -> Exposure:
    """From the alias move that put the compromised version in production to the rollback."""
    label = incident.compromised
    assert label is not None
    opened_seq = gather.milestones.opened_seq
    statement = (
        select(_EVENTS.c.seq, _EVENTS.c.ts, _EVENTS.c.actor, _EVENTS.c.data)
        .where(
            _EVENTS.c.action == "alias.moved",
            _EVENTS.c.asset == incident.asset,
            _EVENTS.c.version == label,
        )
        .order_by(_EVENTS.c.seq.desc())
    )
    if opened_seq is not None:
        statement = statement.where(_EVENTS.c.seq < opened_seq)
    start: tuple[int, datetime, str] | None = None
    for seq, ts, actor, data in session.connection().execute(statement):
        if json.loads(data).get("alias", alias) == alias:
            start = (seq, parse_ts(ts), actor)
            break
    return Exposure(
        label=label,
        start=start[1] if start else None,
        end=gather.rollback_ts,
        start_seq=start[0] if start else None,
        end_seq=gather.rollback_seq,
        moved_in_by=redact_text(start[2]) if start else None,
    )


def incidents_between(db: Database, *, from_seq: int, to_seq: int) -> list[int | None]:
    """The incidents that events ``from_seq..to_seq`` belong to, sorted; None for events of no
    incident (registrations, approvals of versions). What a ``gap`` of an export withholds."""
    statement = (
        select(_EVENTS.c.incident_id).where(_EVENTS.c.seq.between(from_seq, to_seq)).distinct()
    )
    with db.read_session() as session:
        found = set(session.connection().execute(statement).scalars())
    return sorted(found, key=lambda value: -1 if value is None else value)
