"""The tamper-evident audit chain.

Every event carries ``prev_hash`` and ``hash = sha256(canonical JSON of its fields and
prev_hash)``: sorted keys, compact separators, UTF-8, UTC timestamps. There is one chain per
database, appended under a lock (SQLite ``BEGIN IMMEDIATE``, PostgreSQL an advisory lock) so it
stays linear with many writers. The ``chain_head`` row records the last sequence number and
hash, so deleting events from the end is as visible as deleting them from the middle.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlmodel import Session, select

from rearguard.models.enums import EventKind
from rearguard.models.tables import ChainHead, TimelineEvent

GENESIS_HASH = "0" * 64
# Arbitrary constant: the PostgreSQL advisory-lock key of the chain ("rgaudit" in ASCII).
_PG_LOCK_KEY = 0x72676175646974
HASHED_FIELDS = (
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
)

_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def canonical_json(value: Any) -> str:
    """Serialise a value the one way the chain hashes it (sorted keys, compact, UTF-8)."""
    return _dumps(value)


def format_ts(moment: datetime) -> str:
    """Format a timestamp as the chain stores it: UTC, microseconds, a trailing ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_hash(fields: Mapping[str, Any]) -> str:
    """Return the hash of one event from its hashed fields (``data`` as a parsed object)."""
    payload = {name: fields[name] for name in HASHED_FIELDS}
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def append_event(
    session: Session,
    *,
    kind: EventKind | str,
    action: str,
    actor: str,
    incident_id: int | None = None,
    asset: str | None = None,
    version: str | None = None,
    data: Mapping[str, Any] | None = None,
) -> TimelineEvent:
    """Append one event to the chain inside the caller's transaction.

    The caller's transaction holds the chain lock from here until it commits, so the event and
    the state change it records land together or not at all.

    Args:
        session: an open write session.
        kind: intent, outcome, decision, notification or state.
        action: what happened, e.g. ``rollback`` or ``incident.opened``.
        actor: who did it (a person, ``playbook:<name>``, ``cli``).
        incident_id: the incident the event belongs to, if any.
        asset: the asset concerned, if any.
        version: the version label concerned, if any.
        data: further facts; must be JSON-serialisable and must not hold secrets.

    Returns:
        The stored event.
    """
    _lock_chain(session)
    head = session.get(ChainHead, 1)
    if head is None:
        head = ChainHead(id=1, seq=0, hash=GENESIS_HASH)
    fields: dict[str, Any] = {
        "seq": head.seq + 1,
        "ts": format_ts(datetime.now(UTC)),
        "incident_id": incident_id,
        "kind": str(kind),
        "action": action,
        "actor": actor,
        "asset": asset,
        "version": version,
        "data": dict(data or {}),
        "prev_hash": head.hash,
    }
    digest = event_hash(fields)
    event = TimelineEvent(**{**fields, "data": canonical_json(fields["data"])}, hash=digest)
    head.seq, head.hash = event.seq, digest
    session.add(event)
    session.add(head)
    session.flush()
    return event


def _lock_chain(session: Session) -> None:
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    # SQLite: every write transaction already began with BEGIN IMMEDIATE (see database.py).


@dataclass(frozen=True)
class ChainProblem:
    """The first thing wrong with a chain."""

    seq: int
    line: int | None
    reason: str

    def describe(self) -> str:
        """One line for the user."""
        where = f"event {self.seq}" + (f" (line {self.line})" if self.line else "")
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class ChainReport:
    """The result of verifying a chain."""

    events: int
    last_seq: int
    last_hash: str
    problem: ChainProblem | None

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return self.problem is None


def verify_events(
    rows: Iterable[Mapping[str, Any]],
    *,
    head: tuple[int, str] | None = None,
    start: tuple[int, str] = (0, GENESIS_HASH),
) -> ChainReport:
    """Verify a sequence of events in order and name the first bad one.

    Args:
        rows: events as mappings with the hashed fields, ``data`` as canonical JSON text or
            as an object, and ``hash``; may carry ``line`` (their line in a file).
        head: the recorded (last seq, last hash), to detect events deleted from the end.
        start: the (seq, hash) just before the first row; the genesis by default.

    Returns:
        A report: the count and the first problem, if any.
    """
    expected_seq, prev = start[0] + 1, start[1]
    count = 0
    for row in rows:
        line = row.get("line")
        seq = row.get("seq")
        if seq != expected_seq:
            if isinstance(seq, int) and seq > expected_seq:
                reason = f"events {expected_seq}..{seq - 1} are missing (deleted)"
            else:
                reason = f"out of order: expected sequence {expected_seq}, found {seq}"
            return ChainReport(count, expected_seq - 1, prev, ChainProblem(_int(seq), line, reason))
        fields = dict(row)
        data = fields.get("data")
        if isinstance(data, str):
            try:
                fields["data"] = json.loads(data)
            except ValueError:
                problem = ChainProblem(seq, line, "data is not valid JSON (altered)")
                return ChainReport(count, seq - 1, prev, problem)
        if fields.get("prev_hash") != prev:
            problem = ChainProblem(
                seq, line, "prev_hash does not match the previous event (inserted or reordered)"
            )
            return ChainReport(count, seq - 1, prev, problem)
        try:
            recomputed = event_hash(fields)
        except (KeyError, TypeError, ValueError) as exc:
            return ChainReport(count, seq - 1, prev, ChainProblem(seq, line, f"malformed: {exc}"))
        if recomputed != fields.get("hash"):
            problem = ChainProblem(seq, line, "hash does not match its content (altered)")
            return ChainReport(count, seq - 1, prev, problem)
        prev = recomputed
        expected_seq += 1
        count += 1
    last_seq = expected_seq - 1
    if head is not None and (head[0], head[1]) != (last_seq, prev):
        if head[0] > last_seq:
            reason = f"events {last_seq + 1}..{head[0]} are missing (deleted from the end)"
        else:
            reason = "the chain head does not match the last event (altered)"
        return ChainReport(count, last_seq, prev, ChainProblem(last_seq + 1, None, reason))
    return ChainReport(count, last_seq, prev, None)


def _int(value: Any) -> int:
    return value if isinstance(value, int) else -1


_COLUMNS = (*HASHED_FIELDS, "hash")


def iter_stored_events(session: Session, *, batch: int = 5000) -> Iterator[dict[str, Any]]:
    """Stream every stored event in sequence order, in batches, as plain dicts."""
    columns = [getattr(TimelineEvent, name) for name in _COLUMNS]
    last = 0
    while True:
        rows = session.execute(
            select(*columns)
            .where(TimelineEvent.seq > last)
            .order_by(TimelineEvent.seq)
            .limit(batch)
        ).all()
        if not rows:
            return
        for row in rows:
            yield dict(zip(_COLUMNS, row, strict=True))
        last = rows[-1][0]


def verify_stored_chain(session: Session) -> ChainReport:
    """Verify the database's whole chain against its recorded head."""
    head = session.get(ChainHead, 1)
    recorded = (head.seq, head.hash) if head else (0, GENESIS_HASH)
    return verify_events(iter_stored_events(session), head=recorded)


def events_for_incident(session: Session, *, incident_id: int) -> list[TimelineEvent]:
    """Return an incident's events in order."""
    statement = (
        select(TimelineEvent)
        .where(TimelineEvent.incident_id == incident_id)
        .order_by(TimelineEvent.seq)
    )
    return list(session.exec(statement))
