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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection
from sqlmodel import Session, col, select

from rearguard.models.audit.redaction import (
    json_text_may_hold_secret,
    redact_optional,
    redact_value,
)
from rearguard.models.db.tables import ChainHead, TimelineEvent, table_of
from rearguard.models.enums import EventKind

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
STORED_COLUMNS = (*HASHED_FIELDS, "hash")
"""An event's stored columns, in the order the verifiers read them."""
_ROW = (*STORED_COLUMNS, "line")
# What that encoder does to a str (ensure_ascii=False), used by _stored_event_hash.
_encode_str = json.encoder.encode_basestring

_HEAD = table_of(ChainHead)
_SELECT_HEAD = select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == 1)


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


@dataclass(frozen=True)
class AppendedEvent:
    """What :func:`append_event` stored: the event's place and hash in the chain."""

    seq: int
    ts: str
    hash: str


def append_event(
    target: Session | Connection,
    *,
    kind: EventKind | str,
    action: str,
    actor: str,
    incident_id: int | None = None,
    asset: str | None = None,
    version: str | None = None,
    data: Mapping[str, Any] | None = None,
) -> AppendedEvent:
    """Append one event to the chain inside the caller's transaction.

    The caller's transaction holds the chain lock from here until it commits, so the event and
    the state change it records land together or not at all.

    Args:
        target: an open write session, or a connection in a write transaction
            (``Database.transaction()``: the lighter path for writers that only log).
        kind: intent, outcome, decision, notification or state.
        action: what happened, e.g. ``rollback`` or ``incident.opened``.
        actor: who did it (a person, ``playbook:<name>``, ``cli``).
        incident_id: the incident the event belongs to, if any.
        asset: the asset concerned, if any.
        version: the version label concerned, if any.
        data: further facts; must be JSON-serialisable.

    Everything but the sequence and the kind passes through the one redaction
    (:mod:`rearguard.models.audit.redaction`) first: whatever a caller forgot, no secret that
    redaction recognises enters the chain.

    Returns:
        The event's sequence number, timestamp and hash.
    """
    clean = dict(data or {})
    data_text = canonical_json(clean)
    if json_text_may_hold_secret(data_text):
        clean = redact_value(clean)
        data_text = canonical_json(clean)
    connection = target.connection() if isinstance(target, Session) else target
    dialect = connection.dialect.name
    # The driver's own cursor, in the session's transaction: this runs for every event, and
    # SQLAlchemy's statement machinery costs as much as the statements themselves
    # (bench/bench_audit_chain.py). Same connection and transaction, so the same guarantees.
    cursor = _driver_connection(connection).cursor()
    sql = _SQL_BY_DIALECT["postgresql" if dialect == "postgresql" else "sqlite"]
    try:
        if dialect == "postgresql":
            cursor.execute(sql.lock, (_PG_LOCK_KEY,))
        # SQLite: every write transaction already began with BEGIN IMMEDIATE (database.py).
        cursor.execute(sql.head)
        head = cursor.fetchone()
        seq, prev_hash = (head[0], head[1]) if head else (0, GENESIS_HASH)
        fields: dict[str, Any] = {
            "seq": seq + 1,
            "ts": format_ts(datetime.now(UTC)),
            "incident_id": incident_id,
            "kind": str(kind),
            "action": redact_optional(action),
            "actor": redact_optional(actor),
            "asset": redact_optional(asset),
            "version": redact_optional(version),
            "data": clean,
            "prev_hash": prev_hash,
        }
        digest = event_hash(fields)
        cursor.execute(
            sql.insert_event,
            (
                *(fields[name] for name in HASHED_FIELDS if name != "data"),
                data_text,
                digest,
            ),
        )
        cursor.execute(sql.update_head if head else sql.insert_head, (fields["seq"], digest))
    finally:
        cursor.close()
    return AppendedEvent(fields["seq"], fields["ts"], digest)


def lock_chain(connection: Connection) -> None:
    """Take the chain lock now, for a transaction that appends events after other writes.

    Taking it first keeps one lock order for every writer: a transaction that first inserted
    rows and only then waited for the chain could deadlock with one holding the chain.
    SQLite's write transactions already hold the database lock from ``BEGIN IMMEDIATE``.
    """
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK_KEY,))


@dataclass(frozen=True)
class _ChainSql:
    lock: str
    head: str
    insert_event: str
    update_head: str
    insert_head: str


_SQLITE_SQL = _ChainSql(
    lock="SELECT pg_advisory_xact_lock(?)",
    head="SELECT seq, hash FROM chain_head WHERE id = 1",
    insert_event=(
        "INSERT INTO timeline_event (seq, ts, incident_id, kind, action, actor, asset, version,"
        " prev_hash, data, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    update_head="UPDATE chain_head SET seq = ?, hash = ? WHERE id = 1",
    insert_head="INSERT INTO chain_head (id, seq, hash) VALUES (1, ?, ?)",
)
# psycopg's placeholder is %s; nothing else differs.
_SQL_BY_DIALECT = {
    "sqlite": _SQLITE_SQL,
    "postgresql": _ChainSql(
        *(getattr(_SQLITE_SQL, f).replace("?", "%s") for f in _ChainSql.__dataclass_fields__)
    ),
}


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
    values = (tuple(row.get(name) for name in _ROW) for row in rows)
    return _verify_rows(values, head=head, start=start)


def _verify_rows(
    rows: Iterable[Sequence[Any]], *, head: tuple[int, str] | None, start: tuple[int, str]
) -> ChainReport:
    """verify_events on rows as value sequences in ``_ROW`` order (``line`` optional).

    Positional rows let the stored chain be verified straight from the database cursor's rows,
    without building a dict per event.
    """
    expected_seq, prev = start[0] + 1, start[1]
    count = 0
    for row in rows:
        seq = row[0]
        if seq != expected_seq:
            if isinstance(seq, int) and seq > expected_seq:
                reason = f"events {expected_seq}..{seq - 1} are missing (deleted)"
            else:
                reason = f"out of order: expected sequence {expected_seq}, found {seq}"
            problem = ChainProblem(_int(seq), _line(row), reason)
            return ChainReport(count, expected_seq - 1, prev, problem)
        if row[9] != prev:
            problem = ChainProblem(
                seq,
                _line(row),
                "prev_hash does not match the previous event (inserted or reordered)",
            )
            return ChainReport(count, seq - 1, prev, problem)
        stored = row[10]
        data = row[8]
        # Stored data must be its canonical text byte for byte: a non-canonical text (a
        # duplicate key, another number spelling) parses differently in other readers
        # (SQLite's json_extract keeps the first duplicate, json.loads the last).
        if type(data) is str and data != "{}" and (defect := _non_canonical(data)):
            return ChainReport(count, seq - 1, prev, ChainProblem(seq, _line(row), defect))
        if _stored_event_hash(row) != stored:
            mismatch = _recheck(row)
            if mismatch is not None:
                return ChainReport(count, seq - 1, prev, mismatch)
        prev = stored
        expected_seq += 1
        count += 1
    last_seq = expected_seq - 1
    if head is not None and (head[0], head[1]) != (last_seq, prev):
        if head[0] > last_seq:
            first_bad = last_seq + 1
            reason = f"events {first_bad}..{head[0]} are missing (deleted from the end)"
        elif head[0] < last_seq:
            first_bad = head[0] + 1
            reason = f"events {first_bad}..{last_seq} are past the recorded chain head (appended)"
        else:
            first_bad = last_seq
            reason = "the chain head does not match the last event (altered)"
        return ChainReport(count, last_seq, prev, ChainProblem(first_bad, None, reason))
    return ChainReport(count, last_seq, prev, None)


def verify_picked_events(
    rows: Iterable[Sequence[Any]], *, head: tuple[int, str] | None
) -> ChainProblem | None:
    """Verify events picked out of the stored chain one by one; name the first bad one.

    Each event's stored content must hash to its stored hash (its ``data`` in canonical form),
    and the event stored at the next sequence number must link to it (its ``prev_hash``); the
    last event of the chain, which nothing follows, must be the recorded chain head.

    This proves that each picked event is stored as it was appended and that the chain after
    it commits to it: an event edited in place, or inserted without rehashing what follows,
    is named. It does not prove that no other event is missing or altered (that is
    :func:`verify_stored_chain`), nor anything against a rewrite that recomputed every hash
    after it (that is what signed checkpoints are for).

    Args:
        rows: the events, each as its ``STORED_COLUMNS`` values followed by the ``prev_hash``
            of the event stored at the next sequence number (None when there is none).
        head: the recorded (last seq, last hash).

    Returns:
        The first problem, or None.
    """
    for row in rows:
        seq, stored, follower = row[0], row[10], row[11]
        # The stored text itself must hash to the stored hash: then it is the very text that
        # was hashed when appended (canonical, as append_event writes it), and no parse is
        # needed. Otherwise say why: altered, or a non-canonical text (one that parses to the
        # original, such as a duplicate key, which other readers would read differently).
        if _stored_event_hash(row) != stored:
            return _recheck(row[:11]) or ChainProblem(
                seq, None, _non_canonical(row[8]) or "hash does not match its content (altered)"
            )
        if follower is None:
            if head != (seq, stored):
                return ChainProblem(
                    seq, None, "no event follows it, yet it is not the recorded chain head"
                )
        elif follower != stored:
            return ChainProblem(
                seq, None, "the next event does not link to it (it or the next was altered)"
            )
    return None


def _non_canonical(data: str) -> str | None:
    """Why a stored ``data`` text is not the canonical form of what it parses to, or None."""
    try:
        parsed = json.loads(data)
    except ValueError:
        return "data is not valid JSON (altered)"
    if _dumps(parsed) != data:
        return "data is not stored in its canonical form (a duplicate key or re-written: altered)"
    return None


def _stored_event_hash(row: Sequence[Any]) -> str | None:
    """An event's hash from its stored fields, its ``data`` text spliced in without parsing.

    The canonical JSON of the hashed fields, written out in its sorted key order, with the
    stored data text in place of the re-serialised data: the same bytes as
    :func:`event_hash` when that text is canonical, as ``append_event`` stores it. Verifying a
    chain this way skips a ``json.loads`` and a ``json.dumps`` per event, most of the cost.
    Returns None when a field has a type this shortcut does not write.
    """
    seq, ts, incident_id, kind, action, actor, asset, version, data, prev_hash = row[:10]
    if (
        type(seq) is not int
        or (incident_id is not None and type(incident_id) is not int)
        or type(data) is not str
    ):
        return None
    try:
        text_form = (
            f'{{"action":{_encode_str(action)},"actor":{_encode_str(actor)},'
            f'"asset":{"null" if asset is None else _encode_str(asset)},"data":{data},'
            f'"incident_id":{"null" if incident_id is None else incident_id},'
            f'"kind":{_encode_str(kind)},"prev_hash":{_encode_str(prev_hash)},'
            f'"seq":{seq},"ts":{_encode_str(ts)},'
            f'"version":{"null" if version is None else _encode_str(version)}}}'
        )
    except TypeError:  # a field missing, or not a string where one belongs
        return None
    return hashlib.sha256(text_form.encode("utf-8")).hexdigest()


def _recheck(row: Sequence[Any]) -> ChainProblem | None:
    """Verify one event's hash the full way: parse ``data``, re-serialise, hash.

    Reached when the shortcut cannot decide (``data`` given as an object, a stored text that is
    valid but not canonical, or a real mismatch), and says which problem it is.
    """
    fields = dict(zip(STORED_COLUMNS, row[:11], strict=True))
    seq, line = fields["seq"], _line(row)
    if isinstance(fields["data"], str):
        try:
            fields["data"] = json.loads(fields["data"])
        except ValueError:
            return ChainProblem(seq, line, "data is not valid JSON (altered)")
    try:
        recomputed = event_hash(fields)
    except (TypeError, ValueError) as exc:
        return ChainProblem(seq, line, f"malformed: {exc}")
    if recomputed != fields["hash"]:
        return ChainProblem(seq, line, "hash does not match its content (altered)")
    return None


def _line(row: Sequence[Any]) -> int | None:
    return row[11] if len(row) > 11 else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) else -1


def iter_stored_events(session: Session, *, batch: int = 5000) -> Iterator[dict[str, Any]]:
    """Stream every stored event in sequence order, in batches, as plain dicts."""
    for row in _stored_rows(session, batch=batch):
        yield dict(zip(STORED_COLUMNS, row, strict=True))


_SELECT_BATCH = (
    f"SELECT {', '.join(STORED_COLUMNS)} FROM timeline_event WHERE seq > ? ORDER BY seq LIMIT ?"  # noqa: S608 - constant column names
)


def _stored_rows(
    target: Session | Connection, *, after: int = 0, batch: int = 5000
) -> Iterator[Sequence[Any]]:
    """The stored events past seq ``after`` in sequence order, as ``STORED_COLUMNS`` rows."""
    connection = target.connection() if isinstance(target, Session) else target
    sql = (
        _SELECT_BATCH
        if connection.dialect.name != "postgresql"
        else _SELECT_BATCH.replace("?", "%s")
    )
    # The driver's cursor, in keyset-paginated batches: bounded memory on any chain length,
    # and no SQLAlchemy row processing, which costs more than hashing the row.
    cursor = _driver_connection(connection).cursor()
    try:
        last = after
        while True:
            cursor.execute(sql, (last, batch))
            rows = cursor.fetchall()
            if not rows:
                return
            yield from rows
            last = rows[-1][0]
    finally:
        cursor.close()


def _driver_connection(connection: Connection) -> Any:
    """The DBAPI driver's own connection under a SQLAlchemy connection in use."""
    driver = connection.connection.driver_connection
    assert driver is not None  # a connection that is open has its driver's connection
    return driver


def read_snapshot(session: Session) -> None:
    """Make the rest of a read session's transaction one snapshot (call before any read).

    SQLite's read transaction is one already; PostgreSQL's default (READ COMMITTED) would let
    events appended during a long verification appear half-way, as a false alarm.
    """
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        return
    from psycopg.pq import TransactionStatus  # lazy: optional extra rearguard[postgres]

    # Only a transaction that has run nothing yet can change its isolation; a caller that
    # already read in it keeps READ COMMITTED.
    if _driver_connection(connection).info.transaction_status == TransactionStatus.IDLE:
        connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")


def recorded_head(target: Session | Connection) -> tuple[int, str]:
    """The chain head as recorded: (last seq, last hash), or the genesis when empty."""
    connection = target.connection() if isinstance(target, Session) else target
    head = connection.execute(_SELECT_HEAD).first()
    return (head[0], head[1]) if head else (0, GENESIS_HASH)


_SELECT_BOUNDS = "SELECT count(*), min(seq) FROM timeline_event"


def verify_stored_chain(session: Session) -> ChainReport:
    """Verify the database's whole chain against its recorded head.

    Besides each event's hash and link, the chain must start at sequence 1 and hold exactly
    the events the walk verified: an event stored at ``seq <= 0`` (which the walk from 1 never
    reaches, but the timeline views would show) is a problem named by its sequence number.
    """
    read_snapshot(session)
    connection = session.connection()
    count, lowest = connection.exec_driver_sql(_SELECT_BOUNDS).one()
    recorded = recorded_head(connection)
    if lowest is not None and lowest < 1:
        reason = (
            f"an event is stored at sequence {lowest}, before the chain's first (1): "
            "inserted outside the chain"
        )
        return ChainReport(0, 0, GENESIS_HASH, ChainProblem(lowest, None, reason))
    report = _verify_rows(_stored_rows(session), head=recorded, start=(0, GENESIS_HASH))
    if report.ok and report.events != count:
        reason = f"the table holds {count} events, the chain {report.events}"
        return ChainReport(
            report.events,
            report.last_seq,
            report.last_hash,
            ChainProblem(report.last_seq, None, reason),
        )
    return report


def verify_stored_stretch(
    target: Session | Connection,
    *,
    start: tuple[int, str],
    watch: Callable[[Iterator[Sequence[Any]]], Iterator[Sequence[Any]]] | None = None,
) -> ChainReport:
    """Verify the stored events after ``start`` (a seq and its hash) up to the recorded head.

    Used before signing a checkpoint: the stretch since the previous checkpoint must link to
    it, so a checkpoint never vouches for a rewritten history.

    Args:
        target: a session or connection (the checkpoint's transaction, holding the chain lock).
        start: the sequence number and hash the stretch follows.
        watch: a pass-through over the rows (in ``HASHED_FIELDS`` order, then ``hash``), for a
            caller that gathers something from them on the same pass.
    """
    connection = target.connection() if isinstance(target, Session) else target
    rows = _stored_rows(connection, after=start[0])
    return _verify_rows(watch(rows) if watch else rows, head=recorded_head(connection), start=start)


def events_for_incident(session: Session, *, incident_id: int) -> list[TimelineEvent]:
    """Return an incident's events in order."""
    statement = (
        select(TimelineEvent)
        .where(TimelineEvent.incident_id == incident_id)
        .order_by(col(TimelineEvent.seq))
    )
    return list(session.exec(statement))
