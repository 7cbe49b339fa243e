"""Notifications from the command line: real ``rearguard`` subprocesses, real incidents, a
Slack-like server on loopback (``tests/slack_server.py``).

The subprocess reads its Slack settings from the environment, as a deployment would.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from notification_helpers import build_asset
from slack_server import SlackServer

from rearguard.models.runtime import Runtime

TOKEN = "xoxb-cli-test-token"
Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def slack() -> Iterator[SlackServer]:
    with SlackServer(token=TOKEN, channels=("incidents",)) as server:
        yield server


def slack_env(slack: SlackServer, **more: str) -> dict[str, str]:
    return {
        "REARGUARD_NOTIFY_CHANNELS": "file,slack",
        "REARGUARD_NOTIFY_DISPATCH_WAIT_S": "0.5",
        "REARGUARD_NOTIFY_BACKOFF_BASE_S": "0.1",
        "REARGUARD_SLACK_TOKEN": TOKEN,
        "REARGUARD_SLACK_CHANNEL": "#incidents",
        "REARGUARD_SLACK_BASE_URL": slack.base_url,
        **more,
    }


def as_json(result: subprocess.CompletedProcess[str], code: int = 0) -> Any:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    return json.loads(result.stdout)


def test_incident_recovers_while_slack_is_down_and_dispatch_delivers_later(
    runtime: Runtime, tmp_path: Path, cli: Cli, slack: SlackServer
) -> None:
    build_asset(runtime, tmp_path)
    env = slack_env(slack, REARGUARD_NOTIFY_DISPATCH_WAIT_S="60")
    slack.down = True

    opened = cli("incident", "open", "--type", "model_compromise", "--asset", "model-a", env=env)

    assert opened.returncode == 0, opened.stderr
    assert "incident 1: recovered; model-a production -> v2" in opened.stdout
    assert "notifications" in opened.stderr and "3 waiting" in opened.stderr
    # Newest first.
    pending = as_json(cli("notifications", "list", "--pending", "--json", env=env))[::-1]
    assert [(p["channel"], p["destination"], p["event"]) for p in pending] == [
        ("slack", "#incidents", "opened"),
        ("slack", "#incidents", "contained"),
        ("slack", "#incidents", "recovered"),
    ]
    assert pending[0]["last_error"] == "slack: service_unavailable"
    # Two failures in a row: Slack is down, and the command did not wait out the outage.
    assert pending[0]["attempts"] == 2

    slack.down = False
    report = as_json(cli("notifications", "dispatch", "--json", env=env))

    assert report["delivered"] == 3 and report["pending"] == 0
    # Delivered in order, in one thread: the first message starts it, the others reply.
    first, *replies = slack.messages
    assert first.thread_ts is None and first.text.startswith("Incident 1 opened")
    assert [m.thread_ts for m in replies] == [first.ts, first.ts]
    # Slack's fallback text is mrkdwn: its ">" is escaped (Slack shows "->").
    assert replies[-1].text.startswith("Incident 1 recovered: model-a production -&gt; v2")
    assert "contained" in replies[0].text
    assert as_json(cli("notifications", "list", "--pending", "--json", env=env)) == []
    again = as_json(cli("notifications", "dispatch", "--json", env=env))
    assert again["delivered"] == 0 and len(slack.messages) == 3


def test_a_crash_between_sending_and_recording_does_not_send_twice(
    runtime: Runtime, tmp_path: Path, cli: Cli, slack: SlackServer
) -> None:
    build_asset(runtime, tmp_path)
    env = slack_env(slack, REARGUARD_NOTIFY_LEASE_S="1")
    slack.down = True
    assert cli("incident", "open", "--type", "model_compromise", "--asset", "model-a", env=env)
    slack.down = False

    crashed = cli(
        "notifications",
        "dispatch",
        env={**env, "REARGUARD_FAILPOINTS": "notification.after_send=kill"},
    )

    assert crashed.returncode == -9
    assert len(slack.messages) == 1
    # Newest first: the dead dispatcher had claimed all three and sent the first.
    *waiting, row = as_json(cli("notifications", "list", "--pending", "--json", env=env))
    assert row["status"] == "sending" and row["event"] == "opened"
    assert [w["event"] for w in waiting] == ["recovered", "contained"]
    time.sleep(1.2)  # the dead dispatcher's lease runs out

    report = as_json(cli("notifications", "dispatch", "--json", env=env))

    assert report["delivered"] == 3
    assert [m.metadata["event_payload"]["event"] for m in slack.messages] == [
        "opened",
        "contained",
        "recovered",
    ]
    slack_rows = [
        r
        for r in as_json(cli("notifications", "list", "--json", "--incident", "1", env=env))
        if r["channel"] == "slack"
    ]
    first = slack_rows[-1]
    assert first["status"] == "delivered"
    assert first["receipt"]["found_after_doubt"] is True
    assert first["receipt"]["ts"] == slack.messages[0].ts


def test_a_permanent_failure_is_listed_and_retried_after_the_fix(
    runtime: Runtime, tmp_path: Path, cli: Cli, slack: SlackServer
) -> None:
    build_asset(runtime, tmp_path)
    env = slack_env(slack, REARGUARD_SLACK_CHANNEL="#war-room")

    cli("incident", "open", "--type", "model_compromise", "--asset", "model-a", env=env)

    failed = as_json(cli("notifications", "list", "--failed", "--json", env=env))
    assert [f["event"] for f in failed] == ["recovered", "contained", "opened"]
    assert {(f["last_error"], f["attempts"]) for f in failed} == {("slack: channel_not_found", 1)}
    slack.add_channel("war-room")
    retried = cli("notifications", "retry", *(str(f["id"]) for f in failed), env=env)
    assert retried.returncode == 0, retried.stderr
    assert "3 delivered" in retried.stdout
    assert len(slack.in_channel("war-room")) == 3
    shown = as_json(cli("incident", "show", "1", "--json", env=env))
    slack_events = [e["action"] for e in shown["timeline"] if e["data"].get("channel") == "slack"]
    assert slack_events[:3] == ["notification.failed"] * 3
    assert sorted(slack_events[3:]) == ["notification.delivered"] * 3 + ["notification.retry"] * 3


def test_notify_test_reports_the_outcome(runtime: Runtime, cli: Cli, slack: SlackServer) -> None:
    env = slack_env(slack)

    sent = as_json(cli("notify", "test", "--channel", "slack", "--json", env=env))
    assert sent["ok"] is True and sent["destination"] == "#incidents"
    (message,) = slack.in_channel("incidents")
    assert message.blocks[0]["text"]["text"] == "rearguard test notification"

    refused = cli(
        "notify", "test", "--channel", "slack", env={**env, "REARGUARD_SLACK_TOKEN": "xoxb-bad-1"}
    )
    assert refused.returncode == 1
    assert "not delivered to slack (#incidents) (permanent): slack: invalid_auth" in refused.stderr

    missing = cli("notify", "test", "--channel", "webhook", env=env)
    assert missing.returncode == 2
    assert missing.stderr.splitlines()[0] == "error: no webhook URL"
    shown = as_json(cli("audit", "verify", "--json", env=env))
    assert shown["ok"] is True
