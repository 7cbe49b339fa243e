"""Signed checkpoints of the audit chain, published outside the database.

Whoever can write the database can truncate the chain and rewind its head, or rewrite a suffix
and rehash it: the chain alone then still verifies. A checkpoint is a record of the chain's head
(sequence number and hash), the time, and the previous checkpoint's hash, signed with an
Ed25519 key that the database's writers do not hold, and published to sinks they cannot edit
(an append-only file on a WORM mount, a webhook). ``rearguard audit verify --checkpoints``
then checks the database against every published checkpoint.

A checkpoint line is canonical JSON (:func:`rearguard.models.audit.chain.canonical_json`)::

    {"format": "rearguard-checkpoint", "number", "seq", "hash", "time", "prev", "reason",
     "key", "hashes", "incidents", "signature"}

- ``number``: 1, 2, ...; ``prev``: the previous checkpoint's ``digest`` (64 zeros for the
  first), where ``digest`` is the sha256 of the canonical JSON of every field but
  ``signature``, and ``signature`` the base64 Ed25519 signature of those same bytes;
- ``key``: the first 16 hex digits of the sha256 of the raw public key, to say which key
  signed it;
- ``hashes``: the first 8 hex digits of each event's hash after the previous checkpoint's head
  up to this one's (when there are at most :data:`MAX_LISTED`), so a rewrite is located to the
  event, not only to the stretch;
- ``incidents``: for each incident with an event in that stretch, its events up to ``seq``:
  ``{"events", "runs": [[first, last], ...], "digest"}`` with ``digest`` the sha256 of the lines
  ``"<seq> <hash>\\n"`` of those events. An exported timeline carries a checkpoint holding its
  incident, so its events can be checked with the public key alone.

Before signing, the chain's stretch since the previous checkpoint is verified (and the previous
checkpoint's own signature), so a checkpoint never vouches for a history that was rewritten
before it was made.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Connection, Update, insert, update
from sqlalchemy import select as select_columns
from sqlmodel import Session, col, select

from rearguard.models.audit.chain import (
    GENESIS_HASH,
    ChainReport,
    canonical_json,
    format_ts,
    lock_chain,
    verify_stored_chain,
    verify_stored_stretch,
)
from rearguard.models.audit.keys import load_private_key
from rearguard.models.audit.slack_sink import SLACK_SINK, post_checkpoint, read_messages
from rearguard.models.backoff import backoff_s
from rearguard.models.config.audit import AuditSettings
from rearguard.models.config.notifications import SlackSettings
from rearguard.models.config.settings import Settings
from rearguard.models.db.engine import Database
from rearguard.models.db.tables import (
    AuditCheckpoint,
    ChainHead,
    CheckpointDelivery,
    CheckpointIncident,
    TimelineEvent,
    table_of,
)
from rearguard.models.errors import ConfigurationError, IntegrityViolation, UsageError

FORMAT = "rearguard-checkpoint"
MAX_LISTED = 10_000
HASH_PREFIX = 8
_EVENTS = table_of(TimelineEvent)
_DELIVERIES = table_of(CheckpointDelivery)
_log = logging.getLogger(__name__)


# -- keys -------------------------------------------------------------------------------------


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """Load the Ed25519 private key that signs checkpoints, refusing one others can read.

    Raises:
        ConfigurationError: the file is missing, readable by its group or others, or not an
            unencrypted Ed25519 private key.
    """
    return load_private_key(
        path,
        what="the signing key",
        hint="set [audit] signing_key to an Ed25519 key: openssl genpkey -algorithm ed25519",
    )


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Load an Ed25519 public key in PEM (``openssl pkey -in KEY.pem -pubout``).

    Raises:
        UsageError: the file cannot be read or holds no Ed25519 public key.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the public key {path}: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UsageError(
            f"{path} is not a PEM public key",
            hint="export it with: openssl pkey -in KEY.pem -pubout -out KEY.pub.pem",
        ) from exc
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"{path} is not an Ed25519 public key")
    return key


def key_id(public: Ed25519PublicKey) -> str:
    """The short name of a public key: 16 hex digits of the sha256 of its raw bytes."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


# -- the record -------------------------------------------------------------------------------


@dataclass(frozen=True)
class IncidentDigest:
    """One incident's events up to a checkpoint's head: their count, seq runs, digest, and
    their hash prefixes (when at most :data:`MAX_LISTED`)."""

    events: int
    runs: tuple[tuple[int, int], ...]
    digest: str
    hashes: str | None

    def as_json(self) -> dict[str, Any]:
        """The form a checkpoint line carries."""
        body: dict[str, Any] = {
            "events": self.events,
            "runs": [list(r) for r in self.runs],
            "digest": self.digest,
        }
        if self.hashes is not None:
            body["hashes"] = self.hashes
        return body

    def first_difference(self, other: IncidentDigest) -> tuple[int, str] | None:
        """The first event where ``other`` (a file's) differs from this (the signed one), and
        how: None when they agree."""
        if other.digest == self.digest:
            return None
        signed, given = _expand(self.runs), _expand(other.runs)
        for index, (want, got) in enumerate(zip(signed, given, strict=False)):
            if want != got:
                return (want, "withheld or deleted") if want < got else (got, "inserted")
            if self.hashes is not None and other.hashes is not None:
                span = slice(index * HASH_PREFIX, (index + 1) * HASH_PREFIX)
                if self.hashes[span] != other.hashes[span]:
                    return want, "another hash (rewritten and rehashed, or relabelled)"
        if len(signed) > len(given):
            return signed[len(given)], "withheld or deleted"
        if len(given) > len(signed):
            return given[len(signed)], "inserted"
        return signed[0] if signed else 0, "another hash (rewritten and rehashed, or relabelled)"


def _expand(runs: Sequence[tuple[int, int]]) -> list[int]:
    return [seq for first, last in runs for seq in range(first, last + 1)]


def incident_digest(pairs: Iterable[tuple[int, str]]) -> IncidentDigest:
    """Digest an incident's ``(seq, hash)`` pairs, in sequence order.

    The writer of a checkpoint and the verifier of an exported file both call this, so they
    agree by construction.
    """
    hasher = hashlib.sha256()
    runs: list[list[int]] = []
    prefixes: list[str] = []
    for seq, digest in pairs:
        hasher.update(f"{seq} {digest}\n".encode())
        if runs and runs[-1][1] == seq - 1:
            runs[-1][1] = seq
        else:
            runs.append([seq, seq])
        prefixes.append(digest[:HASH_PREFIX])
    listed = "".join(prefixes) if len(prefixes) <= MAX_LISTED else None
    return IncidentDigest(len(prefixes), tuple((a, b) for a, b in runs), hasher.hexdigest(), listed)


@dataclass(frozen=True)
class Checkpoint:
    """One signed checkpoint, parsed."""

    number: int
    seq: int
    hash: str
    time: str
    prev: str
    reason: str
    key: str
    hashes: str | None
    incidents: dict[int, IncidentDigest]
    signature: str
    digest: str = field(compare=False)
    payload: bytes = field(compare=False, repr=False)

    def line(self) -> str:
        """The published line (no newline)."""
        return canonical_json({**json.loads(self.payload), "signature": self.signature})

    def describe(self) -> str:
        """How the user sees it: number, head and time."""
        return f"checkpoint {self.number} (event {self.seq}, {self.time})"

    def verifies(self, public: Ed25519PublicKey) -> bool:
        """True when ``public`` signed exactly this payload."""
        try:
            public.verify(base64.b64decode(self.signature, validate=True), self.payload)
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True

    def listed_hash(self, seq: int, *, after: int) -> str | None:
        """The listed hash prefix of event ``seq`` (the stretch starts after seq ``after``)."""
        if self.hashes is None or not after < seq <= self.seq:
            return None
        start = (seq - after - 1) * HASH_PREFIX
        return self.hashes[start : start + HASH_PREFIX] or None


_FIELDS = {
    "format": str,
    "number": int,
    "seq": int,
    "hash": str,
    "time": str,
    "prev": str,
    "reason": str,
    "key": str,
    "signature": str,
}


def parse_checkpoint(record: Any) -> Checkpoint:
    """Parse one checkpoint object (a line of a sink, or an export's checkpoint record).

    Raises:
        ValueError: it is not a well-formed checkpoint; the message says what is wrong.
    """
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} record")
    for name, kind in _FIELDS.items():
        if type(record.get(name)) is not kind:
            raise ValueError(f"its {name!r} is missing or not a {kind.__name__}")
    hashes = record.get("hashes")
    if hashes is not None and (type(hashes) is not str or len(hashes) % HASH_PREFIX):
        raise ValueError("its 'hashes' is malformed")
    incidents: dict[int, IncidentDigest] = {}
    raw_incidents = record.get("incidents", {})
    if not isinstance(raw_incidents, dict):
        raise ValueError("its 'incidents' is not an object")
    for name, value in raw_incidents.items():
        try:
            runs = tuple((int(a), int(b)) for a, b in value["runs"])
            listed = value.get("hashes")
            incidents[int(name)] = IncidentDigest(
                int(value["events"]),
                runs,
                str(value["digest"]),
                None if listed is None else str(listed),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"its digest of incident {name} is malformed") from exc
    payload = canonical_json({k: v for k, v in record.items() if k != "signature"}).encode()
    return Checkpoint(
        number=record["number"],
        seq=record["seq"],
        hash=record["hash"],
        time=record["time"],
        prev=record["prev"],
        reason=record["reason"],
        key=record["key"],
        hashes=hashes,
        incidents=incidents,
        signature=record["signature"],
        digest=hashlib.sha256(payload).hexdigest(),
        payload=payload,
    )


def sign_checkpoint(
    key: Ed25519PrivateKey,
    *,
    number: int,
    head: tuple[int, str],
    prev: str,
    reason: str,
    hashes: str | None,
    incidents: dict[int, IncidentDigest],
    moment: datetime | None = None,
) -> Checkpoint:
    """Build and sign one checkpoint."""
    body: dict[str, Any] = {
        "format": FORMAT,
        "number": number,
        "seq": head[0],
        "hash": head[1],
        "time": format_ts(moment or datetime.now(UTC)),
        "prev": prev,
        "reason": reason,
        "key": key_id(key.public_key()),
        "incidents": {str(i): d.as_json() for i, d in sorted(incidents.items())},
    }
    if hashes is not None:
        body["hashes"] = hashes
    payload = canonical_json(body).encode()
    signature = base64.b64encode(key.sign(payload)).decode()
    return parse_checkpoint({**body, "signature": signature})


# -- making one -------------------------------------------------------------------------------


_CHECKPOINTS = table_of(AuditCheckpoint)


def _stored_checkpoint(connection: Connection, number: int | None = None) -> Checkpoint | None:
    statement = select(_CHECKPOINTS.c.record)
    if number is None:
        statement = statement.order_by(_CHECKPOINTS.c.number.desc()).limit(1)
    else:
        statement = statement.where(_CHECKPOINTS.c.number == number)
    text = connection.execute(statement).scalar()
    return None if text is None else parse_checkpoint(json.loads(text))


def make_checkpoint(*, db: Database, settings: AuditSettings, reason: str) -> Checkpoint | None:
    """Sign a checkpoint of the chain's head now and queue it for every sink.

    Nothing is made when the head has not moved since the last checkpoint (that one is
    returned). The chain lock is held while the head is read and the checkpoint stored, so
    checkpoints are numbered in head order.

    Args:
        db: the database.
        settings: the ``[audit]`` settings; ``signing_key`` must be set.
        reason: why (``incident 12 run ended``, ``every 1000 events``, ``rearguard audit
            checkpoint``).

    Returns:
        The new checkpoint (or the last one, when the head has not moved); None when the chain
        is empty.

    Raises:
        ConfigurationError: no signing key is configured, or it is unusable.
        IntegrityViolation: the chain since the previous checkpoint does not verify, or the
            stored previous checkpoint is not signed by this key.
    """
    if settings.signing_key is None:
        raise ConfigurationError(
            "no signing key: checkpoints are signed with [audit] signing_key",
            hint="openssl genpkey -algorithm ed25519 -out KEY.pem; chmod 600 KEY.pem",
        )
    key = load_signing_key(settings.signing_key)
    # Core statements on the transaction's connection, not ORM objects: at an incident's end
    # every millisecond counts (bench/bench_checkpoints.py).
    with db.transaction() as connection:
        lock_chain(connection)
        head_row = connection.execute(
            select(ChainHead.seq, ChainHead.hash).where(ChainHead.id == 1)
        ).first()
        if head_row is None:
            return None
        head = (head_row[0], head_row[1])
        previous = _stored_checkpoint(connection)
        if previous is not None and not previous.verifies(key.public_key()):
            raise IntegrityViolation(
                f"the stored {previous.describe()} is not signed by this key (altered)",
                hint="compare the database's checkpoints with a published sink",
            )
        if previous is not None and (previous.seq, previous.hash) == head:
            return previous
        if previous is not None and head[0] <= previous.seq:
            raise IntegrityViolation(
                f"not signing a checkpoint: the chain head (event {head[0]}) is not past the last "
                f"{previous.describe()}, which vouched for another head: truncated or rewritten",
                hint="run rearguard audit verify --checkpoints with a published sink",
            )
        start = (previous.seq, previous.hash) if previous else (0, GENESIS_HASH)
        hashes, touched = _stretch(connection, start=start, head=head)
        incidents = {i: _incident_digest(connection, i, upto=head[0]) for i in sorted(touched)}
        checkpoint = sign_checkpoint(
            key,
            number=previous.number + 1 if previous else 1,
            head=head,
            prev=previous.digest if previous else GENESIS_HASH,
            reason=reason,
            hashes=hashes,
            incidents=incidents,
        )
        number = checkpoint.number
        connection.execute(
            insert(_CHECKPOINTS).values(
                number=number, seq=checkpoint.seq, hash=checkpoint.digest, record=checkpoint.line()
            )
        )
        if settings.checkpoint_sinks:
            connection.execute(
                insert(_DELIVERIES),
                [
                    {"number": number, "sink": sink, "attempts": 0}
                    for sink in settings.checkpoint_sinks
                ],
            )
        if incidents:
            connection.execute(
                insert(table_of(CheckpointIncident)),
                [{"incident_id": i, "number": number} for i in incidents],
            )
    return checkpoint


def _stretch(
    connection: Connection, *, start: tuple[int, str], head: tuple[int, str]
) -> tuple[str | None, set[int]]:
    """Verify the events after ``start`` up to ``head``; their hash prefixes and incidents."""
    prefixes: list[str] = []
    touched: set[int] = set()

    def watched(rows: Iterator[Sequence[Any]]) -> Iterator[Sequence[Any]]:
        for row in rows:
            if len(prefixes) <= MAX_LISTED:
                prefixes.append(row[10][:HASH_PREFIX])
            if row[2] is not None:
                touched.add(row[2])
            yield row

    report = verify_stored_stretch(connection, start=start, watch=watched)
    if report.problem is not None:
        raise IntegrityViolation(
            f"not signing a checkpoint: the chain is broken at {report.problem.describe()}",
            hint="run rearguard audit verify",
        )
    listed = "".join(prefixes) if len(prefixes) <= MAX_LISTED else None
    return listed, touched


def _incident_digest(connection: Connection, incident_id: int, *, upto: int) -> IncidentDigest:
    rows = connection.execute(
        select(_EVENTS.c.seq, _EVENTS.c.hash)
        .where(_EVENTS.c.incident_id == incident_id, _EVENTS.c.seq <= upto)
        .order_by(_EVENTS.c.seq)
    )
    return incident_digest((seq, digest) for seq, digest in rows)


def checkpoint_due(*, db: Database, settings: Settings) -> str | None:
    """Why a checkpoint is due when ``checkpoint_every`` events were appended since the last
    one (``every N events``); None when none is, or no signing key is set."""
    every = settings.audit.checkpoint_every
    if not every or settings.audit.signing_key is None:
        return None
    with db.read_session() as session:
        head = session.get(ChainHead, 1)
        last = session.exec(
            select(AuditCheckpoint.seq).order_by(col(AuditCheckpoint.number).desc()).limit(1)
        ).first()
    if head is None or head.seq - (last or 0) < every:
        return None
    return f"every {every} events"


def latest_checkpoint_of_incident(session: Session, *, incident_id: int) -> Checkpoint | None:
    """The latest stored checkpoint holding an incident's digest (what its exports carry)."""
    number = session.exec(
        select(CheckpointIncident.number)
        .where(CheckpointIncident.incident_id == incident_id)
        .order_by(col(CheckpointIncident.number).desc())
        .limit(1)
    ).first()
    return None if number is None else _stored_checkpoint(session.connection(), number)


# -- publishing -------------------------------------------------------------------------------


LEASE_MARGIN_S = 60.0
"""A claimed delivery is held for the sink's timeout plus this, then free for another
publisher: its publisher died, or hangs on a disk (a re-publication is an identical line)."""


@dataclass(frozen=True)
class PublishReport:
    """What one publishing pass did: deliveries published, the sinks still failing, and the
    sinks it left alone (waiting out their back-off, or held by another publisher)."""

    published: int
    failing: dict[str, str]
    waiting: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Pending:
    """A delivery not yet published, as a publishing pass read it."""

    sink: str
    number: int
    attempts: int
    next_attempt_at: datetime | None
    lease_until: datetime | None
    record: str


def _is_network(sink: str) -> bool:
    return not sink.startswith("file://")


def publish_pending(*, db: Database, settings: Settings, due_only: bool = False) -> PublishReport:
    """Publish every pending checkpoint to its sinks, oldest first, in order per sink.

    Each delivery is claimed before it is published (one more attempt, a lease of the sink's
    timeout plus :data:`LEASE_MARGIN_S`), so two publishers (a playbook process's, the
    scheduler's, ``rearguard audit checkpoint``) never publish it at once; a sink stops at a
    delivery another publisher holds. A sink that fails keeps its checkpoints pending, records
    the failure, and waits ``[audit] retry_base_s`` (doubling up to ``retry_max_s``) before the
    automatic passes try it again. A sink is never sent a checkpoint before an older one still
    pending for it. File sinks go first: a local append never waits behind a network timeout.

    Args:
        db: the database.
        settings: the settings (``[audit]``, and ``[notifications.webhook]`` for the
            ``webhook`` sink).
        due_only: leave alone the sinks still waiting out their back-off (the automatic
            passes: after a checkpoint is made, the scheduler's); False tries every sink now
            (``rearguard audit checkpoint``).
    """
    sinks = settings.audit.checkpoint_sinks
    with db.read_session() as session:
        pending = (
            session.connection()
            .execute(
                select_columns(
                    _DELIVERIES.c.sink,
                    _DELIVERIES.c.number,
                    _DELIVERIES.c.attempts,
                    _DELIVERIES.c.next_attempt_at,
                    _DELIVERIES.c.lease_until,
                    _CHECKPOINTS.c.record,
                )
                .join(_CHECKPOINTS, _CHECKPOINTS.c.number == _DELIVERIES.c.number)
                .where(_DELIVERIES.c.published_at.is_(None))
                .order_by(_DELIVERIES.c.number)
            )
            .all()
        )
    by_sink: dict[str, list[_Pending]] = {}
    for found in pending:
        if found.sink in sinks:
            by_sink.setdefault(found.sink, []).append(_Pending(*found))
    published = 0
    failing: dict[str, str] = {}
    waiting: list[str] = []
    for sink in sorted(by_sink, key=_is_network):
        for row in by_sink[sink]:
            now = datetime.now(UTC)
            held = row.lease_until is not None and row.lease_until > now
            backing_off = due_only and row.next_attempt_at is not None and row.next_attempt_at > now
            if held or backing_off or not _claim(db, row, settings=settings.audit, now=now):
                waiting.append(sink)
                break
            error = _publish_one(sink, row.record, settings=settings)
            _record_attempt(db, row, error=error, settings=settings.audit)
            if error is not None:
                failing[sink] = error
                break
            published += 1
    return PublishReport(published, failing, tuple(waiting))


def _claim(db: Database, row: _Pending, *, settings: AuditSettings, now: datetime) -> bool:
    """Claim a delivery for this publisher: False when another claimed it first."""
    lease = timedelta(seconds=settings.publish_timeout_s + LEASE_MARGIN_S)
    statement = (
        update(_DELIVERIES)
        .where(
            _DELIVERIES.c.number == row.number,
            _DELIVERIES.c.sink == row.sink,
            _DELIVERIES.c.attempts == row.attempts,
            _DELIVERIES.c.published_at.is_(None),
        )
        .values(attempts=row.attempts + 1, lease_until=now + lease)
    )
    return _commit_unflushed(db, statement) == 1


def _record_attempt(
    db: Database, row: _Pending, *, error: str | None, settings: AuditSettings
) -> None:
    """Record how a claimed delivery went: published, or failed and when to retry it."""
    now = datetime.now(UTC)
    values: dict[str, Any] = {"lease_until": None, "last_error": error}
    if error is None:
        values.update(published_at=now, next_attempt_at=None)
    else:
        wait_s = backoff_s(
            row.attempts + 1, base_s=settings.retry_base_s, max_s=settings.retry_max_s
        )
        values["next_attempt_at"] = now + timedelta(seconds=wait_s)
    _commit_unflushed(
        db,
        update(_DELIVERIES)
        .where(_DELIVERIES.c.number == row.number, _DELIVERIES.c.sink == row.sink)
        .values(**values),
    )


def _commit_unflushed(db: Database, statement: Update) -> int:
    """Run one update of a delivery in its own transaction, without waiting for the disk;
    the number of rows it changed.

    The checkpoint itself was committed durably before it was published. If a claim or a
    mark is lost in a crash, the checkpoint is published again: an identical line, which the
    verifier accepts. So these commits skip their fsync (SQLite ``synchronous = NORMAL``,
    PostgreSQL ``synchronous_commit = off``): two disk flushes fewer per delivery.
    """
    with db.engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        driver = connection.connection.driver_connection
        assert driver is not None  # a connection that is open has its driver's connection
        if sqlite:  # SQLite refuses to change it inside a transaction: before BEGIN
            driver.execute("PRAGMA synchronous = NORMAL")
        try:
            with connection.begin():
                if not sqlite:
                    connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
                return connection.execute(statement).rowcount
        finally:
            if sqlite:
                driver.execute("PRAGMA synchronous = FULL")


def _publish_one(sink: str, record: str, *, settings: Settings) -> str | None:
    """Publish one line to one sink; the error, or None."""
    if sink.startswith("file://"):
        return _append_line(Path(sink[len("file://") :]), record)
    if sink.startswith(SLACK_SINK):
        return post_checkpoint(
            record,
            channel=sink[len(SLACK_SINK) :],
            slack=settings.slack,
            timeout_s=settings.audit.publish_timeout_s,
        )
    if sink == "webhook":
        url, secret = settings.webhook.url, settings.webhook.secret
        if url is None or secret is None:
            return "the webhook sink needs [notifications.webhook] url and secret"
    else:
        url, secret = sink, settings.audit.webhook_secret
        if secret is None:
            return "an http(s) checkpoint sink needs [audit] webhook_secret"
    timeout_s = settings.audit.publish_timeout_s
    return _post(url, secret.get_secret_value(), record, timeout_s=timeout_s)


def _append_line(path: Path, record: str) -> str | None:
    """Append one line durably (``O_APPEND``, fdatasync): a WORM mount only ever grows."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        return f"cannot open {path}: {exc.strerror}"
    try:
        os.write(descriptor, (record + "\n").encode())
        os.fdatasync(descriptor)
    except OSError as exc:
        return f"cannot append to {path}: {exc.strerror}"
    finally:
        os.close(descriptor)
    return None


def _post(url: str, secret: str, record: str, *, timeout_s: float) -> str | None:
    """POST a checkpoint line, signed as the webhook channel signs its messages."""
    import httpx  # lazy: CLI start-up (httpx)

    from rearguard.notifications.channels.webhook import (  # lazy: CLI start-up (httpx)
        EVENT_HEADER,
        IDEMPOTENCY_HEADER,
        SIGNATURE_HEADER,
        TIMESTAMP_HEADER,
        sign,
    )

    body = record.encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
        IDEMPOTENCY_HEADER: "checkpoint-" + hashlib.sha256(body).hexdigest()[:32],
        EVENT_HEADER: "audit.checkpoint",
    }
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    if not 200 <= response.status_code < 300:
        return f"HTTP {response.status_code}"
    return None


@dataclass(frozen=True)
class CheckpointPass:
    """What one background pass did: the checkpoint made (None when none was asked for, or
    it could not be made), its publication, and the error that stopped it."""

    checkpoint: Checkpoint | None
    report: PublishReport | None
    error: str | None = None


def checkpoint_and_publish(
    *, db: Database, settings: Settings, reason: str | None
) -> CheckpointPass:
    """Make a checkpoint (when ``reason`` is given) and publish what is due: one pass of a
    runtime's background checkpointer (:mod:`rearguard.models.audit.checkpoint_worker`).

    Never raises: what fails is logged, and kept for the next pass (a checkpoint not made is
    covered by the next one made; a delivery not published is retried after its back-off).
    """
    checkpoint = None
    try:
        if reason is not None:
            checkpoint = make_checkpoint(db=db, settings=settings.audit, reason=reason)
        report = publish_pending(db=db, settings=settings, due_only=True)
    except Exception as exc:  # a background pass only logs; the next one retries
        message = str(getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}")
        _log.warning("audit checkpoint not made or not published: %s", message)
        return CheckpointPass(checkpoint, None, message)
    for sink, error in report.failing.items():
        _log.warning("audit checkpoint sink %s: %s (kept, retried later)", sink, error)
    return CheckpointPass(checkpoint, report)


# -- checking the chain against published checkpoints ------------------------------------------


@dataclass(frozen=True)
class CheckpointProblem:
    """The first thing wrong: in the checkpoints themselves, or between them and the chain."""

    reason: str
    line: int | None = None
    number: int | None = None
    first_seq: int | None = None


@dataclass(frozen=True)
class CheckpointReport:
    """The result of checking the chain against published checkpoints."""

    chain: ChainReport
    problem: CheckpointProblem | None

    @property
    def ok(self) -> bool:
        """True when the chain verifies and agrees with every checkpoint."""
        return self.problem is None and self.chain.ok


def read_checkpoint_lines(
    source: str, *, slack: SlackSettings | None = None, timeout_s: float = 30.0
) -> str:
    """The text of a checkpoint sink: a file path, ``file://PATH``, an http(s) URL, or
    ``slack:CHANNEL`` (the channel's checkpoint messages, oldest first; with ``slack``).

    Raises:
        UsageError: it cannot be read.
    """
    if source.startswith(SLACK_SINK):
        texts = read_messages(
            source[len(SLACK_SINK) :], slack=slack or SlackSettings(), timeout_s=timeout_s
        )
        return "".join(text + "\n" for text in texts if _is_checkpoint_text(text))
    if source.startswith(("http://", "https://")):
        import httpx  # lazy: CLI start-up (httpx)

        try:
            response = httpx.get(source, timeout=timeout_s, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise UsageError(f"cannot fetch {source}: {exc}") from exc
        if response.status_code != 200:
            raise UsageError(f"cannot fetch {source}: HTTP {response.status_code}")
        return response.text
    path = Path(source[len("file://") :] if source.startswith("file://") else source)
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UsageError(f"cannot read {path}: {reason}") from exc


def _is_checkpoint_text(text: str) -> bool:
    """Whether a message's text is a checkpoint line (a channel holds people's messages too)."""
    if not text.startswith("{"):
        return False
    try:
        record = json.loads(text)
    except ValueError:
        return False
    return isinstance(record, dict) and record.get("format") == FORMAT


def parse_checkpoint_lines(
    text: str, public: Ed25519PublicKey
) -> tuple[list[tuple[int, Checkpoint]], CheckpointProblem | None]:
    """Parse and check a sink's lines: each signed by ``public``, each following the one before.

    An exact repeat of a line (published twice by a retry) is skipped.

    Returns:
        The checkpoints with their line numbers, in order, and the first problem (the
        checkpoints before it are returned).
    """
    found: list[tuple[int, Checkpoint]] = []
    expected_key = key_id(public)
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if number == len(lines):  # the text does not end with a newline: cut mid-line
            return found, CheckpointProblem(
                f"line {number} is cut short (the file was truncated mid-line)", line=number
            )
        try:
            checkpoint = parse_checkpoint(json.loads(line))
        except ValueError as exc:
            return found, CheckpointProblem(f"line {number} is not a checkpoint: {exc}", number)
        if found and checkpoint.line() == found[-1][1].line():
            continue
        if not checkpoint.verifies(public):
            why = (
                f"signed by another key ({checkpoint.key}, not {expected_key})"
                if checkpoint.key != expected_key
                else "not signed by this key: its content does not match its signature (altered)"
            )
            reason = f"{checkpoint.describe()} at line {number} is {why}"
            return found, CheckpointProblem(reason, line=number, number=checkpoint.number)
        if found:
            before_line, before = found[-1]
            if checkpoint.number == before.number:
                return found, CheckpointProblem(
                    f"{checkpoint.describe()} at line {number} differs from the one at line "
                    f"{before_line} (a fork: the database's checkpoints were rewound)",
                    line=number,
                    number=checkpoint.number,
                )
            if (
                checkpoint.number != before.number + 1
                or checkpoint.prev != before.digest
                or checkpoint.seq < before.seq
            ):
                return found, CheckpointProblem(
                    f"{checkpoint.describe()} at line {number} does not follow checkpoint "
                    f"{before.number} at line {before_line} (reordered, or one removed)",
                    line=number,
                    number=checkpoint.number,
                )
        found.append((number, checkpoint))
    if not found:
        raise UsageError("no checkpoints in the given source")
    return found, None


def check_against_checkpoints(
    session: Session, checkpoints: Sequence[tuple[int, Checkpoint]]
) -> CheckpointReport:
    """Verify the stored chain, then check it holds every checkpoint's head.

    The first checkpoint the database disagrees with is named, with the first event that
    disagrees: past the database's last event (truncated or wiped), or the first whose hash
    differs from the one the checkpoint lists (rewritten, rehashed or renumbered); when the
    checkpoint lists no hashes, the first event after the last checkpoint that still agrees.
    """
    chain = verify_stored_chain(session)  # reads one snapshot from here on
    connection = session.connection()
    stored: dict[int, str] = {}
    wanted = sorted({c.seq for _, c in checkpoints})
    for index in range(0, len(wanted), 500):
        chunk = wanted[index : index + 500]
        rows = connection.execute(
            select(_EVENTS.c.seq, _EVENTS.c.hash).where(_EVENTS.c.seq.in_(chunk))
        )
        stored.update((seq, digest) for seq, digest in rows)
    last_stored = connection.execute(select(_EVENTS.c.seq).order_by(_EVENTS.c.seq.desc())).first()
    top = last_stored[0] if last_stored else 0
    agreed = (0, GENESIS_HASH)
    for line, checkpoint in checkpoints:
        found = stored.get(checkpoint.seq)
        if found == checkpoint.hash:
            agreed = (checkpoint.seq, checkpoint.hash)
            continue
        problem = _disagreement(session, checkpoint, line, found=found, top=top, agreed=agreed)
        return CheckpointReport(chain, problem)
    return CheckpointReport(chain, None)


def _disagreement(
    session: Session,
    checkpoint: Checkpoint,
    line: int,
    *,
    found: str | None,
    top: int,
    agreed: tuple[int, str],
) -> CheckpointProblem:
    where = f"{checkpoint.describe()} at line {line}"
    if found is None and checkpoint.seq > top:
        what = "wiped: the database holds no events" if top == 0 else "truncated"
        reason = (
            f"{where} vouches for events up to {checkpoint.seq}; events {top + 1}.."
            f"{checkpoint.seq} are missing ({what})"
        )
        return CheckpointProblem(reason, line, checkpoint.number, top + 1)
    if found is None:
        reason = f"{where}: the database has no event {checkpoint.seq} (deleted)"
        return CheckpointProblem(reason, line, checkpoint.number, checkpoint.seq)
    first = _first_listed_difference(session, checkpoint)
    if first is not None:
        reason = (
            f"{where}: event {first} is not the one it vouches for (rewritten, rehashed or "
            "renumbered)"
        )
        return CheckpointProblem(reason, line, checkpoint.number, first)
    reason = (
        f"{where}: the database's event {checkpoint.seq} has another hash; an event in "
        f"{agreed[0] + 1}..{checkpoint.seq} was rewritten, rehashed or renumbered (the last "
        f"checkpoint that agrees ends at event {agreed[0]})"
    )
    return CheckpointProblem(reason, line, checkpoint.number, agreed[0] + 1)


def _first_listed_difference(session: Session, checkpoint: Checkpoint) -> int | None:
    """The first event of the checkpoint's stretch whose stored hash is not the listed one."""
    if checkpoint.hashes is None:
        return None
    count = len(checkpoint.hashes) // HASH_PREFIX
    after = checkpoint.seq - count
    result = session.connection().execute(
        select(_EVENTS.c.seq, _EVENTS.c.hash).where(
            _EVENTS.c.seq > after, _EVENTS.c.seq <= checkpoint.seq
        )
    )
    rows = {seq: digest for seq, digest in result}
    for seq in range(after + 1, checkpoint.seq + 1):
        stored = rows.get(seq)
        if stored is None or stored[:HASH_PREFIX] != checkpoint.listed_hash(seq, after=after):
            return seq
    return checkpoint.seq
