"""Signed checkpoints: made, published outside the database, and checked against a forged one.

Keys are generated here (cryptography), sinks are real files and a real local HTTP server, and
the database is forged as an attacker with write access would: raw SQL, hashes recomputed the
documented way, the chain head rewound or advanced. ``rearguard audit verify`` runs as a
subprocess.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import socket
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import rearguard
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from key_helpers import write_key_pair
from notification_helpers import WEBHOOK_SECRET, WebhookReceiver
from pydantic import SecretStr
from slack_sdk import WebClient
from slack_server import SlackServer
from sqlalchemy import text, update
from sqlmodel import select

from rearguard.models.audit.chain import append_event
from rearguard.models.audit.checkpoints import (
    make_checkpoint,
    publish_pending,
)
from rearguard.models.config.audit import AuditSettings
from rearguard.models.config.notifications import SlackSettings
from rearguard.models.config.settings import Settings
from rearguard.models.db.tables import CheckpointDelivery, table_of
from rearguard.models.enums import EventKind
from rearguard.models.runtime import Runtime

HASHED = (
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


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def write_key(path: Path, *, mode: int = 0o600) -> Path:
    """A fresh Ed25519 private key in PEM; its public key beside it (``.pub.pem``)."""
    write_key_pair(Ed25519PrivateKey.generate(), path, path.with_suffix(".pub.pem"), mode=mode)
    return path


@dataclasses.dataclass
class Setup:
    runtime: Runtime
    settings: Settings
    key: Path
    public: Path
    sink: Path


@pytest.fixture
def setup(runtime: Runtime, tmp_path: Path) -> Setup:
    """A signing key, a file sink, and the same settings in the home's rearguard.toml."""
    key = write_key(tmp_path / "signing.pem")
    sink = tmp_path / "worm" / "checkpoints.jsonl"
    sink.parent.mkdir()
    audit = AuditSettings(signing_key=key, checkpoint_sinks=[f"file://{sink}"])
    (runtime.settings.home / "rearguard.toml").write_text(
        f'[audit]\nsigning_key = "{key}"\ncheckpoint_sinks = ["file://{sink}"]\n'
    )
    settings = dataclasses.replace(runtime.settings, audit=audit)
    return Setup(runtime, settings, key, key.with_suffix(".pub.pem"), sink)


def append(runtime: Runtime, count: int, *, incident_id: int | None = None) -> None:
    for i in range(count):
        with runtime.db.session() as session:
            append_event(
                session,
                kind=EventKind.DECISION,
                action="triage.note",
                actor="oncall",
                incident_id=incident_id,
                data={"i": i},
            )


def checkpoint(s: Setup, reason: str = "test") -> None:
    made = make_checkpoint(db=s.runtime.db, settings=s.settings.audit, reason=reason)
    assert made is not None
    assert publish_pending(db=s.runtime.db, settings=s.settings).failing == {}


def rows(runtime: Runtime) -> list[dict[str, Any]]:
    with runtime.db.read_session() as session:
        result = session.execute(text("SELECT * FROM timeline_event ORDER BY seq"))
        return [dict(row) for row in result.mappings()]


def forge(runtime: Runtime, *statements: tuple[str, dict[str, Any]]) -> None:
    with runtime.db.session() as session:
        for statement, params in statements:
            session.execute(text(statement), params)


def rehash_from(runtime: Runtime, seq: int) -> None:
    """Recompute every hash from ``seq`` on, the documented way, and move the head: what an
    attacker who rewrote an event does so that the chain alone still verifies."""
    events = rows(runtime)
    prev = next((r["hash"] for r in events if r["seq"] == seq - 1), "0" * 64)
    statements = []
    for row in events:
        if row["seq"] < seq:
            continue
        payload = {name: row[name] for name in HASHED} | {"prev_hash": prev}
        payload["data"] = json.loads(row["data"])
        digest = hashlib.sha256(canonical(payload).encode()).hexdigest()
        statements.append(
            (
                "UPDATE timeline_event SET prev_hash = :p, hash = :h WHERE seq = :s",
                {"p": prev, "h": digest, "s": row["seq"]},
            )
        )
        prev = digest
    last = events[-1]["seq"]
    statements.append(("UPDATE chain_head SET seq = :s, hash = :h", {"s": last, "h": prev}))
    forge(runtime, *statements)


def verify_with(  # type: ignore[no-untyped-def]
    s: Setup,
    sink: Path | str | None = None,
    public: Path | None = None,
    env: dict[str, str] | None = None,
):
    return rearguard(
        s.runtime,
        "audit",
        "verify",
        "--checkpoints",
        str(sink or s.sink),
        "--public-key",
        str(public or s.public),
        env=env,
    )


def two_checkpoints(s: Setup) -> None:
    """Events 1..10, checkpoint 1; 11..20, checkpoint 2; 21..22 after."""
    append(s.runtime, 10)
    checkpoint(s)
    append(s.runtime, 10)
    checkpoint(s)
    append(s.runtime, 2)


# -- the attacks -------------------------------------------------------------------------------


def truncate(s: Setup) -> None:
    """Delete events 15.. and rewind the head to event 14."""
    head = next(r for r in rows(s.runtime) if r["seq"] == 14)
    forge(
        s.runtime,
        ("DELETE FROM timeline_event WHERE seq >= 15", {}),
        ("UPDATE chain_head SET seq = 14, hash = :h", {"h": head["hash"]}),
    )


def rewrite_suffix(s: Setup) -> None:
    """Rewrite event 13's data and rehash everything after it."""
    forge(s.runtime, ("UPDATE timeline_event SET data = :d WHERE seq = 13", {"d": '{"i":99}'}))
    rehash_from(s.runtime, 13)


def renumber(s: Setup) -> None:
    """Delete event 12, renumber the rest down by one, rehash."""
    forge(
        s.runtime,
        ("DELETE FROM timeline_event WHERE seq = 12", {}),
        ("UPDATE timeline_event SET seq = -(seq - 1) WHERE seq > 12", {}),
        ("UPDATE timeline_event SET seq = -seq WHERE seq < 0", {}),
    )
    rehash_from(s.runtime, 12)


def wipe(s: Setup) -> None:
    forge(
        s.runtime,
        ("DELETE FROM timeline_event", {}),
        ("DELETE FROM chain_head", {}),
    )


def append_and_advance(s: Setup) -> None:
    """Rewrite from event 3 and append forged events, the head advanced to match."""
    forge(s.runtime, ("UPDATE timeline_event SET actor = 'mallory' WHERE seq = 3", {}))
    rehash_from(s.runtime, 3)


@pytest.mark.parametrize(
    ("attack", "checkpoint_number", "first_seq", "words"),
    [
        (truncate, 2, 15, ["truncated", "15..20"]),
        (rewrite_suffix, 2, 13, ["event 13", "rewritten"]),
        (renumber, 2, 12, ["event 12", "renumbered"]),
        (wipe, 1, 1, ["wiped"]),
        (append_and_advance, 1, 3, ["event 3"]),
    ],
    ids=["truncation", "rewrite-and-rehash", "renumbering", "wipe", "rewrite-early"],
)
def test_an_attack_a_published_checkpoint_covers_is_named(
    setup: Setup, attack: Any, checkpoint_number: int, first_seq: int, words: list[str]
) -> None:
    two_checkpoints(setup)
    assert verify_with(setup).returncode == 0

    attack(setup)

    # The chain alone is consistent again: only the checkpoints can tell.
    assert rearguard(setup.runtime, "audit", "verify").returncode == 0
    result = verify_with(setup)
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert f"checkpoint {checkpoint_number} (event" in result.stderr, result.stderr
    assert f"first event that disagrees: {first_seq}" in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr
    as_json = json.loads(
        rearguard(
            setup.runtime,
            "audit",
            "verify",
            "--json",
            "--checkpoints",
            str(setup.sink),
            "--public-key",
            str(setup.public),
        ).stdout
    )
    problem = as_json["checkpoint_problem"]
    assert (problem["checkpoint"], problem["first_seq"]) == (checkpoint_number, first_seq)


def test_an_intact_chain_agrees_and_says_what_is_not_yet_covered(setup: Setup) -> None:
    two_checkpoints(setup)

    result = verify_with(setup)

    assert result.returncode == 0, result.stderr
    assert "agrees with 2 signed checkpoint(s)" in result.stdout
    assert "events 21..22 came after it" in result.stdout
    lines = setup.sink.read_text().splitlines()
    assert [json.loads(line)["number"] for line in lines] == [1, 2]
    assert (
        json.loads(lines[1])["prev"]
        == hashlib.sha256(
            canonical({k: v for k, v in json.loads(lines[0]).items() if k != "signature"}).encode()
        ).hexdigest()
    )


def test_a_stored_checkpoint_not_signed_by_the_key_is_refused(setup: Setup) -> None:
    append(setup.runtime, 3)
    checkpoint(setup)
    forge(
        setup.runtime,
        (
            "UPDATE audit_checkpoint SET record = replace(record, :old, :new)",
            {"old": '"seq":3', "new": '"seq":2'},
        ),
    )
    append(setup.runtime, 1)

    result = rearguard(setup.runtime, "audit", "checkpoint")

    assert result.returncode == 3, result.stderr
    assert "not signed by this key" in result.stderr


# -- the checkpoint file itself --------------------------------------------------------------


def damaged(setup: Setup, how: str) -> Path:
    lines = setup.sink.read_text().splitlines(keepends=True)
    path = setup.sink.with_name(f"{how}.jsonl")
    if how == "truncated":
        text = "".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2]
    elif how == "reordered":
        text = "".join([lines[1], lines[0], *lines[2:]])
    elif how == "removed":
        text = "".join([lines[0], lines[2]])
    elif how == "altered":
        record = json.loads(lines[1])
        record["seq"] = 19
        text = lines[0] + canonical(record) + "\n" + "".join(lines[2:])
    elif how == "garbage":
        text = lines[0] + "not json\n"
    else:
        raise AssertionError(how)
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("how", "words"),
    [
        ("truncated", ["line 3", "truncated mid-line"]),
        ("reordered", ["line 2", "does not follow"]),
        ("removed", ["checkpoint 3", "does not follow"]),
        ("altered", ["checkpoint 2", "altered"]),
        ("garbage", ["line 2", "not a checkpoint"]),
    ],
)
def test_a_damaged_checkpoint_file_is_reported(setup: Setup, how: str, words: list[str]) -> None:
    two_checkpoints(setup)
    checkpoint(setup)

    result = verify_with(setup, damaged(setup, how))

    assert result.returncode == 3, (result.stdout, result.stderr)
    for word in words:
        assert word in result.stderr, result.stderr


def test_checkpoints_signed_by_another_key_are_reported(setup: Setup, tmp_path: Path) -> None:
    two_checkpoints(setup)
    other = write_key(tmp_path / "other.pem").with_suffix(".pub.pem")

    result = verify_with(setup, public=other)

    assert result.returncode == 3
    assert "signed by another key" in result.stderr and "line 1" in result.stderr


def test_a_repeated_line_from_a_retried_publication_is_accepted(setup: Setup) -> None:
    two_checkpoints(setup)
    lines = setup.sink.read_text().splitlines(keepends=True)
    setup.sink.write_text("".join([lines[0], lines[0], lines[1]]))

    assert verify_with(setup).returncode == 0


@pytest.mark.parametrize("what", ["missing file", "empty file", "bad public key", "no key"])
def test_unusable_input_is_exit_2_in_one_line(setup: Setup, tmp_path: Path, what: str) -> None:
    two_checkpoints(setup)
    args = ["audit", "verify", "--checkpoints", str(setup.sink), "--public-key", str(setup.public)]
    if what == "missing file":
        args[3] = str(tmp_path / "nope.jsonl")
    elif what == "empty file":
        (tmp_path / "empty.jsonl").write_text("")
        args[3] = str(tmp_path / "empty.jsonl")
    elif what == "bad public key":
        (tmp_path / "bad.pem").write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n")
        args[5] = str(tmp_path / "bad.pem")
    else:
        args = args[:4]

    result = rearguard(setup.runtime, *args)

    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


# -- the signing key ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_signing_key_others_can_read_is_refused(setup: Setup, mode: int) -> None:
    append(setup.runtime, 1)
    setup.key.chmod(mode)

    result = rearguard(setup.runtime, "audit", "checkpoint")

    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "readable by others" in result.stderr and "chmod 600" in result.stderr
    assert not setup.sink.exists()


def test_a_key_that_is_not_ed25519_is_refused(setup: Setup) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    setup.key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    append(setup.runtime, 1)

    result = rearguard(setup.runtime, "audit", "checkpoint")

    assert result.returncode == 2 and "not an Ed25519 key" in result.stderr, result.stderr


# -- sinks -------------------------------------------------------------------------------------


def with_sinks(setup: Setup, *sinks: str) -> Settings:
    audit = setup.settings.audit.model_copy(
        update={"checkpoint_sinks": [f"file://{setup.sink}", *sinks]}
    )
    webhook = setup.settings.webhook.model_copy(
        update={"secret": audit.webhook_secret or _secret()}
    )
    return dataclasses.replace(
        setup.settings,
        audit=audit.model_copy(update={"webhook_secret": _secret()}),
        webhook=webhook,
    )


def _secret() -> Any:
    from pydantic import SecretStr

    return SecretStr(WEBHOOK_SECRET)


def test_the_webhook_sink_receives_each_checkpoint_signed_as_the_webhook_channel_signs(
    setup: Setup,
) -> None:
    with WebhookReceiver() as receiver:
        settings = with_sinks(setup, receiver.url)
        append(setup.runtime, 2)
        make_checkpoint(db=setup.runtime.db, settings=settings.audit, reason="test")
        report = publish_pending(db=setup.runtime.db, settings=settings)

    assert report.failing == {} and report.published == 2
    assert receiver.rejected == 0
    assert receiver.received == [json.loads(setup.sink.read_text())]


def test_an_unreachable_sink_keeps_the_checkpoint_and_a_later_pass_delivers_in_order(
    setup: Setup,
) -> None:
    with WebhookReceiver(statuses=[503, 503]) as receiver:
        settings = with_sinks(setup, receiver.url)
        append(setup.runtime, 2)
        make_checkpoint(db=setup.runtime.db, settings=settings.audit, reason="first")
        failed = publish_pending(db=setup.runtime.db, settings=settings)
        assert failed.failing == {receiver.url: "HTTP 503"}
        append(setup.runtime, 1)
        make_checkpoint(db=setup.runtime.db, settings=settings.audit, reason="second")
        # The file sink got both at once; the webhook's second try fails as well.
        assert publish_pending(db=setup.runtime.db, settings=settings).failing
        assert len(setup.sink.read_text().splitlines()) == 2

        publish_pending(db=setup.runtime.db, settings=settings)

    assert [r["number"] for r in receiver.received] == [1, 2]
    with setup.runtime.db.read_session() as session:
        deliveries = session.exec(select(CheckpointDelivery)).all()
    assert all(d.published_at is not None for d in deliveries)


def test_a_playbook_end_never_waits_for_a_hanging_sink(setup: Setup) -> None:
    """The sink accepts the connection and does not answer until released."""
    release = threading.Event()
    arrived = threading.Event()
    bodies: list[bytes] = []

    class Hanging(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            arrived.set()
            release.wait(60)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hanging)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/cp"
        runtime = dataclasses.replace(setup.runtime, settings=with_sinks(setup, url))
        append(setup.runtime, 3)

        runtime.request_checkpoint("incident 7 run ended")

        # Returned at once; the background pass wrote the file sink, and the webhook hangs.
        assert arrived.wait(30)
        assert len(setup.sink.read_text().splitlines()) == 1
        assert not runtime.checkpoints.flush(timeout=0)
        # Two more ends while it hangs: one checkpoint after it covers both.
        append(setup.runtime, 1)
        runtime.request_checkpoint("incident 8 run ended")
        runtime.request_checkpoint("incident 9 run ended")
        release.set()
        assert runtime.checkpoints.flush(timeout=30)
    finally:
        release.set()
        server.shutdown()
        server.server_close()
    assert [json.loads(body)["reason"] for body in bodies] == [
        "incident 7 run ended",
        "incident 8 run ended; incident 9 run ended",
    ]
    assert [json.loads(line)["number"] for line in setup.sink.read_text().splitlines()] == [1, 2]


def test_a_refused_connection_never_fails_the_playbook_end(setup: Setup) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = with_sinks(setup, f"http://127.0.0.1:{port}/cp")
    runtime = dataclasses.replace(setup.runtime, settings=settings)
    append(setup.runtime, 1)

    runtime.request_checkpoint("end")
    runtime.checkpoints.flush()

    with setup.runtime.db.read_session() as session:
        pending = [d for d in session.exec(select(CheckpointDelivery)) if d.published_at is None]
    assert [d.sink for d in pending] == [f"http://127.0.0.1:{port}/cp"]
    assert pending[0].attempts == 1 and pending[0].last_error
    assert runtime.checkpoints.last is not None and runtime.checkpoints.last.checkpoint


def test_closing_the_runtime_publishes_the_checkpoints_asked_for(setup: Setup) -> None:
    """What a CLI command does before it exits: the sink holds the end's checkpoint."""
    runtime = dataclasses.replace(setup.runtime, settings=setup.settings)
    runtime.checkpoints.start(settings=runtime.settings)
    append(setup.runtime, 2, incident_id=4)

    runtime.request_checkpoint("incident 4 run ended")
    runtime.checkpoints.close()

    [line] = setup.sink.read_text().splitlines()
    assert json.loads(line)["reason"] == "incident 4 run ended"
    assert "4" in json.loads(line)["incidents"]


def pending_deliveries(runtime: Runtime) -> list[CheckpointDelivery]:
    with runtime.db.read_session() as session:
        return [d for d in session.exec(select(CheckpointDelivery)) if d.published_at is None]


def test_automatic_passes_wait_out_a_failing_sinks_back_off_and_audit_checkpoint_does_not(
    setup: Setup,
) -> None:
    with WebhookReceiver(statuses=[503, 503]) as receiver:
        settings = with_sinks(setup, receiver.url)  # back-off: 10 s, then 20 s
        append(setup.runtime, 1)
        make_checkpoint(db=setup.runtime.db, settings=settings.audit, reason="first")
        first = publish_pending(db=setup.runtime.db, settings=settings, due_only=True)
        assert first.failing == {receiver.url: "HTTP 503"}

        again = publish_pending(db=setup.runtime.db, settings=settings, due_only=True)
        assert again.failing == {} and again.waiting == (receiver.url,)
        assert receiver.statuses == [503]  # not asked again

        before = datetime.now(UTC)
        forced = publish_pending(db=setup.runtime.db, settings=settings)
        after = datetime.now(UTC)
        [kept] = pending_deliveries(setup.runtime)
        assert forced.failing == {receiver.url: "HTTP 503"} and receiver.statuses == []
        assert kept.attempts == 2 and kept.next_attempt_at is not None
        assert before + timedelta(seconds=20) <= kept.next_attempt_at
        assert kept.next_attempt_at <= after + timedelta(seconds=20)

        assert publish_pending(db=setup.runtime.db, settings=settings).published == 1
    assert [r["number"] for r in receiver.received] == [1]


def hold(runtime: Runtime, sink: str, *, until: datetime) -> None:
    """What another publisher's claim of the sink's delivery leaves in the database."""
    deliveries = table_of(CheckpointDelivery)
    with runtime.db.transaction() as connection:
        connection.execute(
            update(deliveries)
            .where(deliveries.c.sink == sink)
            .values(attempts=deliveries.c.attempts + 1, lease_until=until)
        )


def test_a_delivery_another_publisher_holds_is_left_to_it(setup: Setup) -> None:
    with WebhookReceiver() as receiver:
        settings = with_sinks(setup, receiver.url)
        append(setup.runtime, 1)
        make_checkpoint(db=setup.runtime.db, settings=settings.audit, reason="test")
        hold(setup.runtime, receiver.url, until=datetime.now(UTC) + timedelta(minutes=1))

        held = publish_pending(db=setup.runtime.db, settings=settings)
        assert held.waiting == (receiver.url,) and receiver.received == []
        assert held.published == 1  # the file sink is not held

        # Its publisher died: once the lease has run out, the next pass publishes it.
        hold(setup.runtime, receiver.url, until=datetime.now(UTC) - timedelta(seconds=1))
        assert publish_pending(db=setup.runtime.db, settings=settings).published == 1
    assert [r["number"] for r in receiver.received] == [1]


# -- exports carry the checkpoint that covers them ------------------------------------------------


def exported_incident(setup: Setup, tmp_path: Path) -> tuple[int, Path]:
    """An incident interleaved with another, a checkpoint, then its JSONL export."""
    from scenarios import build_scenario

    from rearguard.flows.exports.export import write_export
    from rearguard.flows.exports.formats import ExportFormat
    from rearguard.models.enums import Severity
    from rearguard.models.incidents.service import open_incident

    runtime = setup.runtime
    build_scenario(runtime, tmp_path / "assets", asset="model-a")
    ids = []
    for summary in ("ours", "other"):
        with runtime.db.session() as session:
            incident = open_incident(
                session=session,
                type="model_compromise",
                actor="oncall",
                asset_name="model-a",
                severity=Severity.SEV2,
                summary=summary,
                state={"compromised": "v3"},
            )
            ids.append(int(incident.id or 0))
    for incident_id in (ids[0], ids[1], ids[0], ids[1], ids[0]):
        append(runtime, 1, incident_id=incident_id)
    checkpoint(setup, reason="incident ended")
    path = tmp_path / "timeline.jsonl"
    with path.open("w", encoding="utf-8", newline="") as out:
        write_export(db=runtime.db, incident_id=ids[0], export_format=ExportFormat.JSONL, out=out)
    return ids[0], path


def verify_file_with_key(setup: Setup, path: Path, public: Path | None = None):  # type: ignore[no-untyped-def]
    return rearguard(
        setup.runtime,
        "audit",
        "verify",
        "--file",
        str(path),
        "--public-key",
        str(public or setup.public),
    )


def records_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def save(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(canonical(r) + "\n" for r in records), encoding="utf-8")


def test_an_export_carries_its_checkpoint_and_verifies_with_the_public_key_alone(
    setup: Setup, tmp_path: Path
) -> None:
    incident_id, path = exported_incident(setup, tmp_path)
    records = records_of(path)
    assert records[-2]["record"] == "checkpoint"
    assert str(incident_id) in records[-2]["checkpoint"]["incidents"]
    # Another machine: no database at all, only the file and the public key.
    setup.runtime.db.dispose()
    Path(setup.runtime.db.url.removeprefix("sqlite:///")).unlink(missing_ok=True)

    result = verify_file_with_key(setup, path)

    assert result.returncode == 0, result.stderr
    events = sum(r["record"] in ("event", "redacted") for r in records)
    assert f"vouches for {events} of its events" in result.stdout


def test_an_exported_gap_hiding_the_incidents_own_event_fails_with_the_key(
    setup: Setup, tmp_path: Path
) -> None:
    incident_id, path = exported_incident(setup, tmp_path)
    records = records_of(path)
    index = max(i for i, r in enumerate(records) if r["record"] == "event")
    hidden = records[index]
    records[index] = {
        "record": "gap",
        "from_seq": hidden["seq"],
        "to_seq": hidden["seq"],
        "incidents": [incident_id + 1],
        "prev_hash": hidden["prev_hash"],
        "hash": hidden["hash"],
    }
    records[-1].update(events=records[-1]["events"] - 1, gaps=records[-1]["gaps"] + 1)
    save(path, records)
    assert rearguard(setup.runtime, "audit", "verify", "--file", str(path)).returncode == 0

    result = verify_file_with_key(setup, path)

    assert result.returncode == 3, result.stderr
    assert f"event {hidden['seq']} disagrees with checkpoint 1" in result.stderr
    assert "withheld" in result.stderr


def test_an_exported_event_rewritten_and_rehashed_fails_with_the_key(
    setup: Setup, tmp_path: Path
) -> None:
    _, path = exported_incident(setup, tmp_path)
    records = records_of(path)
    index = max(i for i, r in enumerate(records) if r["record"] == "event")
    event = records[index]
    event["actor"] = "mallory"
    fields = {name: event[name] for name in HASHED}
    event["hash"] = hashlib.sha256(canonical(fields).encode()).hexdigest()
    records[-1]["last_hash"] = event["hash"]
    save(path, records)
    assert rearguard(setup.runtime, "audit", "verify", "--file", str(path)).returncode == 0

    result = verify_file_with_key(setup, path)

    assert result.returncode == 3, result.stderr
    assert f"event {event['seq']} disagrees with checkpoint 1" in result.stderr
    assert "another hash" in result.stderr


def test_an_export_checked_with_another_key_or_stripped_of_its_checkpoint_fails(
    setup: Setup, tmp_path: Path
) -> None:
    _, path = exported_incident(setup, tmp_path)
    other = write_key(tmp_path / "other.pem").with_suffix(".pub.pem")

    foreign = verify_file_with_key(setup, path, other)
    stripped = tmp_path / "stripped.jsonl"
    save(stripped, [r for r in records_of(path) if r["record"] != "checkpoint"])
    bare = verify_file_with_key(setup, stripped)

    assert foreign.returncode == 3 and "signed by another key" in foreign.stderr
    assert bare.returncode == 3 and "carries no signed checkpoint" in bare.stderr


def test_a_checkpoint_is_refused_over_a_truncated_chain(setup: Setup) -> None:
    two_checkpoints(setup)
    truncate(setup)

    result = rearguard(setup.runtime, "audit", "checkpoint")

    assert result.returncode == 3, result.stderr
    assert "not past the last checkpoint 2" in result.stderr


def test_a_drill_sandbox_signs_no_checkpoints_into_the_applications_sinks(setup: Setup) -> None:
    from rearguard.models.drills.sandbox import sandbox_settings

    sandbox = sandbox_settings(setup.settings, setup.settings.home / "drills" / "run-1")

    assert sandbox.audit.signing_key is None and sandbox.audit.checkpoint_sinks == []
    assert setup.settings.audit.signing_key == setup.key


def test_checkpoint_every_signs_one_after_a_command_once_enough_events_passed(
    setup: Setup,
) -> None:
    toml = setup.runtime.settings.home / "rearguard.toml"
    toml.write_text(toml.read_text() + "checkpoint_every = 5\n")
    append(setup.runtime, 4)
    assert rearguard(setup.runtime, "audit", "verify").returncode == 0
    assert not setup.sink.exists()  # 4 events: not due yet

    append(setup.runtime, 2)
    assert rearguard(setup.runtime, "audit", "verify").returncode == 0

    (line,) = setup.sink.read_text().splitlines()
    assert json.loads(line)["reason"] == "every 5 events"
    assert json.loads(line)["seq"] == 6


def test_a_checkpoint_without_a_signing_key_is_a_configuration_error(setup: Setup) -> None:
    (setup.runtime.settings.home / "rearguard.toml").unlink()
    append(setup.runtime, 1)

    result = rearguard(setup.runtime, "audit", "checkpoint")

    assert result.returncode == 2, result.stderr
    assert "no signing key" in result.stderr and "hint: " in result.stderr


def test_checkpoints_are_read_from_a_url_serving_the_sink(setup: Setup) -> None:
    two_checkpoints(setup)
    served = setup.sink.read_bytes()

    class Sink(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def do_GET(self) -> None:
            found = self.path == "/checkpoints.jsonl"
            body = served if found else b""
            self.send_response(200 if found else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        good = verify_with(setup, f"{base}/checkpoints.jsonl")
        missing = verify_with(setup, f"{base}/nothing.jsonl")
    finally:
        server.shutdown()
        server.server_close()

    assert good.returncode == 0, good.stderr
    assert missing.returncode == 2 and "HTTP 404" in missing.stderr


@pytest.mark.one_database
def test_the_slack_sink_posts_each_checkpoint_and_verify_reads_the_channel_back(
    setup: Setup,
) -> None:
    with SlackServer(channels=("audit-checkpoints",)) as slack:
        settings = with_sinks(setup, "slack:#audit-checkpoints")
        settings = dataclasses.replace(
            settings,
            slack=SlackSettings(token=SecretStr(slack.token), base_url=slack.base_url),
        )
        setup.settings = settings
        append(setup.runtime, 10)
        checkpoint(setup)
        # People talk in the channel too.
        WebClient(token=slack.token, base_url=slack.base_url).chat_postMessage(
            channel="#audit-checkpoints", text="checkpoint 1 seen &amp; filed, <@U0123>"
        )
        append(setup.runtime, 10)
        checkpoint(setup, reason="after <review> & sign-off")
        (setup.runtime.settings.home / "rearguard.toml").write_text(
            f'[notifications.slack]\nbase_url = "{slack.base_url}"\n'
        )
        token = {"REARGUARD_SLACK_TOKEN": slack.token}
        sink = "slack:#audit-checkpoints"

        posted = [
            json.loads(html.unescape(m.text))
            for m in slack.in_channel("audit-checkpoints")
            if m.text.startswith("{")
        ]
        intact = verify_with(setup, sink, env=token)
        truncate(setup)
        truncated = verify_with(setup, sink, env=token)
        tokenless = verify_with(setup, sink)

    assert [p["number"] for p in posted] == [1, 2]
    assert posted == [json.loads(line) for line in setup.sink.read_text().splitlines()]
    assert intact.returncode == 0, intact.stderr
    assert truncated.returncode == 3
    assert "checkpoint 2" in truncated.stdout + truncated.stderr
    assert tokenless.returncode == 2
    assert "REARGUARD_SLACK_TOKEN" in tokenless.stderr


def test_a_slack_sink_that_is_down_keeps_the_checkpoint_for_the_next_pass(setup: Setup) -> None:
    with SlackServer(channels=("audit-checkpoints",)) as slack:
        settings = dataclasses.replace(
            with_sinks(setup, "slack:#audit-checkpoints"),
            slack=SlackSettings(token=SecretStr(slack.token), base_url=slack.base_url),
        )
        append(setup.runtime, 2)
        make_checkpoint(db=setup.runtime.db, settings=settings.audit, reason="test")
        slack.down = True
        failed = publish_pending(db=setup.runtime.db, settings=settings)
        slack.down = False
        later = publish_pending(db=setup.runtime.db, settings=settings)

        assert list(failed.failing) == ["slack:#audit-checkpoints"]
        assert later.failing == {} and later.published == 1
        assert len(slack.in_channel("audit-checkpoints")) == 1
