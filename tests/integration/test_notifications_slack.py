"""Slack delivery through the outbox: the real ``slack_sdk.WebClient`` against a Slack-like
server on loopback (``tests/slack_server.py``) that checks the token, enforces Slack's limits
and fails on demand.

What is asserted is what people in Slack would see: which messages arrive, in which channel
and thread, in which order, how many times; and what the outbox and the timeline say.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from notification_helpers import build_asset, make_runtime, new_incident
from slack_server import SlackServer
from sqlmodel import select

from rearguard.flows.run_playbook import run_playbook
from rearguard.models.assets.versions import approve_version
from rearguard.models.audit.chain import events_for_incident, verify_stored_chain
from rearguard.models.db.tables import NotificationOutbox
from rearguard.models.enums import IncidentSource
from rearguard.models.runtime import Runtime
from rearguard.notifications.dispatcher import Dispatcher
from rearguard.notifications.notify import notify

TOKEN = "xoxb-test-token"


@pytest.fixture
def slack() -> Iterator[SlackServer]:
    with SlackServer(token=TOKEN, channels=("incidents", "ir-drills", "sec-leads")) as server:
        yield server


def slack_runtime(
    home: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    slack: SlackServer,
    *,
    extra: str = "",
    token: str = TOKEN,
    wait_s: float = 0,
) -> Runtime:
    toml = f"""
[notifications]
channels = ["file", "slack"]
dispatch_wait_s = {wait_s}
backoff_base_s = 0.05
backoff_max_s = 0.2
drill_slack_channel = "#ir-drills"
{extra}

[notifications.slack]
channel = "#incidents"
base_url = "{slack.base_url}"
timeout_s = 5
"""
    return make_runtime(
        home, database_url, monkeypatch, toml=toml, env={"REARGUARD_SLACK_TOKEN": token}
    )


def outbox(runtime: Runtime, channel: str = "slack") -> list[NotificationOutbox]:
    with runtime.db.read_session() as session:
        statement = select(NotificationOutbox).where(NotificationOutbox.channel == channel)
        return list(session.exec(statement.order_by(NotificationOutbox.id)))


def drain(runtime: Runtime, wait_s: float = 5) -> None:
    with Dispatcher(settings=runtime.settings, db=runtime.db) as dispatcher:
        dispatcher.drain(wait_s=wait_s)


def keys_of(server: SlackServer, channel: str) -> list[str]:
    return [m.metadata["event_payload"]["rearguard_id"] for m in server.in_channel(channel)]


def test_first_message_starts_a_thread_and_later_ones_go_into_it(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, slack: SlackServer
) -> None:
    runtime = slack_runtime(home, database_url, monkeypatch, slack)
    first = new_incident(runtime, asset=None)
    second = new_incident(runtime, asset=None)
    for event in ("opened", "contained"):
        notify(runtime=runtime, incident_id=first, event=event)
    notify(runtime=runtime, incident_id=second, event="opened")
    notify(runtime=runtime, incident_id=first, event="recovered")

    drain(runtime)

    posted = slack.in_channel("incidents")
    assert len(posted) == 4
    first_messages = [m for m in posted if "Incident 1 " in m.text]
    assert [m.text.split("\n")[0].split(":")[0] for m in first_messages] == [
        "Incident 1 opened",
        "Incident 1 contained",
        "Incident 1 recovered",
    ]
    root = first_messages[0]
    assert root.thread_ts is None
    assert [m.thread_ts for m in first_messages[1:]] == [root.ts, root.ts]
    (other,) = [m for m in posted if "Incident 2 " in m.text]
    assert other.thread_ts is None and other.ts != root.ts
    rows = outbox(runtime)
    assert {r.status for r in rows} == {"delivered"}
    receipts = {r.id: json.loads(r.receipt or "{}") for r in rows}
    assert {r["ts"] for r in receipts.values()} == {m.ts for m in posted}
    with runtime.db.read_session() as session:
        events = events_for_incident(session=session, incident_id=first)
        assert verify_stored_chain(session).ok
    delivered = [json.loads(e.data) for e in events if e.action == "notification.delivered"]
    slack_receipts = [d["receipt"]["ts"] for d in delivered if d["channel"] == "slack"]
    assert slack_receipts == [m.ts for m in first_messages]


def test_rate_limit_is_honoured_and_nothing_is_lost_or_repeated(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, slack: SlackServer
) -> None:
    runtime = slack_runtime(home, database_url, monkeypatch, slack)
    incident = new_incident(runtime, asset=None)
    notify(runtime=runtime, incident_id=incident, event="opened")
    slack.rate_limit(1, retry_after=2)

    with Dispatcher(settings=runtime.settings, db=runtime.db) as dispatcher:
        before = datetime.now(UTC)
        dispatcher.run_once()
        (row,) = outbox(runtime)
        assert row.status == "pending"
        assert row.last_error == "slack: ratelimited (retry after 2 s)"
        assert (row.next_attempt_at - before).total_seconds() >= 2
        # Not due yet: a second round sends nothing.
        dispatcher.run_once()
        assert slack.calls == ["chat.postMessage"]
        dispatcher.drain(wait_s=10)

    (row,) = outbox(runtime)
    assert row.status == "delivered" and row.attempts == 2
    assert len(slack.in_channel("incidents")) == 1


def test_permanent_errors_fail_once_and_are_not_retried(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, slack: SlackServer
) -> None:
    slack.add_channel("private-ops", member=False)
    extra = """
[[notifications.routes]]
severities = ["sev2"]
slack = ["#private-ops", "#no-such-channel", "#sec-leads"]
"""
    runtime = slack_runtime(home, database_url, monkeypatch, slack, extra=extra)
    incident = new_incident(runtime, asset=None)
    notify(runtime=runtime, incident_id=incident, event="opened")

    drain(runtime)
    drain(runtime)

    by_destination = {r.destination: r for r in outbox(runtime)}
    assert by_destination["#private-ops"].status == "failed"
    assert by_destination["#private-ops"].last_error == "slack: not_in_channel"
    assert by_destination["#no-such-channel"].last_error == "slack: channel_not_found"
    assert {r.attempts for r in by_destination.values()} == {1}
    assert by_destination["#incidents"].status == "delivered"
    assert by_destination["#sec-leads"].status == "delivered"
    with runtime.db.read_session() as session:
        events = events_for_incident(session=session, incident_id=incident)
    failed = [json.loads(e.data) for e in events if e.action == "notification.failed"]
    assert sorted(f["destination"] for f in failed) == ["#no-such-channel", "#private-ops"]


def test_a_wrong_token_is_a_permanent_invalid_auth_and_never_recorded(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, slack: SlackServer
) -> None:
    runtime = slack_runtime(home, database_url, monkeypatch, slack, token="xoxb-wrong-123456")
    incident = new_incident(runtime, asset=None)
    notify(runtime=runtime, incident_id=incident, event="opened")

    drain(runtime)

    (row,) = outbox(runtime)
    assert row.status == "failed" and row.last_error == "slack: invalid_auth"
    assert slack.messages == []
    with runtime.db.read_session() as session:
        texts = [e.data for e in events_for_incident(session=session, incident_id=incident)]
    assert not any("xoxb-wrong" in text for text in texts)
    assert "xoxb-wrong" not in row.payload


def test_a_send_in_doubt_is_looked_up_not_repeated(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, slack: SlackServer
) -> None:
    runtime = slack_runtime(home, database_url, monkeypatch, slack)
    incident = new_incident(runtime, asset=None)
    notify(runtime=runtime, incident_id=incident, event="opened")
    notify(runtime=runtime, incident_id=incident, event="recovered")
    slack.accept_then_fail(1)

    drain(runtime)

    posted = slack.in_channel("incidents")
    assert len(posted) == 2
    assert posted[1].thread_ts == posted[0].ts
    rows = outbox(runtime)
    assert [r.status for r in rows] == ["delivered", "delivered"]
    assert json.loads(rows[0].receipt or "{}")["found_after_doubt"] is True
    assert "conversations.history" in slack.calls


def test_huge_summary_is_cut_to_slacks_limits_not_rejected(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, slack: SlackServer
) -> None:
    runtime = slack_runtime(home, database_url, monkeypatch, slack)
    incident = new_incident(runtime, asset="a" * 120, summary="drift <&> " * 999)
    notify(runtime=runtime, incident_id=incident, event="failed")

    drain(runtime)

    (row,) = outbox(runtime)
    assert row.status == "delivered", row.last_error
    (message,) = slack.in_channel("incidents")
    header = message.blocks[0]["text"]["text"]
    assert len(header) <= 150
    section = message.blocks[1]["text"]["text"]
    assert len(section) <= 3000
    assert section.endswith("(truncated; full record: `rearguard incident show 1`)")


def test_drills_go_to_the_drill_channel_marked_drill(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, slack: SlackServer
) -> None:
    runtime = slack_runtime(home, database_url, monkeypatch, slack)
    drill = new_incident(runtime, asset=None, source=IncidentSource.DRILL)
    notify(runtime=runtime, incident_id=drill, event="recovered")

    drain(runtime)

    assert slack.in_channel("incidents") == []
    (message,) = slack.in_channel("ir-drills")
    assert message.blocks[0]["text"]["text"].startswith("[DRILL] Incident 1 recovered")


def test_dedicated_incident_channel_is_created_and_stakeholders_invited(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, slack: SlackServer
) -> None:
    extra = """
[notifications.stakeholders.default]
on_call = ["slack:U0ONCALL", "oncall@example.com"]

[notifications.stakeholders.assets."model-a"]
asset_owner = ["slack:U0OWNER"]
"""
    runtime = slack_runtime(home, database_url, monkeypatch, slack, extra=extra)
    monkeypatch.setenv("REARGUARD_SLACK_INCIDENT_CHANNELS", "true")
    runtime = slack_runtime(home, database_url, monkeypatch, slack, extra=extra)
    incident = new_incident(runtime)
    notify(runtime=runtime, incident_id=incident, event="opened")
    notify(runtime=runtime, incident_id=incident, event="recovered")

    drain(runtime)

    channel = slack.channels[slack._find("inc-1-model-a") or ""]
    assert channel.members == {"U0ONCALL", "U0OWNER"}
    dedicated = slack.in_channel("inc-1-model-a")
    assert [m.thread_ts for m in dedicated] == [None, None]
    main = slack.in_channel("incidents")
    assert len(main) == 2 and main[1].thread_ts == main[0].ts
    assert "<@U0ONCALL> <@U0OWNER>" in json.dumps(main[0].blocks)
    assert slack.calls.count("conversations.create") == 1


@pytest.mark.usefixtures("prefect_api_url")
def test_slack_down_for_the_whole_playbook_then_delivered_in_order_in_the_thread(
    home: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    slack: SlackServer,
    tmp_path: Path,
) -> None:
    runtime = slack_runtime(home, database_url, monkeypatch, slack, wait_s=0.3)
    build_asset(runtime, tmp_path, approved=())
    incident = new_incident(runtime)
    slack.down = True

    failed = run_playbook(runtime=runtime, incident_id=incident)
    assert str(failed.status) == "failed"
    approve_version(db=runtime.db, registry=runtime.registry, name="model-a", label="v2", by="al")
    recovered = run_playbook(runtime=runtime, incident_id=incident)

    # The rollback did not wait for Slack.
    assert str(recovered.status) == "recovered"
    assert slack.messages == []
    # Opened, contained, failed; the rerun contains it again and recovers it.
    events = ["opened", "contained", "failed", "contained", "recovered"]
    assert [r.status for r in outbox(runtime)] == ["pending"] * 5
    file_rows = outbox(runtime, "file")
    assert [r.status for r in file_rows] == ["delivered"] * 5

    slack.down = False
    drain(runtime)

    posted = slack.in_channel("incidents")
    assert [m.metadata["event_payload"]["event"] for m in posted] == events
    assert posted[0].thread_ts is None
    assert all(m.thread_ts == posted[0].ts for m in posted[1:])
    assert len(set(keys_of(slack, "incidents"))) == 5
    drain(runtime)
    assert len(slack.in_channel("incidents")) == 5
    with runtime.db.read_session() as session:
        assert verify_stored_chain(session).ok


def test_the_fallback_text_is_escaped_like_the_blocks(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, slack: SlackServer
) -> None:
    runtime = slack_runtime(home, database_url, monkeypatch, slack)
    summary = "<!channel> <!here> <@U0BOSS> see <http://evil.example|the runbook> & more"
    incident = new_incident(runtime, asset=None, summary=summary)
    notify(runtime=runtime, incident_id=incident, event="failed")

    drain(runtime)

    (message,) = slack.in_channel("incidents")
    for text in (message.text, json.dumps(message.blocks)):
        assert "<!channel>" not in text and "<!here>" not in text and "<@U0BOSS>" not in text
        assert "<http://evil" not in text
    assert "&lt;!channel&gt; &lt;!here&gt; &lt;@U0BOSS&gt;" in message.text
    assert "&lt;http://evil.example|the runbook&gt; &amp; more" in message.text
