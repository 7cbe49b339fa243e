"""Slack's Approve and Deny buttons: signed callbacks, verified, never accepted twice.

The callbacks are real Slack-shaped request bodies (form-encoded ``payload``) signed with the
signing secret the way Slack signs them, sent to ``handle_slack_interaction`` directly and
to the intake's route, ``POST /v1/slack/interactions``, over real HTTP on loopback.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from approval_helpers import (
    SLACK_TOKEN,
    PlaybookRun,
    approval_runtime,
    events,
    eventually,
    requests_of,
    signed,
)
from intake_helpers import intake_settings, live_intake
from notification_helpers import new_incident
from pydantic import SecretStr
from scenarios import production_in_db
from slack_sdk import WebClient
from slack_server import Posted, SlackServer

from rearguard.models.enums import Severity
from rearguard.models.incidents.approval_proofs import Proof
from rearguard.models.incidents.approvals import decide, open_request
from rearguard.models.runtime import Runtime
from rearguard.notifications.slack_interactions import handle_slack_interaction, show_ended


@pytest.fixture
def runtime(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Runtime]:
    """A runtime on the approval policy, with a signing secret for Slack callbacks."""
    made = approval_runtime(home, database_url, monkeypatch, tmp_path)
    yield made
    made.db.dispose()


def waiting_request(runtime: Runtime) -> tuple[int, str]:
    """An incident whose rollback waits for alice or bob; its id and the buttons' value."""
    incident_id = new_incident(runtime, severity=Severity.SEV1)
    request = open_request(
        db=runtime.db,
        approvals=runtime.settings.approvals,
        incident_id=incident_id,
        step="rollback",
        rule=runtime.settings.approvals.rules[0],
        actor="playbook:model_compromise",
    )
    return incident_id, request.callback_id


def button_body(
    *, user: str, action: str, callback_id: str, message: Posted | None = None
) -> bytes:
    """The body Slack posts when someone presses one of the buttons (of ``message``)."""
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": "T0TEAM"},
        "team": {"id": "T0TEAM"},
        "actions": [
            {
                "type": "button",
                "block_id": "rearguard_approval",
                "action_id": action,
                "value": callback_id,
                "action_ts": "1764111000.000100",
            }
        ],
        "response_url": "https://hooks.example.invalid/actions/T0TEAM/1/abc",
    }
    if message is not None:
        payload["container"] = {
            "type": "message",
            "message_ts": message.ts,
            "channel_id": message.channel,
            "is_ephemeral": False,
        }
        payload["channel"] = {"id": message.channel, "name": "incidents"}
        payload["message"] = {
            "type": "message",
            "ts": message.ts,
            "text": message.text,
            "blocks": message.blocks,
        }
    return urlencode({"payload": json.dumps(payload)}).encode()


def answer(runtime: Runtime, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    """The status and the line a callback gets."""
    got = handle_slack_interaction(runtime=runtime, headers=headers, body=body)
    return got.status, got.message


def asking(slack: SlackServer) -> list[Posted]:
    """The messages in #incidents that still offer Approve and Deny."""
    return [
        m for m in slack.in_channel("incidents") if any(b["type"] == "actions" for b in m.blocks)
    ]


def test_a_valid_callback_approves_and_its_replay_is_refused(runtime: Runtime) -> None:
    incident_id, callback_id = waiting_request(runtime)
    body = button_body(user="U0ALICE", action="approve", callback_id=callback_id)
    headers = signed(body)

    status, message = answer(runtime, body, headers)
    assert (status, message) == (200, f"rollback of incident {incident_id} approved by alice")
    (request,) = requests_of(runtime, incident_id)
    assert request.status == "approved" and request.decided_by == "alice"
    (decision,) = events(runtime, incident_id, "approval.approved")
    assert decision[1]["actor"] == "alice" and decision[1]["via"] == "slack"

    assert answer(runtime, body, headers) == (
        409,
        "replayed Slack request",
    )


def test_bad_stale_and_unsigned_callbacks_change_nothing(runtime: Runtime) -> None:
    incident_id, callback_id = waiting_request(runtime)
    body = button_body(user="U0ALICE", action="approve", callback_id=callback_id)

    forged = signed(body, secret="not-the-signing-secret")
    stale = signed(body, timestamp=time.time() - 301)
    tampered = signed(body.replace(b"approve", b"deny"))
    answers = [
        answer(runtime, b, h)
        for h, b in ((forged, body), (stale, body), (tampered, body), ({}, body))
    ]

    assert answers == [
        (401, "invalid Slack signature"),
        (401, "stale Slack request (more than 5 minutes old)"),
        (401, "invalid Slack signature"),
        (401, "missing Slack signature headers"),
    ]
    assert requests_of(runtime, incident_id)[0].status == "pending"
    assert not events(runtime, incident_id, "approval.approved")


def test_slack_users_not_entitled_are_refused_and_recorded(runtime: Runtime) -> None:
    incident_id, callback_id = waiting_request(runtime)
    answers = []
    for user in ("U0MALLORY", "U0STRANGER"):
        body = button_body(user=user, action="approve", callback_id=callback_id)
        answers.append(answer(runtime, body, signed(body)))

    assert answers == [
        (403, f"mallory may not decide the rollback of incident {incident_id}"),
        (403, f"slack:U0STRANGER may not decide the rollback of incident {incident_id}"),
    ]
    refused = [d["actor"] for _, d in events(runtime, incident_id, "approval.refused")]
    assert refused == ["mallory", "slack:U0STRANGER"]
    assert requests_of(runtime, incident_id)[0].status == "pending"


@pytest.mark.usefixtures("prefect_api_url")
def test_the_approve_button_of_the_posted_message_resumes_the_playbook_over_http(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with SlackServer(token=SLACK_TOKEN, channels=("incidents",)) as slack:
        runtime = approval_runtime(
            home, database_url, monkeypatch, tmp_path, slack_base_url=slack.base_url
        )
        run = PlaybookRun(runtime)
        # The approvers' message, as Slack received it, with its two buttons.
        (message,) = eventually(lambda: asking(slack), what="the Approve and Deny buttons in Slack")
        (actions,) = [b for b in message.blocks if b["type"] == "actions"]
        buttons = {e["action_id"]: e["value"] for e in actions["elements"]}
        assert sorted(buttons) == ["approve", "deny"]
        shown = [b["type"] for b in message.blocks]
        body = button_body(
            user="U0ALICE", action="approve", callback_id=buttons["approve"], message=message
        )
        headers = signed(body)

        # Slack sends neither the intake's bearer token nor its HMAC signature.
        intake = intake_settings(hmac_secret=SecretStr("the-intake-hmac-secret"))
        with live_intake(runtime, intake=intake, run_playbooks=False) as url:

            def post(headers: dict[str, str]) -> tuple[int, str]:
                answer = httpx.post(f"{url}/v1/slack/interactions", content=body, headers=headers)
                return answer.status_code, answer.text

            forged = post(signed(body, secret="guess"))
            accepted = post(headers)
            # Once answered, the message no longer offers the buttons; it says who decided.
            eventually(lambda: not asking(slack), what="the buttons to give way")
            replayed = post(headers)
            incident = run.result()
            counted = httpx.get(f"{url}/healthz").json()["refused_by_status"]
        runtime.db.dispose()

    assert forged == (401, "invalid Slack signature")
    assert accepted == (200, f"rollback of incident {run.incident_id} approved by alice")
    assert replayed == (409, "replayed Slack request")
    assert counted == {"401": 1, "409": 1}
    assert str(incident.status) == "recovered"
    assert production_in_db(runtime, "model-a") == "v2"
    ended = ["context" if t == "actions" else t for t in shown]
    assert [b["type"] for b in message.blocks] == ended
    line = message.blocks[shown.index("actions")]["elements"][0]["text"]
    assert line.startswith(":white_check_mark: Approved by alice, ") and line.endswith(" UTC")
    assert message.text == f"The rollback of incident {run.incident_id}: {line}"


def test_a_slack_denial_stops_the_step(runtime: Runtime) -> None:
    incident_id, callback_id = waiting_request(runtime)
    body = button_body(user="U0ALICE", action="deny", callback_id=callback_id)

    status, message = answer(runtime, body, signed(body))

    assert (status, message) == (200, f"rollback of incident {incident_id} denied by alice")
    again = button_body(user="U0ALICE", action="approve", callback_id=callback_id)
    assert answer(runtime, again, signed(again)) == (
        409,
        f"the approval of rollback for incident {incident_id} is already denied by alice",
    )


def _asking_message(slack: SlackServer, callback_id: str) -> Posted:
    """Post, as rearguard does, a message offering Approve and Deny for ``callback_id``."""
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "Rollback waits for you"}},
        {
            "type": "actions",
            "block_id": "rearguard_approval",
            "elements": [
                {"type": "button", "action_id": a, "value": callback_id, "text": {}}
                for a in ("approve", "deny")
            ],
        },
    ]
    WebClient(token=SLACK_TOKEN, base_url=slack.base_url).chat_postMessage(
        channel="incidents", text="Rollback waits for you", blocks=blocks
    )
    (message,) = asking(slack)
    return message


@dataclass
class Asking:
    """A request waiting for alice or bob, its message in Slack, and alice's Approve press."""

    slack: SlackServer
    runtime: Runtime
    incident_id: int
    message: Posted
    body: bytes


@contextmanager
def asking_in_slack(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Asking]:
    with SlackServer(token=SLACK_TOKEN, channels=("incidents",)) as slack:
        runtime = approval_runtime(
            home, database_url, monkeypatch, tmp_path, slack_base_url=slack.base_url
        )
        incident_id, callback_id = waiting_request(runtime)
        message = _asking_message(slack, callback_id)
        body = button_body(
            user="U0ALICE", action="approve", callback_id=callback_id, message=message
        )
        try:
            yield Asking(slack, runtime, incident_id, message, body)
        finally:
            runtime.db.dispose()


def test_a_stale_button_is_refused_and_its_message_shows_the_decision_made_elsewhere(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with asking_in_slack(home, database_url, monkeypatch, tmp_path) as on:
        decide(
            db=on.runtime.db,
            approvals=on.runtime.settings.approvals,
            approver="bob",
            approve=False,
            via="cli",
            proof=Proof(),
            incident_id=on.incident_id,
        )

        got = handle_slack_interaction(runtime=on.runtime, headers=signed(on.body), body=on.body)
        assert got.ended is not None
        show_ended(settings=on.runtime.settings, ended=got.ended)

    assert (got.status, got.message) == (
        409,
        f"the approval of rollback for incident {on.incident_id} is already denied by bob",
    )
    assert not asking(on.slack)
    assert on.message.blocks[0]["text"]["text"] == "Rollback waits for you"
    assert on.message.blocks[1]["elements"][0]["text"].startswith(":no_entry: Denied by bob, ")
    assert requests_of(on.runtime, on.incident_id)[0].status == "denied"


def test_when_slack_refuses_the_update_the_decision_stands_and_the_failure_is_logged(
    home: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with asking_in_slack(home, database_url, monkeypatch, tmp_path) as on:
        got = handle_slack_interaction(runtime=on.runtime, headers=signed(on.body), body=on.body)
        on.slack.down = True
        assert got.ended is not None
        show_ended(settings=on.runtime.settings, ended=got.ended)

    assert got.status == 200
    assert requests_of(on.runtime, on.incident_id)[0].status == "approved"
    assert asking(on.slack) == [on.message]  # still offers the buttons; a press now gets 409
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith("the Slack approval message was not updated: ")
    assert SLACK_TOKEN not in warning


def test_a_callback_without_its_message_records_the_decision_and_updates_nothing(
    runtime: Runtime,
) -> None:
    incident_id, callback_id = waiting_request(runtime)
    body = button_body(user="U0ALICE", action="approve", callback_id=callback_id)

    got = handle_slack_interaction(runtime=runtime, headers=signed(body), body=body)

    assert (got.status, got.ended) == (200, None)
    assert requests_of(runtime, incident_id)[0].status == "approved"


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "block_actions", "user": {"id": "U0ALICE"}, "actions": [1]},
        {"type": "block_actions", "user": "U0ALICE", "actions": []},
        {"type": "view_submission", "user": {"id": "U0ALICE"}, "actions": []},
        ["block_actions"],
    ],
)
def test_a_signed_body_that_is_not_a_button_press_is_a_400(
    runtime: Runtime, payload: object
) -> None:
    body = urlencode({"payload": json.dumps(payload)}).encode()
    assert answer(runtime, body, signed(body)) == (400, "not a Slack button callback")


@pytest.mark.parametrize("depth", [100_000, 65])
def test_a_signed_payload_nested_too_deep_is_a_400_not_a_crash(
    runtime: Runtime, depth: int
) -> None:
    nested = "[" * depth + "]" * depth
    body = urlencode({"payload": nested}).encode()
    assert answer(runtime, body, signed(body)) == (400, "not a Slack button callback")
