"""``/rearguard``, the Slack slash command: signed requests to ``POST /v1/slack/commands``.

The requests are the form Slack posts for a slash command, signed with the signing secret the
way Slack signs them, sent to the intake app in process (its real routes, guard and writer).
The people: U0ALICE is alice (in the sre group: may open, and may drill), U0MALLORY is
mallory (mapped, allowed nothing), U0STRANGER is no one.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from approval_helpers import (
    SLACK_SIGNING_SECRET,
    SLACK_TOKEN,
    events,
    eventually,
    policy_toml,
    requests_of,
    signed,
)
from fastapi.testclient import TestClient
from intake_helpers import intake_settings
from notification_helpers import make_runtime, new_incident
from scenarios import build_scenario
from slack_server import SlackServer
from sqlmodel import col, select

from rearguard.flows.intake.app import create_app
from rearguard.flows.intake.slack_commands import answer_command
from rearguard.models.db.tables import Incident, TimelineEvent
from rearguard.models.drills.service import add_drill, list_runs
from rearguard.models.enums import Severity
from rearguard.models.incidents.approvals import open_request
from rearguard.models.runtime import Runtime

PATH = "/v1/slack/commands"
ALLOW = """
[slack_commands]
allow = { open = ["sre"], drill = ["alice"] }
"""
_TRIGGERS = itertools.count(1)


def command_runtime(
    home: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    *,
    toml: str = "",
) -> Runtime:
    """The approval policy, the allow list, and model-a with a tampered v3 in production."""
    runtime = make_runtime(
        home,
        database_url,
        monkeypatch,
        toml=policy_toml() + ALLOW + toml,
        env={
            "REARGUARD_SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET,
            "REARGUARD_SLACK_TOKEN": SLACK_TOKEN,
        },
    )
    build_scenario(runtime, tmp_path, tampered=True)
    return runtime


@pytest.fixture
def runtime(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Runtime]:
    made = command_runtime(home, database_url, monkeypatch, tmp_path)
    yield made
    made.db.dispose()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    """The intake in process, recording incidents without running playbooks."""
    with TestClient(create_app(runtime, intake=intake_settings(), run_playbooks=False)) as c:
        yield c


def command_body(
    text: str,
    *,
    user: str = "U0ALICE",
    response_url: str = "https://hooks.slack.com/commands/T0TEAM/1/abc",
) -> bytes:
    """The form Slack posts when ``user`` types ``/rearguard text`` (each with its own
    trigger_id, as Slack's are)."""
    return urlencode(
        {
            "token": "deprecated-verification-token",
            "team_id": "T0TEAM",
            "team_domain": "acme",
            "channel_id": "C0INCIDENTS",
            "channel_name": "incidents",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/rearguard",
            "text": text,
            "api_app_id": "A0APP",
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": f"{next(_TRIGGERS)}.1.abc",
        }
    ).encode()


def slash(client: TestClient, text: str, **fields: Any) -> str:
    """Type the command; return the ephemeral answer's text (asserting it is one)."""
    body = command_body(text, **fields)
    answer = client.post(PATH, content=body, headers=signed(body))
    assert answer.status_code == 200, answer.text
    reply = answer.json()
    assert reply["response_type"] == "ephemeral"
    return str(reply["text"])


def all_incidents(runtime: Runtime) -> list[Incident]:
    with runtime.db.read_session() as session:
        return list(session.exec(select(Incident).order_by(col(Incident.id))))


def chain_events(runtime: Runtime, action: str) -> list[dict[str, Any]]:
    """The chain's events of one action: their actor, incident and data."""
    with runtime.db.read_session() as session:
        found = session.exec(
            select(TimelineEvent)
            .where(TimelineEvent.action == action)
            .order_by(col(TimelineEvent.seq))
        )
        return [
            {"actor": e.actor, "incident_id": e.incident_id, **json.loads(e.data)} for e in found
        ]


def test_open_answers_at_once_and_the_incident_is_the_mapped_persons(
    runtime: Runtime, client: TestClient
) -> None:
    text = slash(client, "open model_compromise model-a sev1 weights <changed> & served")

    (incident,) = all_incidents(runtime)
    assert text.startswith(f"Incident *{incident.id}* opened by alice: model_compromise on ")
    assert "`/rearguard status 1`" in text
    assert incident.opened_by == "alice"
    assert (str(incident.source), str(incident.severity)) == ("slack", "sev1")
    assert incident.summary == "weights <changed> & served"
    (opened,) = events(runtime, incident.id or 0, "incident.opened")
    assert opened[1]["actor"] == "alice"

    # A second report of the same thing joins the incident: one incident, one playbook.
    again = slash(client, "open model_compromise model-a still wrong")
    assert again.startswith("Incident *1* (model_compromise on model-a) is already open")
    assert len(all_incidents(runtime)) == 1
    (attached,) = events(runtime, 1, "incident.attached")
    assert attached[1]["actor"] == "alice"


def test_only_a_new_incident_is_handed_to_the_playbooks(runtime: Runtime) -> None:
    handed: list[int] = []

    def answer(text: str) -> str:
        body = command_body(text)
        got = answer_command(
            runtime=runtime, headers=signed(body), body=body, on_opened=handed.append
        )
        assert got.status == 200
        return got.text

    answer("open model_compromise model-a")
    answer("open model_compromise model-a")

    assert handed == [1]
    assert [i.id for i in all_incidents(runtime)] == [1]


def test_unsigned_forged_stale_and_replayed_commands_are_refused(
    runtime: Runtime, client: TestClient
) -> None:
    body = command_body("open model_compromise model-a")
    headers = signed(body)

    answers = [
        client.post(PATH, content=body, headers=h)
        for h in (
            signed(body, secret="not-the-signing-secret"),
            signed(body, timestamp=time.time() - 301),
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
    ]
    assert [(a.status_code, a.text) for a in answers] == [
        (401, "invalid Slack signature"),
        (401, "stale Slack request (more than 5 minutes old)"),
        (401, "missing Slack signature headers"),
    ]
    assert all_incidents(runtime) == []

    first = client.post(PATH, content=body, headers=headers)
    replayed = client.post(PATH, content=body, headers=headers)
    assert first.status_code == 200
    assert (replayed.status_code, replayed.text) == (409, "replayed Slack request")
    assert len(all_incidents(runtime)) == 1
    # Neither needs the intake's bearer token: Slack cannot send it.
    assert client.get("/healthz").json()["refused_by_status"] == {"401": 3, "409": 1}


def test_someone_not_mapped_to_a_person_is_told_so_and_the_attempt_recorded(
    runtime: Runtime, client: TestClient
) -> None:
    opening = slash(client, "open model_compromise model-a", user="U0STRANGER")
    listing = slash(client, "list", user="U0STRANGER")

    not_mapped = (
        "You are not mapped to a person: ask for your Slack user id U0STRANGER to be added "
        "to [approvals.slack_users]."
    )
    assert opening == listing == not_mapped
    assert all_incidents(runtime) == []
    (refused,) = chain_events(runtime, "slack_command.refused")
    assert refused["actor"] == "slack:U0STRANGER"
    assert (refused["subcommand"], refused["why"]) == ("open", not_mapped)


def test_a_person_not_allowed_to_open_is_refused_and_recorded(
    runtime: Runtime, client: TestClient
) -> None:
    text = slash(client, "open model_compromise model-a", user="U0MALLORY")

    assert text == (
        "mallory may not open incidents from Slack: ask for your name in "
        "[slack_commands] allow.open."
    )
    assert all_incidents(runtime) == []
    (refused,) = chain_events(runtime, "slack_command.refused")
    assert (refused["actor"], refused["subcommand"]) == ("mallory", "open")


USAGE_ERRORS = {
    "": None,
    "help": None,
    "reboot everything": "unknown subcommand 'reboot'",
    "open model_compromise": "open needs a TYPE and an ASSET",
    "open no_such_type model-a": "unknown incident type 'no_such_type' (known: ",
    "open model_compromise no-such-model": "unknown asset 'no-such-model'",
    "open supply_chain model-a": "supply_chain needs a digest or a dataset and a time",
    "status seven": "'seven' is not an incident number",
    "approve": "approve needs an incident number",
    "deny 1": "a denial needs a reason: deny ID REASON",
    "drill": "drill needs the name of one drill",
}


def test_usage_errors_answer_with_the_help_never_an_error_status(
    runtime: Runtime, client: TestClient
) -> None:
    for typed, first_line in USAGE_ERRORS.items():
        text = slash(client, typed)

        lines = text.splitlines()
        if first_line is not None:
            assert lines[0].startswith(first_line), (typed, lines[0])
        assert "/rearguard open TYPE ASSET [sev1..sev4] [summary...]" in text, typed
        assert "model_compromise" in lines[-1] and "supply_chain" not in lines[-1], typed
    assert all_incidents(runtime) == []


def test_status_and_list_answer_from_the_record(runtime: Runtime, client: TestClient) -> None:
    assert slash(client, "status") == "No incident is open."
    first = new_incident(runtime, severity=Severity.SEV1, summary="weights changed")
    second = new_incident(runtime, asset=None, incident_type="supply_chain")
    open_request(
        db=runtime.db,
        approvals=runtime.settings.approvals,
        incident_id=first,
        step="rollback",
        rule=runtime.settings.approvals.rules[0],
        actor="playbook:model_compromise",
    )

    shown = slash(client, f"status {first}").splitlines()
    listed = slash(client, "list").splitlines()
    waiting = slash(client, "status").splitlines()
    unknown = slash(client, "status 99")

    assert shown[0] == f"*{first}* model_compromise on model-a · sev1 · *open*"
    assert shown[1].startswith("Opened by oncall (cli) ") and shown[1].endswith(": weights changed")
    assert shown[2] == "production: v3"
    assert shown[3].startswith("Waiting for approval of rollback by alice, bob until ")
    assert shown[3].endswith(f"`/rearguard approve {first}` or `/rearguard deny {first} REASON`")
    assert listed == [
        "The latest incidents (2):",
        f"• *{second}* supply_chain on - · sev2 · *open*",
        f"• *{first}* model_compromise on model-a · sev1 · *open*",
    ]
    assert waiting[0] == "Incidents not resolved (2):"
    assert unknown.splitlines()[0] == ("unknown incident 99 (see `rearguard incident list`)")


def test_approve_and_deny_decide_a_pending_approval_as_the_mapped_person(
    runtime: Runtime, client: TestClient
) -> None:
    def waiting() -> int:
        incident_id = new_incident(runtime, severity=Severity.SEV1)
        open_request(
            db=runtime.db,
            approvals=runtime.settings.approvals,
            incident_id=incident_id,
            step="rollback",
            rule=runtime.settings.approvals.rules[0],
            actor="playbook:model_compromise",
        )
        return incident_id

    first, second = waiting(), waiting()
    refused = slash(client, f"approve {first}", user="U0MALLORY")
    approved = slash(client, f"approve {first} v2 checked &amp; fine")
    denied = slash(client, f"deny {second} v2 is suspect too")
    again = slash(client, f"deny {second} twice")

    assert refused == (
        f"mallory may not decide the rollback of incident {first} (approvers: alice, bob)"
    )
    assert approved == f"The rollback of incident {first} is approved by alice."
    assert denied == f"The rollback of incident {second} is denied by alice."
    assert again == (
        f"incident {second} is not waiting for an approval (see `rearguard approvals list`)"
    )
    ((one,), (two,)) = requests_of(runtime, first), requests_of(runtime, second)
    assert (one.status, one.decided_by, one.comment) == ("approved", "alice", "v2 checked & fine")
    assert (two.status, two.decided_by, two.comment) == ("denied", "alice", "v2 is suspect too")
    decided = ("approval.refused", "approval.approved", "approval.denied")
    decisions = [
        (a, d["actor"], d["via"])
        for incident_id in (first, second)
        for a, d in events(runtime, incident_id)
        if a in decided
    ]
    assert decisions == [
        ("approval.refused", "mallory", "slack"),
        ("approval.approved", "alice", "slack"),
        ("approval.denied", "alice", "slack"),
    ]


def schedule_drill(runtime: Runtime, name: str = "weekly") -> None:
    with runtime.db.session() as session:
        add_drill(
            session=session,
            name=name,
            playbook="model_compromise",
            asset="model-a",
            cron="0 9 * * MON",
            timezone="UTC",
            rto_s=300.0,
            actor="test",
        )


def test_a_drill_is_run_only_for_a_person_allowed_to(runtime: Runtime, client: TestClient) -> None:
    schedule_drill(runtime)

    refused = slash(client, "drill weekly", user="U0MALLORY")
    unknown = slash(client, "drill monthly")
    no_scheduler = slash(client, "drill weekly")

    assert refused == (
        "mallory may not run drills from Slack: ask for your name in [slack_commands] allow.drill."
    )
    assert unknown.splitlines()[0] == "unknown drill 'monthly' (drills: weekly)"
    assert no_scheduler == (
        "Drills asked for from Slack run on `rearguard serve`'s scheduler, and this intake runs "
        "without one (--no-scheduler): run `rearguard drills run weekly`."
    )
    (recorded,) = chain_events(runtime, "slack_command.refused")
    assert (recorded["actor"], recorded["subcommand"]) == ("mallory", "drill")
    assert chain_events(runtime, "drill.requested") == []
    with runtime.db.read_session() as session:
        assert list_runs(session=session) == []


def test_a_drill_asked_for_runs_on_the_scheduler_and_its_result_reaches_the_response_url(
    home: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    prefect_api_url: str,
) -> None:
    # The scheduler's threads read Prefect's settings from the environment, as serve's do.
    monkeypatch.setenv("PREFECT_API_URL", prefect_api_url)
    with SlackServer(token=SLACK_TOKEN) as slack:
        runtime = command_runtime(
            home,
            database_url,
            monkeypatch,
            tmp_path,
            toml=f'response_url_prefix = "{slack.root_url}"\n',
        )
        schedule_drill(runtime)
        url = slack.response_url()
        app = create_app(
            runtime, intake=intake_settings(), run_playbooks=False, schedule_drills=True
        )
        with TestClient(app) as client:
            text = slash(client, "drill weekly", response_url=url)
            (reply,) = eventually(lambda: slack.responses[url], timeout=90, what="the result")
        runtime.db.dispose()

    assert text == (
        "Drill weekly (model_compromise on model-a) starts now, asked for by alice, once no "
        "other drill is running; its result will be posted here."
    )
    assert reply["response_type"] == "ephemeral"
    assert (
        reply["text"].startswith("[DRILL] Drill ") and " passed: model_compromise" in reply["text"]
    )
    with runtime.db.read_session() as session:
        (run,) = list_runs(session=session)
    assert (run.trigger, run.status) == ("slack", "pass")
    (asked,) = chain_events(runtime, "drill.requested")
    assert (asked["actor"], asked["drill"], asked["via"]) == ("alice", "weekly", "slack")
    (delivered,) = [
        e
        for e in chain_events(runtime, "notification.delivered")
        if e["channel"] == "slack_response"
    ]
    assert delivered["destination"] == "response_url"
