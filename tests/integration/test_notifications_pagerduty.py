"""PagerDuty through the outbox, to a PagerDuty-compatible Events API v2 server on loopback.

The server checks every event against PagerDuty's documented schema and answers as PagerDuty
does: 202 with the dedup key, 400 with its error body; it can first answer 429 or 5xx. What is
asserted is what the on-call person's PagerDuty would see: one alert per incident (one dedup
key), triggered, acknowledged and resolved by the events that should, once each; and that the
routing key is nowhere but in the request.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from approval_helpers import PlaybookRun, pending_round
from cli_helpers import rearguard
from notification_helpers import (
    PAGERDUTY_KEY,
    PagerDutyReceiver,
    free_port,
    make_runtime,
    new_incident,
)
from scenarios import build_scenario
from sqlalchemy import MetaData, select
from sqlmodel import select as select_rows

from rearguard.models.audit.chain import events_for_incident
from rearguard.models.db.tables import NotificationOutbox
from rearguard.models.enums import IncidentStatus, Severity
from rearguard.models.incidents.approval_proofs import Proof
from rearguard.models.incidents.approvals import decide
from rearguard.models.incidents.service import get_incident, set_incident_status
from rearguard.models.runtime import Runtime
from rearguard.notifications.dispatcher import Dispatcher
from rearguard.notifications.notify import notify
from rearguard.notifications.outbox import enqueue, retry

ROUTE_KEY = "R0ROUTEKEY9876543210zyxwvuZYXWVQ"


def pagerduty_toml(url: str, *, pagerduty: str = "", extra: str = "") -> str:
    """File and PagerDuty at ``url``; ``pagerduty`` adds to its table, ``extra`` more tables."""
    return f"""
[notifications]
channels = ["file", "pagerduty"]
backoff_base_s = 0.05
backoff_max_s = 0.2

[notifications.pagerduty]
events_url = "{url}"
source = "ml-platform.example.org"
review_url = "https://rearguard.example.org/v1/incidents/{{id}}"
timeout_s = 5
{pagerduty}
{extra}
"""


def pd_runtime(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, url: str, **kwargs: str
) -> Runtime:
    return make_runtime(
        home,
        database_url,
        monkeypatch,
        toml=pagerduty_toml(url, **kwargs),
        env={"REARGUARD_PAGERDUTY_ROUTING_KEY": PAGERDUTY_KEY},
    )


def pages(runtime: Runtime) -> list[NotificationOutbox]:
    with runtime.db.read_session() as session:
        statement = select_rows(NotificationOutbox).where(NotificationOutbox.channel == "pagerduty")
        return list(session.exec(statement.order_by(NotificationOutbox.id)))


def drain(runtime: Runtime, wait_s: float = 10) -> None:
    with Dispatcher(settings=runtime.settings, db=runtime.db) as dispatcher:
        dispatcher.drain(wait_s=wait_s)


def everything_stored(runtime: Runtime) -> str:
    """Every row of every table, and the file channel's lines, as text."""
    metadata = MetaData()
    with runtime.db.engine.connect() as connection:
        metadata.reflect(connection)
        rows = [
            repr(tuple(row))
            for table in metadata.sorted_tables
            for row in connection.execute(select(table))
        ]
    lines = runtime.settings.notification_file
    return "\n".join(rows) + (lines.read_text() if lines.exists() else "")


def expected_dedup_key(runtime: Runtime, incident_id: int) -> str:
    with runtime.db.read_session() as session:
        opened = get_incident(session=session, incident_id=incident_id).opened_at
    return f"rearguard-incident-{incident_id}-{opened.isoformat(timespec='seconds')}"


def end_as(runtime: Runtime, incident_id: int, status: IncidentStatus) -> None:
    with runtime.db.session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        set_incident_status(session=session, incident=incident, status=status, actor="test")


def test_an_opened_incident_triggers_a_page_with_its_key_severity_and_review_link(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with PagerDutyReceiver() as server:
        runtime = pd_runtime(home, database_url, monkeypatch, server.url)
        incident = new_incident(runtime, severity=Severity.SEV1, summary="weights changed")
        notify(runtime=runtime, incident_id=incident, event="opened")
        notify(runtime=runtime, incident_id=incident, event="contained")  # pages nobody
        drain(runtime)
        end_as(runtime, incident, IncidentStatus.FAILED)
        notify(runtime=runtime, incident_id=incident, event="failed")
        drain(runtime)

    opened, failed = server.accepted
    assert len(server.requests) == 2
    assert opened["routing_key"] == PAGERDUTY_KEY
    assert opened["event_action"] == "trigger" and failed["event_action"] == "trigger"
    # One alert: both triggers carry the incident's dedup key.
    assert opened["dedup_key"] == failed["dedup_key"] == expected_dedup_key(runtime, incident)
    payload = opened["payload"]
    assert payload["severity"] == "critical"
    assert payload["summary"] == (
        "Incident 1 opened: model_compromise (sev1) on model-a: weights changed"
    )
    assert payload["source"] == "ml-platform.example.org"
    assert payload["component"] == "model-a"
    assert payload["class"] == "model_compromise"
    details = payload["custom_details"]
    assert details["incident"] == incident and details["summary"] == "weights changed"
    assert details["show"] == f"rearguard incident show {incident}"
    assert opened["links"] == [
        {
            "href": f"https://rearguard.example.org/v1/incidents/{incident}",
            "text": "Incident 1 review",
        }
    ]
    assert failed["payload"]["summary"].startswith("Incident 1 FAILED to recover")
    rows = pages(runtime)
    assert [(r.event, r.status) for r in rows] == [("opened", "delivered"), ("failed", "delivered")]
    assert json.loads(rows[0].receipt or "{}") == {
        "status": 202,
        "action": "trigger",
        "dedup_key": opened["dedup_key"],
    }
    # The key is only ever in the request: not in the outbox, the timeline or the file.
    assert rows[0].destination.startswith("key-")
    assert PAGERDUTY_KEY not in everything_stored(runtime)


@pytest.mark.parametrize(
    ("severity", "expected"),
    [(Severity.SEV2, "error"), (Severity.SEV3, "warning"), (Severity.SEV4, "info")],
)
def test_each_severity_pages_at_its_pagerduty_severity(
    home: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    severity: Severity,
    expected: str,
) -> None:
    with PagerDutyReceiver() as server:
        runtime = pd_runtime(home, database_url, monkeypatch, server.url)
        incident = new_incident(runtime, severity=severity)
        notify(runtime=runtime, incident_id=incident, event="opened")
        drain(runtime)

    (page,) = server.accepted
    assert page["payload"]["severity"] == expected


def test_a_routes_key_pages_its_incidents_and_the_default_the_others(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    route = """
[[notifications.routes]]
severities = ["sev1"]
pagerduty = "env:EXEC_PAGERDUTY_KEY"
"""
    monkeypatch.setenv("EXEC_PAGERDUTY_KEY", ROUTE_KEY)
    with PagerDutyReceiver() as server:
        runtime = pd_runtime(home, database_url, monkeypatch, server.url, extra=route)
        worst = new_incident(runtime, asset="model-a", severity=Severity.SEV1)
        other = new_incident(runtime, asset="model-b", severity=Severity.SEV3)
        for incident in (worst, other):
            notify(runtime=runtime, incident_id=incident, event="opened")
        drain(runtime)

    keys = {page["payload"]["component"]: page["routing_key"] for page in server.accepted}
    assert keys == {"model-a": ROUTE_KEY, "model-b": PAGERDUTY_KEY}
    assert sorted(r.destination for r in pages(runtime))[0] == "env:EXEC_PAGERDUTY_KEY"
    assert ROUTE_KEY not in everything_stored(runtime)


def test_429_and_500_are_retried_after_retry_after_and_the_page_arrives_once(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = [(429, {"Retry-After": "120"}), (500, {})]
    with PagerDutyReceiver(statuses=answers) as server:
        runtime = pd_runtime(home, database_url, monkeypatch, server.url)
        incident = new_incident(runtime)
        notify(runtime=runtime, incident_id=incident, event="opened")
        with Dispatcher(settings=runtime.settings, db=runtime.db) as dispatcher:
            dispatcher.run_once()
        (waiting,) = pages(runtime)
        assert waiting.status == "pending"
        assert waiting.last_error == "pagerduty: HTTP 429: try again"
        # PagerDuty asked for two minutes: the next attempt is not before then.
        assert (waiting.next_attempt_at - waiting.updated_at).total_seconds() >= 119
        # A person does not want to wait (`rearguard notifications retry`).
        with runtime.db.transaction() as connection:
            retry(connection, outbox_ids=[waiting.id or 0], actor="oncall")
        drain(runtime)

    (row,) = pages(runtime)
    assert row.status == "delivered" and row.attempts == 3
    assert len(server.requests) == 3
    assert {r["dedup_key"] for r in server.requests} == {expected_dedup_key(runtime, incident)}
    assert len(server.accepted) == 1


def test_a_400_is_a_permanent_failure_with_pagerdutys_reason(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    short_key = "R0tooshort0123456789"
    with PagerDutyReceiver() as server:
        runtime = make_runtime(
            home,
            database_url,
            monkeypatch,
            toml=pagerduty_toml(server.url),
            env={"REARGUARD_PAGERDUTY_ROUTING_KEY": short_key},
        )
        incident = new_incident(runtime)
        notify(runtime=runtime, incident_id=incident, event="opened")
        drain(runtime)
        drain(runtime)

    (row,) = pages(runtime)
    assert row.status == "failed" and row.attempts == 1
    assert row.last_error == (
        "pagerduty: HTTP 400: Event object is invalid; "
        "Length of 'routing_key' is incorrect (should be 32 characters)"
    )
    assert len(server.requests) == 1 and server.accepted == []
    with runtime.db.read_session() as session:
        events = events_for_incident(session=session, incident_id=incident)
    (failure,) = [e for e in events if e.action == "notification.failed"]
    assert "Event object is invalid" in failure.data
    assert short_key not in everything_stored(runtime)


def test_resolving_the_incident_resolves_its_page(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CLI runs without the test's environment: this key is the route's, in the file.
    route = f"""
[[notifications.routes]]
pagerduty = "{ROUTE_KEY}"
"""
    with PagerDutyReceiver() as server:
        runtime = pd_runtime(home, database_url, monkeypatch, server.url, extra=route)
        incident = new_incident(runtime)
        notify(runtime=runtime, incident_id=incident, event="opened")
        notify(runtime=runtime, incident_id=incident, event="recovered")  # not without the setting
        drain(runtime)
        end_as(runtime, incident, IncidentStatus.RECOVERED)

        done = rearguard(runtime, "incident", "resolve", str(incident), "--by", "alice")

    assert done.returncode == 0, done.stderr
    assert [(p["event_action"], p["routing_key"]) for p in server.accepted] == [
        ("trigger", ROUTE_KEY),
        ("resolve", ROUTE_KEY),
    ]
    assert server.accepted[1] == {
        "routing_key": ROUTE_KEY,
        "event_action": "resolve",
        "dedup_key": expected_dedup_key(runtime, incident),
    }
    assert [(r.event, r.status) for r in pages(runtime)] == [
        ("opened", "delivered"),
        ("resolved", "delivered"),
    ]
    # Only PagerDuty is told of the resolution: the file channel has no "resolved" line.
    lines = runtime.settings.notification_file.read_text().splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["opened", "recovered"]


def test_without_pagerduty_a_resolution_records_no_notification(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = make_runtime(home, database_url, monkeypatch)  # console and file only
    incident = new_incident(runtime)
    with runtime.db.session() as session:
        found = get_incident(session=session, incident_id=incident)
        queued = enqueue(
            session, settings=runtime.settings, incident=found, event="resolved", actor="alice"
        )

    assert queued.rows == 0 and queued.event_seq is None
    with runtime.db.read_session() as session:
        actions = [e.action for e in events_for_incident(session=session, incident_id=incident)]
    assert actions == ["incident.opened"]


APPROVAL_POLICY = """
[approvals]
poll_s = 0.1
allow_self_asserted = true

[approvals.groups]
sre = ["alice", "bob"]

[[approvals.rules]]
playbook = "model_compromise"
steps = ["rollback"]
approvers = ["sre"]
timeout_s = 120
on_timeout = "abort"
"""


@pytest.mark.usefixtures("prefect_api_url")
def test_pagerduty_down_for_the_whole_incident_delays_only_the_pages(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    port = free_port()  # PagerDuty is down: nothing listens there for the whole incident
    url = f"http://127.0.0.1:{port}/v2/enqueue"
    toml = pagerduty_toml(url, pagerduty="resolve_on_recovered = true", extra=APPROVAL_POLICY)
    runtime = make_runtime(
        home,
        database_url,
        monkeypatch,
        toml=toml,
        env={"REARGUARD_PAGERDUTY_ROUTING_KEY": PAGERDUTY_KEY},
    )
    build_scenario(runtime, tmp_path, tampered=True)
    run = PlaybookRun(runtime)
    pending_round(runtime, run.incident_id)
    decide(
        db=runtime.db,
        approvals=runtime.settings.approvals,
        approver="alice",
        approve=True,
        comment="go",
        via="cli",
        proof=Proof(),  # alice's word: the policy allows it (allow_self_asserted)
        incident_id=run.incident_id,
    )
    ended = run.result(timeout=120)

    # The rollback did not wait for PagerDuty: recovered, with every page still waiting.
    assert str(ended.status) == "recovered"
    waiting = pages(runtime)
    assert [(r.event, r.status) for r in waiting] == [
        ("opened", "pending"),
        ("acknowledged", "pending"),
        ("recovered", "pending"),
    ]
    assert (waiting[0].last_error or "").startswith("pagerduty: cannot connect")

    with PagerDutyReceiver(port=port) as server:  # PagerDuty is back
        drain(runtime)
        drain(runtime)

    dedup = expected_dedup_key(runtime, run.incident_id)
    assert [(p["event_action"], p["dedup_key"]) for p in server.accepted] == [
        ("trigger", dedup),
        ("acknowledge", dedup),
        ("resolve", dedup),
    ]
    assert len(server.requests) == 3  # once each
    with runtime.db.read_session() as session:
        events = events_for_incident(session=session, incident_id=run.incident_id)
    recovered = next(e.seq for e in events if e.action == "incident.recovered")
    paged = [
        e.seq
        for e in events
        if e.action == "notification.delivered" and json.loads(e.data)["channel"] == "pagerduty"
    ]
    assert len(paged) == 3 and min(paged) > recovered
