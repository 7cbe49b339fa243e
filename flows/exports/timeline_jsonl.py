"""The ``jsonl`` export: an incident's timeline, verifiable offline, and its verifier.

One JSON object per line, keys sorted, compact separators, UTF-8:

- line 1, ``{"record": "header", ...}``: the format, the incident, the first event's sequence
  number and ``prev_hash`` (where the exported stretch of the chain starts), and how the hash
  is computed;
- ``{"record": "event", ...}``: one timeline event with every hashed field (``seq, ts,
  incident_id, kind, action, actor, asset, version, data, prev_hash``) and its ``hash``;
- ``{"record": "gap", "from_seq", "to_seq", "incidents", "prev_hash", "hash"}``: events of the
  one database chain that belong to no part of this incident, withheld; ``incidents`` names the
  incidents they belong to (``null`` for events of none: registrations, approvals); the gap
  carries the hash before it and the hash of its last event, so the chain still links. A file
  alone cannot prove a gap honest: ``--against-database`` checks it;
- ``{"record": "redacted", ...}``: an event whose content held a secret, exported with the
  secret replaced: its ``hash`` is the stored one, which its redacted content no longer matches,
  so verification checks its place in the chain but cannot check its content;
- last, ``{"record": "end", "events", "redacted", "gaps", "last_seq", "last_hash"}``, so a
  truncated file is detected.

An edited event no longer matches its hash; a deleted or reordered line breaks the sequence or
the ``prev_hash`` links. The last hash can be compared with the live database's chain
(``rearguard incident show ID --json``) to anchor the file, and gap and redacted records
checked against the database (``audit verify --file F --against-database``): see the README.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import func, select

from rearguard.flows.exports.facts import EventRow, Timeline, incidents_between, iter_rows
from rearguard.models import bounded_json
from rearguard.models.audit.chain import HASHED_FIELDS, ChainProblem, canonical_json, verify_events
from rearguard.models.audit.checkpoints import (
    incident_digest,
    key_id,
    latest_checkpoint_of_incident,
    parse_checkpoint,
)
from rearguard.models.audit.redaction import json_text_may_hold_secret, redact_value
from rearguard.models.db.engine import Database
from rearguard.models.db.tables import TimelineEvent, table_of
from rearguard.models.errors import UsageError

FORMAT = "rearguard-timeline"
FORMAT_VERSION = 2
HASH_RULE = (
    "hash = sha256 of the UTF-8 canonical JSON (keys sorted, separators ',' and ':', "
    "non-ASCII unescaped) of the object with the fields "
    + ", ".join(HASHED_FIELDS)
    + "; each event's prev_hash is the hash of the event before it in the database's chain"
)


def write(timeline: Timeline, out: TextIO) -> None:
    """Write an incident's timeline as verifiable JSON lines (from :func:`load_timeline`, or
    the facts, which carry the same bounds)."""
    out.write(
        canonical_json(
            {
                "record": "header",
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "incident_id": timeline.incident_id,
                "first_seq": timeline.first_seq,
                "prev_hash": timeline.first_prev_hash,
                "hashed_fields": list(HASHED_FIELDS),
                "hash_rule": HASH_RULE,
                "verify": "rearguard audit verify --file <this file>",
            }
        )
        + "\n"
    )
    events = redacted = gaps = 0
    previous: tuple[int, str] | None = None
    for row in timeline.rows():
        seq, prev_hash, digest = row[0], row[9], row[10]
        if previous is not None and seq != previous[0] + 1:
            gaps += 1
            out.write(
                canonical_json(
                    {
                        "record": "gap",
                        "from_seq": previous[0] + 1,
                        "to_seq": seq - 1,
                        "incidents": incidents_between(
                            timeline.db, from_seq=previous[0] + 1, to_seq=seq - 1
                        ),
                        "prev_hash": previous[1],
                        "hash": prev_hash,
                    }
                )
                + "\n"
            )
        line, was_redacted = _event_line(row)
        out.write(line)
        events += 1
        redacted += was_redacted
        previous = (seq, digest)
    checkpoint = _checkpoint_of(timeline.db, timeline.incident_id)
    if checkpoint is not None:
        out.write(canonical_json({"record": "checkpoint", "checkpoint": checkpoint}) + "\n")
    out.write(
        canonical_json(
            {
                "record": "end",
                "events": events,
                "redacted": redacted,
                "gaps": gaps,
                "last_seq": previous[0] if previous else None,
                "last_hash": previous[1] if previous else None,
            }
        )
        + "\n"
    )


def _checkpoint_of(db: Database, incident_id: int) -> dict[str, Any] | None:
    """The latest signed checkpoint holding the incident's digest, as its published object."""
    with db.read_session() as session:
        checkpoint = latest_checkpoint_of_incident(session, incident_id=incident_id)
    return None if checkpoint is None else json.loads(checkpoint.line())


def _event_line(row: EventRow) -> tuple[str, bool]:
    """One event as a line, its stored ``data`` text spliced in; or a redacted record."""
    # Unpacked once: attribute access on a result row costs more than the line itself.
    seq, ts, incident_id, kind, action, actor, asset, version, data, prev_hash, digest = row
    if json_text_may_hold_secret(f"{data}\n{action}\n{actor}\n{asset}\n{version}"):
        values = (seq, ts, incident_id, kind, action, actor, asset, version, data, prev_hash)
        fields = dict(zip(HASHED_FIELDS, values, strict=True))
        fields["data"] = json.loads(data)
        clean = redact_value(fields)
        if clean != fields:
            return canonical_json({**clean, "hash": digest, "record": "redacted"}) + "\n", True
    # Sorted key order, as canonical_json would write it, without parsing data back and forth.
    return (
        f'{{"action":{encode_basestring(action)},"actor":{encode_basestring(actor)},'
        f'"asset":{"null" if asset is None else encode_basestring(asset)},"data":{data},'
        f'"hash":{encode_basestring(digest)},'
        f'"incident_id":{"null" if incident_id is None else incident_id},'
        f'"kind":{encode_basestring(kind)},"prev_hash":{encode_basestring(prev_hash)},'
        f'"record":"event","seq":{seq},"ts":{encode_basestring(ts)},'
        f'"version":{"null" if version is None else encode_basestring(version)}}}\n'
    ), False


@dataclass(frozen=True)
class FileReport:
    """The result of verifying an exported timeline file."""

    incident_id: int | None
    events: int
    redacted: int
    redacted_seqs: tuple[int, ...]
    gaps: int
    last_seq: int | None
    last_hash: str | None
    problem: ChainProblem | None
    checkpoint: FileCheckpoint | None = None

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return self.problem is None


@dataclass(frozen=True)
class FileCheckpoint:
    """The signed checkpoint a file carries, and what it vouches for in the file."""

    number: int
    seq: int
    time: str
    covered: int
    uncovered: int


MAX_LINE_BYTES = 16 * 1024 * 1024
"""The longest line the verifier reads: far above any event rearguard writes (a diff is cut at
16,000 characters), far below what would exhaust memory (``/dev/zero`` has no line end)."""


class _Lines:
    """The file's records in order; event records are handed out as a stream for verify_events.

    Lines are read as bytes, each at most :data:`MAX_LINE_BYTES`, and decoded one by one: an
    overlong line, bytes that are not UTF-8 or JSON nested too deep are a broken file, named
    by line, like any other alteration.
    """

    def __init__(self, handle: BinaryIO, db: Database | None = None) -> None:
        self._handle = handle
        self._number = 0
        self.pending: tuple[int, dict[str, Any]] | None = None
        self.problem: ChainProblem | None = None
        self.incident_id: int | None = None
        self.text = ""
        self.db = db
        self.witness: _DatabaseWitness | None = None
        # (seq, hash, line) of every event and redacted record, for the checkpoint check.
        self.pairs: list[tuple[int, str, int]] = []
        self.checkpoint: tuple[int, Any] | None = None

    def _next_line(self) -> tuple[int, str] | None:
        raw = self._handle.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return None
        self._number += 1
        if len(raw) > MAX_LINE_BYTES:
            reason = f"a line longer than {MAX_LINE_BYTES} bytes (altered)"
            self.problem = ChainProblem(-1, self._number, reason)
            return None
        try:
            return self._number, raw.decode("utf-8")
        except UnicodeDecodeError:
            self.problem = ChainProblem(-1, self._number, "not UTF-8 (altered or not a timeline)")
            return None

    def failure(self, otherwise: ChainProblem) -> ChainProblem:
        """The problem met while reading, if any (it ends the file early), else ``otherwise``."""
        return self.problem or otherwise

    def next_record(self) -> tuple[int, dict[str, Any]] | None:
        if self.pending is not None:
            record, self.pending = self.pending, None
            return record
        while (line := self._next_line()) is not None:
            number, text = line
            if not text.strip():
                continue
            self.text = text
            try:
                value = bounded_json.loads(text)
            except bounded_json.JsonTooDeep:
                self.problem = ChainProblem(-1, number, "JSON nested too deep (altered)")
                return None
            except ValueError:
                self.problem = ChainProblem(-1, number, "not valid JSON (altered or truncated)")
                return None
            if not isinstance(value, dict):
                self.problem = ChainProblem(-1, number, "not a JSON object")
                return None
            return number, value
        return None

    def events(self) -> Iterator[dict[str, Any]]:
        """Event records, each with its ``line``, up to the next record of another kind."""
        while (item := self.next_record()) is not None:
            number, record = item
            if record.get("record") != "event":
                self.pending = item
                return
            if record.get("incident_id") != self.incident_id:
                self.problem = ChainProblem(
                    _seq(record), number, f"belongs to incident {record.get('incident_id')}"
                )
                return
            # The writer writes each event in canonical form: another layout (a duplicate key,
            # which readers resolve differently) is not what was hashed.
            if canonical_json(record) != self.text.rstrip("\n"):
                self.problem = ChainProblem(_seq(record), number, _NOT_CANONICAL)
                return
            if self.witness is not None and (reason := self.witness.event(record)):
                self.problem = ChainProblem(_seq(record), number, reason)
                return
            self.pairs.append((_seq(record), str(record.get("hash")), number))
            yield {**record, "line": number}


def _seq(record: dict[str, Any]) -> int:
    value = record.get("seq")
    return value if isinstance(value, int) else -1


_NOT_CANONICAL = "the line is not in canonical form (a duplicate key or re-written: altered)"


class _DatabaseWitness:
    """The database's own rows, to check a file's records against (``--against-database``).

    An event record must be the stored event (same hash); a redacted record the stored event
    with only secrets replaced; a gap must withhold exactly stored events of other incidents,
    the ones it names, and link to the stored hashes at both ends.
    """

    def __init__(self, db: Database, incident_id: int) -> None:
        self._db = db
        self._rows = iter_rows(db, incident_id)
        self._row: Any = None

    def _stored(self, seq: Any) -> Any:
        """The incident's stored event at ``seq``, or None (the rows are read in order)."""
        while self._row is None or (isinstance(seq, int) and self._row[0] < seq):
            self._row = next(self._rows, None)
            if self._row is None:
                return None
        return self._row if self._row[0] == seq else None

    def event(self, record: dict[str, Any]) -> str | None:
        """Why an event record disagrees with the database, or None."""
        row = self._stored(record.get("seq"))
        if row is None:
            return "the database holds no such event of this incident"
        if row[10] != record.get("hash"):
            return "the database's event at this sequence has another hash"
        return None

    def redacted(self, record: dict[str, Any]) -> str | None:
        """Why a redacted record is not its stored event with secrets replaced, or None."""
        reason = self.event(record)
        if reason is not None:
            return reason
        fields = dict(zip(HASHED_FIELDS, self._row[:10], strict=True))
        fields["data"] = json.loads(fields["data"])
        expected = {**redact_value(fields), "hash": self._row[10], "record": "redacted"}
        if record != expected:
            return "its content is not the stored event's with secrets replaced (rewritten)"
        return None

    def gap(self, record: dict[str, Any], incident_id: int | None) -> str | None:
        """Why a gap record does not withhold exactly what it says, or None."""
        events = table_of(TimelineEvent)
        first, last = record["from_seq"], record["to_seq"]
        with self._db.read_session() as session:
            connection = session.connection()
            count = connection.execute(
                select(func.count()).where(events.c.seq.between(first, last))
            ).scalar_one()
            first_prev = connection.execute(
                select(events.c.prev_hash).where(events.c.seq == first)
            ).scalar_one_or_none()
            last_hash = connection.execute(
                select(events.c.hash).where(events.c.seq == last)
            ).scalar_one_or_none()
        if count != last - first + 1 or last_hash is None:
            return f"the database holds {count} of the {last - first + 1} events it withholds"
        named = incidents_between(self._db, from_seq=first, to_seq=last)
        if incident_id in named:
            return f"it withholds events of incident {incident_id} itself"
        if record.get("incidents") != named:
            return f"it names incidents {record.get('incidents')}, the database {named}"
        if first_prev != record.get("prev_hash") or last_hash != record.get("hash"):
            return "its hashes are not the database's"
        return None


def verify_file(
    path: Path, *, db: Database | None = None, public_key: Ed25519PublicKey | None = None
) -> FileReport:
    """Verify an exported timeline file and name its first bad line.

    Event records are checked by :func:`rearguard.models.audit.chain.verify_events` (each hash
    recomputed, each ``prev_hash`` linked to the event before, sequence numbers contiguous);
    gap and redacted records must link into the chain where they stand; the end record must
    match what was read. With ``db``, every record is also checked against the database's rows
    (see :class:`_DatabaseWitness`): what a file alone cannot prove.

    With ``public_key``, the file must carry a checkpoint signed by it that holds the
    incident: its events up to the checkpoint's head must be exactly those it vouches for
    (none withheld by a gap, none inserted, each with the hash it lists).

    Args:
        path: the file.
        db: the database the file was exported from, to check gaps and redacted records.
        public_key: the key that signs checkpoints, to check the checkpoint the file carries.

    Raises:
        UsageError: the file cannot be read, or is not a regular file (a FIFO, a device, a
            directory: it would block, never end, or hold no lines).
    """
    try:
        # Non-blocking, so that opening a FIFO with no writer does not wait for one.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise UsageError(
                f"{path} is not a regular file",
                hint="export the timeline to a file first: rearguard export ID --format jsonl -o F",
            )
        os.set_blocking(descriptor, True)
        handle = os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise
    with handle:
        lines = _Lines(handle, db)
        try:
            report = _verify(lines)
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if public_key is None or not report.ok:
        return report
    return _check_checkpoint(report, lines, public_key)


def _verify(lines: _Lines) -> FileReport:
    counts = {"events": 0, "redacted": 0, "gaps": 0}
    redacted_seqs: list[int] = []
    last: tuple[int, str] | None = None

    def report(problem: ChainProblem | None) -> FileReport:
        return FileReport(
            incident_id=lines.incident_id,
            events=counts["events"],
            redacted=counts["redacted"],
            redacted_seqs=tuple(redacted_seqs),
            gaps=counts["gaps"],
            last_seq=last[0] if last else None,
            last_hash=last[1] if last else None,
            problem=problem,
        )

    first = lines.next_record()
    if first is None:
        return report(lines.failure(ChainProblem(-1, None, "the file is empty")))
    number, header = first
    if header.get("record") != "header" or header.get("format") != FORMAT:
        return report(ChainProblem(-1, number, f"not a {FORMAT} file (no header record)"))
    lines.incident_id = header.get("incident_id")
    if lines.db is not None and isinstance(lines.incident_id, int):
        lines.witness = _DatabaseWitness(lines.db, lines.incident_id)
    if not isinstance(header.get("first_seq"), int) or not isinstance(header.get("prev_hash"), str):
        if header.get("first_seq") is None:  # an incident without events: only the end follows
            return _verify_end(lines, report, last, counts)
        return report(ChainProblem(-1, number, "the header's first_seq or prev_hash is malformed"))
    start = (header["first_seq"] - 1, header["prev_hash"])
    while True:
        chain = verify_events(lines.events(), start=start)
        counts["events"] += chain.events
        if lines.problem is not None:
            return report(lines.problem)
        if chain.problem is not None:
            return report(chain.problem)
        last = (chain.last_seq, chain.last_hash)
        item = lines.next_record()
        if item is None:
            return report(lines.failure(ChainProblem(last[0] + 1, None, _TRUNCATED)))
        number, record = item
        kind = record.get("record")
        if kind == "checkpoint":
            lines.checkpoint = (number, record.get("checkpoint"))
            item = lines.next_record()
            if item is None or item[1].get("record") != "end":
                return report(lines.failure(ChainProblem(-1, number, _CHECKPOINT_LAST)))
            kind = "end"
        if kind == "end":
            lines.pending = item
            return _verify_end(lines, report, last, counts)
        if kind not in ("gap", "redacted"):
            return report(ChainProblem(_seq(record), number, f"unexpected record {kind!r}"))
        first_seq = record.get("from_seq") if kind == "gap" else record.get("seq")
        last_seq = record.get("to_seq") if kind == "gap" else record.get("seq")
        if first_seq != last[0] + 1:
            reason = f"expected sequence {last[0] + 1}, found {first_seq} (lines deleted or moved)"
            return report(ChainProblem(_int(first_seq), number, reason))
        if record.get("prev_hash") != last[1]:
            reason = "prev_hash does not match the previous event (inserted or reordered)"
            return report(ChainProblem(_int(first_seq), number, reason))
        if not isinstance(last_seq, int) or last_seq < first_seq or not record.get("hash"):
            return report(ChainProblem(_int(first_seq), number, f"malformed {kind} record"))
        if kind == "redacted" and record.get("incident_id") != lines.incident_id:
            reason = f"belongs to incident {record.get('incident_id')}"
            return report(ChainProblem(last_seq, number, reason))
        if kind == "gap" and not _names_incidents(record.get("incidents"), lines.incident_id):
            reason = "malformed gap record: its incidents must be other incidents' ids or null"
            return report(ChainProblem(first_seq, number, reason))
        if lines.witness is not None:
            witness = lines.witness
            objection = (
                witness.gap(record, lines.incident_id)
                if kind == "gap"
                else witness.redacted(record)
            )
            if objection is not None:
                return report(ChainProblem(first_seq, number, f"{kind} record: {objection}"))
        counts["gaps" if kind == "gap" else "redacted"] += 1
        if kind == "redacted":
            counts["events"] += 1
            redacted_seqs.append(last_seq)
            lines.pairs.append((last_seq, str(record["hash"]), number))
        start = last = (last_seq, str(record["hash"]))


_TRUNCATED = "the file ends without its end record (truncated)"
_CHECKPOINT_LAST = "the checkpoint record must come last, just before the end record"


def _check_checkpoint(report: FileReport, lines: _Lines, public: Ed25519PublicKey) -> FileReport:
    """Check the file's checkpoint: signed by ``public``, vouching for the file's events."""

    def failed(reason: str, seq: int = -1, line: int | None = None) -> FileReport:
        return replace(report, problem=ChainProblem(seq, line, reason))

    if lines.checkpoint is None:
        return failed("the file carries no signed checkpoint: nothing vouches for it")
    line, raw = lines.checkpoint
    try:
        checkpoint = parse_checkpoint(raw)
    except ValueError as exc:
        return failed(f"its checkpoint record is malformed: {exc}", line=line)
    if not checkpoint.verifies(public):
        other = checkpoint.key != key_id(public)
        why = f"signed by another key ({checkpoint.key})" if other else "altered"
        return failed(f"{checkpoint.describe()} is not signed by this key: {why}", line=line)
    signed = checkpoint.incidents.get(report.incident_id or -1)
    if signed is None:
        return failed(f"{checkpoint.describe()} holds no digest of this incident", line=line)
    covered = [(seq, digest) for seq, digest, _ in lines.pairs if seq <= checkpoint.seq]
    difference = signed.first_difference(incident_digest(covered))
    if difference is not None:
        seq, how = difference
        where = next((number for s, _, number in lines.pairs if s == seq), None)
        reason = f"event {seq} disagrees with {checkpoint.describe()}: {how}"
        return failed(reason, seq=seq, line=where)
    found = FileCheckpoint(
        number=checkpoint.number,
        seq=checkpoint.seq,
        time=checkpoint.time,
        covered=len(covered),
        uncovered=len(lines.pairs) - len(covered),
    )
    return replace(report, checkpoint=found)


def _names_incidents(value: Any, incident_id: int | None) -> bool:
    """A gap's ``incidents``: a list of other incidents' ids (or null); files of format 1 had
    none."""
    if value is None:
        return True
    return isinstance(value, list) and all(
        item is None or (type(item) is int and item != incident_id) for item in value
    )


def _verify_end(
    lines: _Lines,
    report: Callable[[ChainProblem | None], FileReport],
    last: tuple[int, str] | None,
    counts: dict[str, int],
) -> FileReport:
    item = lines.next_record()
    if item is None:
        return report(lines.failure(ChainProblem(-1, None, _TRUNCATED)))
    number, end = item
    if end.get("record") != "end":
        return report(ChainProblem(_seq(end), number, "expected the end record"))
    expected = {
        "events": counts["events"],
        "redacted": counts["redacted"],
        "gaps": counts["gaps"],
        "last_seq": last[0] if last else None,
        "last_hash": last[1] if last else None,
    }
    for key, value in expected.items():
        if end.get(key) != value:
            reason = f"the end record says {key} {end.get(key)!r}, the file has {value!r}"
            return report(ChainProblem(last[0] if last else -1, number, reason))
    extra = lines.next_record()
    if extra is not None:
        return report(ChainProblem(_seq(extra[1]), extra[0], "a record after the end record"))
    return report(lines.problem)


def _int(value: Any) -> int:
    return value if isinstance(value, int) else -1
