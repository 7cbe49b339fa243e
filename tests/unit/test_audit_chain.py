"""The tamper-evident audit chain: hashing, verification of stored events, concurrent writers.

Tampering is done the way an attacker with database access would: raw SQL on
``timeline_event`` and ``chain_head``, never through rearguard's own code.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from rearguard.models.audit.chain import append_event, verify_events, verify_stored_chain
from rearguard.models.db.engine import Database
from rearguard.models.enums import EventKind
from rearguard.models.runtime import Runtime

EVENTS = 12
GENESIS = "0" * 64
HASHED = ("seq", "ts", "incident_id", "kind", "action", "actor", "asset", "version", "data")


def canonical(value: Any) -> str:
    """The documented canonical form, computed without rearguard's code."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def documented_hash(row: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of an event's fields (``data`` parsed) and its prev_hash."""
    payload = {name: row[name] for name in HASHED}
    payload["data"] = json.loads(row["data"]) if isinstance(row["data"], str) else row["data"]
    payload["prev_hash"] = row["prev_hash"]
    return hashlib.sha256(canonical(payload).encode("utf-8")).hexdigest()


def append_many(db: Database, count: int, *, actor: str = "tester") -> None:
    """Append ``count`` events, one durable transaction each."""
    for i in range(count):
        with db.session() as session:
            append_event(
                session,
                kind=EventKind.STATE,
                action="test.event",
                actor=actor,
                asset="model",
                version=f"v{i}",
                data={"i": i, "note": "ünïcode"},
            )


def raw_rows(db: Database) -> list[dict[str, Any]]:
    """Every stored event as the database holds it, in sequence order."""
    with db.read_session() as session:
        result = session.execute(text("SELECT * FROM timeline_event ORDER BY seq"))
        return [dict(row) for row in result.mappings()]


def execute(db: Database, *statements: tuple[str, dict[str, Any]]) -> None:
    """Run raw SQL statements in one transaction."""
    with db.session() as session:
        for sql, params in statements:
            session.execute(text(sql), params)


def verify(db: Database):  # type: ignore[no-untyped-def]
    """Verify the stored chain."""
    with db.read_session() as session:
        return verify_stored_chain(session)


def test_untouched_chain_verifies(runtime: Runtime) -> None:
    append_many(runtime.db, EVENTS)

    report = verify(runtime.db)

    assert report.ok, report.problem
    assert (report.events, report.last_seq) == (EVENTS, EVENTS)
    rows = raw_rows(runtime.db)
    assert report.last_hash == rows[-1]["hash"]
    assert rows[0]["prev_hash"] == GENESIS
    for before, after in itertools.pairwise(rows):
        assert after["prev_hash"] == before["hash"]


def test_empty_chain_verifies(runtime: Runtime) -> None:
    report = verify(runtime.db)

    assert report.ok
    assert (report.events, report.last_seq, report.last_hash) == (0, 0, GENESIS)


def _forged_event_sql(*, seq: int, prev_hash: str) -> tuple[str, dict[str, Any]]:
    """An INSERT of a forged event whose own hash is computed the documented way."""
    row = {
        "seq": seq,
        "ts": "2020-01-01T00:00:00.000000Z",
        "incident_id": None,
        "kind": "decision",
        "action": "version.approved",
        "actor": "mallory",
        "asset": "model",
        "version": "backdoored",
        "data": canonical({"note": "looks legitimate"}),
        "prev_hash": prev_hash,
    }
    row["hash"] = documented_hash(row)
    columns = ", ".join(row)
    values = ", ".join(f":{name}" for name in row)
    return f"INSERT INTO timeline_event ({columns}) VALUES ({values})", row


def _shift_from(seq: int) -> list[tuple[str, dict[str, Any]]]:
    """Renumber events seq.. one up, in two steps so the primary key never collides."""
    return [
        ("UPDATE timeline_event SET seq = -(seq + 1) WHERE seq >= :s", {"s": seq}),
        ("UPDATE timeline_event SET seq = -seq WHERE seq < 0", {}),
    ]


def tamper_statements(kind: str, rows: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The raw SQL for one kind of tampering of a chain of EVENTS events."""
    if kind == "altered data":
        altered = canonical({"i": 999, "note": "ünïcode"})
        return [("UPDATE timeline_event SET data = :d WHERE seq = 5", {"d": altered})]
    if kind == "data not JSON":
        return [("UPDATE timeline_event SET data = 'not json' WHERE seq = 5", {})]
    if kind == "altered actor":
        return [("UPDATE timeline_event SET actor = 'mallory' WHERE seq = 7", {})]
    if kind == "altered hash":
        return [("UPDATE timeline_event SET hash = :h WHERE seq = 3", {"h": "a" * 64})]
    if kind == "deleted middle":
        return [("DELETE FROM timeline_event WHERE seq = 6", {})]
    if kind == "deleted last":
        return [("DELETE FROM timeline_event WHERE seq = :s", {"s": EVENTS})]
    if kind == "swapped":
        return [
            ("UPDATE timeline_event SET seq = -1 WHERE seq = 4", {}),
            ("UPDATE timeline_event SET seq = 4 WHERE seq = 5", {}),
            ("UPDATE timeline_event SET seq = 5 WHERE seq = -1", {}),
        ]
    if kind == "inserted, wrong prev":
        return [*_shift_from(6), _forged_event_sql(seq=6, prev_hash=rows[3]["hash"])]
    if kind == "inserted, right prev":
        return [*_shift_from(6), _forged_event_sql(seq=6, prev_hash=rows[4]["hash"])]
    if kind == "appended, head not moved":
        return [_forged_event_sql(seq=EVENTS + 1, prev_hash=rows[-1]["hash"])]
    if kind == "altered head":
        return [("UPDATE chain_head SET hash = :h", {"h": "b" * 64})]
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "first_bad", "intact", "words"),
    [
        ("altered data", 5, 4, ["altered"]),
        ("data not JSON", 5, 4, ["altered"]),
        ("altered actor", 7, 6, ["altered"]),
        ("altered hash", 3, 2, ["altered"]),
        # The first stored event out of line; the reason names the missing one.
        ("deleted middle", 7, 5, ["missing", "deleted", "6..6"]),
        ("deleted last", EVENTS, EVENTS - 1, ["missing", "deleted from the end"]),
        ("swapped", 4, 3, ["reordered", "prev_hash"]),
        ("inserted, wrong prev", 6, 5, ["inserted", "prev_hash"]),
        # A forger who links correctly still breaks the link of the event pushed after it.
        ("inserted, right prev", 7, 6, ["inserted", "prev_hash"]),
        ("appended, head not moved", EVENTS + 1, EVENTS + 1, ["chain head"]),
        ("altered head", EVENTS, EVENTS, ["chain head", "altered"]),
    ],
)
def test_tampering_names_the_first_bad_event(
    runtime: Runtime, kind: str, first_bad: int, intact: int, words: list[str]
) -> None:
    append_many(runtime.db, EVENTS)
    assert verify(runtime.db).ok

    execute(runtime.db, *tamper_statements(kind, raw_rows(runtime.db)))
    report = verify(runtime.db)

    assert not report.ok
    assert report.problem is not None
    assert report.problem.seq == first_bad, report.problem
    for word in words:
        assert word in report.problem.reason, report.problem
    assert report.events == intact


def test_documented_hash_matches_stored_events(runtime: Runtime) -> None:
    data = {"zeta": 1, "alpha": {"b": [3, 1, 2], "a": "café ☕ 日本"}, "none": None}
    before = datetime.now(UTC)
    with runtime.db.session() as session:
        append_event(
            session,
            kind=EventKind.DECISION,
            action="version.approved",
            actor="José",
            asset="modèle",
            version="v1",
            data=data,
        )
    with runtime.db.session() as session:
        append_event(session, kind=EventKind.STATE, action="second", actor="cli")
    after = datetime.now(UTC)

    first, second = raw_rows(runtime.db)

    assert first["data"] == canonical(data)
    assert first["data"].startswith('{"alpha":{"a":"café ☕ 日本","b":[3,1,2]},"none":null')
    assert "\\u" not in first["data"]
    assert first["prev_hash"] == GENESIS
    assert first["hash"] == documented_hash(first)
    assert second["prev_hash"] == first["hash"]
    assert second["hash"] == documented_hash(second)
    assert second["data"] == "{}"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", first["ts"])
    stamped = datetime.strptime(first["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert before - timedelta(seconds=1) <= stamped <= after
    # The canonical text is the hash input byte for byte: UTF-8, no escapes, no spaces.
    payload = {name: first[name] for name in HASHED} | {"prev_hash": GENESIS}
    payload["data"] = data
    text_form = canonical(payload)
    assert '"actor":"José"' in text_form and " " not in text_form.replace("café ☕ 日本", "")
    assert hashlib.sha256(text_form.encode("utf-8")).hexdigest() == first["hash"]


TRICKY = [
    'quote " backslash \\ slash /',
    "tab\tnewline\ncontrol\x01",
    "sep \u2028 \u2029",
    "😀 é 日本",
]


def test_tricky_strings_hash_the_documented_way(runtime: Runtime) -> None:
    for text_value in TRICKY:
        with runtime.db.session() as session:
            append_event(
                session,
                kind=EventKind.DECISION,
                action=f"act {text_value}",
                actor=text_value,
                asset=text_value,
                version=text_value,
                data={text_value: [text_value, 1.5, True, None, -(2**63)]},
            )

    rows = raw_rows(runtime.db)
    report = verify(runtime.db)

    assert report.ok, report.problem
    assert report.events == len(TRICKY)
    for row in rows:
        assert row["hash"] == documented_hash(row)


@pytest.mark.parametrize(
    "relaid",
    [
        # Equal content, another layout: the stored text must be the hashed bytes.
        lambda data: json.dumps(json.loads(data), indent=2, ensure_ascii=True),
        # A duplicate key: json.loads keeps the last value, SQLite's json_extract the first.
        lambda data: '{"i":666,' + data[1:],
    ],
    ids=["re-laid out", "duplicate key"],
)
def test_data_not_stored_canonically_is_named(runtime: Runtime, relaid: Any) -> None:
    append_many(runtime.db, 3)
    second = raw_rows(runtime.db)[1]
    forged = relaid(second["data"])
    assert forged != second["data"]

    execute(runtime.db, ("UPDATE timeline_event SET data = :d WHERE seq = 2", {"d": forged}))
    report = verify(runtime.db)

    assert report.problem is not None
    assert report.problem.seq == 2
    assert "canonical" in report.problem.reason
    assert report.events == 1


def test_duplicate_key_rehashed_the_way_the_shortcut_would_is_still_named(
    runtime: Runtime,
) -> None:
    """A forger who hashes the stored text as spliced (not as the documented rule parses it)."""
    append_many(runtime.db, 2)
    last = raw_rows(runtime.db)[-1]
    forged = '{"i":666,' + last["data"][1:]
    spliced = canonical({**{n: last[n] for n in HASHED}, "prev_hash": last["prev_hash"], "data": 0})
    digest = hashlib.sha256(spliced.replace('"data":0', f'"data":{forged}').encode()).hexdigest()
    execute(
        runtime.db,
        (
            "UPDATE timeline_event SET data = :d, hash = :h WHERE seq = 2",
            {"d": forged, "h": digest},
        ),
        ("UPDATE chain_head SET hash = :h", {"h": digest}),
    )

    report = verify(runtime.db)

    assert report.problem is not None
    assert (report.problem.seq, report.events) == (2, 1)
    assert "canonical" in report.problem.reason


@pytest.mark.parametrize("seq", [0, -5])
def test_an_event_forged_before_the_first_is_named(runtime: Runtime, seq: int) -> None:
    """An event at seq <= 0 is shown by the timeline views; verify must not overlook it."""
    append_many(runtime.db, 3)
    execute(runtime.db, _forged_event_sql(seq=seq, prev_hash=GENESIS))

    report = verify(runtime.db)

    assert report.problem is not None
    assert report.problem.seq == seq
    assert "before the chain's first" in report.problem.reason


def test_events_from_a_file_name_the_line_of_the_first_bad_one(runtime: Runtime) -> None:
    append_many(runtime.db, 5)
    exported = [{**row, "line": 10 + index} for index, row in enumerate(raw_rows(runtime.db))]
    assert verify_events(exported, head=(5, exported[-1]["hash"])).ok
    # As parsed objects too, the way an export file would be read.
    parsed = [{**row, "data": json.loads(row["data"])} for row in exported]
    assert verify_events(parsed).ok

    parsed[3]["data"]["i"] = 42
    report = verify_events(parsed)

    assert report.problem is not None
    assert (report.problem.seq, report.problem.line) == (4, 13)
    assert "altered" in report.problem.reason
    assert report.problem.describe() == f"event 4 (line 13): {report.problem.reason}"


WRITERS = 4
PER_WRITER = 200


def _append_from_process(url: str, worker: int, start: Any) -> None:
    db = Database(url)
    start.wait()
    try:
        for i in range(PER_WRITER):
            with db.session() as session:
                append_event(
                    session,
                    kind=EventKind.STATE,
                    action="concurrent",
                    actor=f"writer-{worker}",
                    data={"worker": worker, "i": i},
                )
    finally:
        db.dispose()


@pytest.mark.slow
def test_concurrent_writers_keep_one_gapless_chain(runtime: Runtime) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(WRITERS)
    processes = [
        context.Process(target=_append_from_process, args=(runtime.db.url, n, start))
        for n in range(WRITERS)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
    assert [p.exitcode for p in processes] == [0] * WRITERS

    rows = raw_rows(runtime.db)
    report = verify(runtime.db)

    assert [row["seq"] for row in rows] == list(range(1, WRITERS * PER_WRITER + 1))
    assert report.ok, report.problem
    assert report.events == WRITERS * PER_WRITER
    for worker in range(WRITERS):
        mine = [json.loads(r["data"])["i"] for r in rows if r["actor"] == f"writer-{worker}"]
        assert mine == list(range(PER_WRITER))
