"""Slack's Approve and Deny buttons: signed callbacks, verified, never accepted twice.

The callbacks are real Slack-shaped request bodies (form-encoded ``payload``) signed with the
signing secret the way Slack signs them, sent to ``handle_slack_interaction`` directly and
to the intake's route, ``POST /v1/slack/interactions``, over real HTTP on loopback.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from approval_helpers import (
    SLACK_SIGNING_SECRET,
    SLACK_TOKEN,
    PlaybookRun,
    approval_runtime,
    events,
    eventually,
    requests_of,
)
from intake_helpers import intake_settings, live_intake
from notification_helpers import new_incident
from pydantic import SecretStr
from scenarios import production_in_db
from slack_server import SlackServer

from rearguard.models.approvals import open_request
from rearguard.models.enums import Severity
from rearguard.models.runtime import Runtime
from rearguard.notifications.slack_interactions import handle_slack_interaction, sign


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


def button_body(*, user: str, action: str, callback_id: str) -> bytes:
    """The body Slack posts when someone presses one of the message's buttons."""
    payload = {
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
    return urlencode({"payload": json.dumps(payload)}).encode()


def signed(
    body: bytes, *, timestamp: float | None = None, secret: str = SLACK_SIGNING_SECRET
) -> dict[str, str]:
    """Slack's headers for a body: its v0 signature and the request timestamp."""
    stamp = str(int(time.time() if timestamp is None else timestamp))
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": sign(secret=secret, timestamp=stamp, body=body),
    }


def test_a_valid_callback_approves_and_its_replay_is_refused(runtime: Runtime) -> None:
    incident_id, callback_id = waiting_request(runtime)
    body = button_body(user="U0ALICE", action="approve", callback_id=callback_id)
    headers = signed(body)

    status, message = handle_slack_interaction(runtime=runtime, headers=headers, body=body)
    assert (status, message) == (200, f"rollback of incident {incident_id} approved by alice")
    (request,) = requests_of(runtime, incident_id)
    assert request.status == "approved" and request.decided_by == "alice"
    (decision,) = events(runtime, incident_id, "approval.approved")
    assert decision[1]["actor"] == "alice" and decision[1]["via"] == "slack"

    assert handle_slack_interaction(runtime=runtime, headers=headers, body=body) == (
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
        handle_slack_interaction(runtime=runtime, headers=h, body=b)
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
        answers.append(handle_slack_interaction(runtime=runtime, headers=signed(body), body=body))

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

        def posted() -> list[dict[str, Any]]:
            return [
                b for m in slack.in_channel("incidents") for b in m.blocks if b["type"] == "actions"
            ]

        (actions,) = eventually(posted, what="the Approve and Deny buttons in Slack")
        buttons = {e["action_id"]: e["value"] for e in actions["elements"]}
        assert sorted(buttons) == ["approve", "deny"]
        body = button_body(user="U0ALICE", action="approve", callback_id=buttons["approve"])
        headers = signed(body)

        # Slack sends neither the intake's bearer token nor its HMAC signature.
        intake = intake_settings(hmac_secret=SecretStr("the-intake-hmac-secret"))
        with live_intake(runtime, intake=intake, run_playbooks=False) as url:

            def post(headers: dict[str, str]) -> tuple[int, str]:
                answer = httpx.post(f"{url}/v1/slack/interactions", content=body, headers=headers)
                return answer.status_code, answer.text

            forged = post(signed(body, secret="guess"))
            accepted = post(headers)
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


def test_a_slack_denial_stops_the_step(runtime: Runtime) -> None:
    incident_id, callback_id = waiting_request(runtime)
    body = button_body(user="U0ALICE", action="deny", callback_id=callback_id)

    status, message = handle_slack_interaction(runtime=runtime, headers=signed(body), body=body)

    assert (status, message) == (200, f"rollback of incident {incident_id} denied by alice")
    again = button_body(user="U0ALICE", action="approve", callback_id=callback_id)
    assert handle_slack_interaction(runtime=runtime, headers=signed(again), body=again) == (
        409,
        f"the approval of rollback for incident {incident_id} is already denied by alice",
    )
