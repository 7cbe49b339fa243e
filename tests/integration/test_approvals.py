"""Approval gates: the model-compromise playbook waits before its rollback for a named person.

Every test runs the real playbook under the session's Prefect server in a thread and decides
the way a person would: the CLI's service, Prefect's resume API (what the Prefect UI's form
calls), or nobody at all until the deadline. What is asserted is what an operator sees: the
run paused in Prefect, where production points, the incident's status and reason, the
approval requests and the timeline.
"""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID

import pytest
from approval_helpers import (
    Approver,
    PlaybookRun,
    approval_runtime,
    documented_statement,
    events,
    eventually,
    flow_run_state,
    pending_round,
    requests_of,
    wait_paused,
)
from scenarios import production_in_db

from rearguard.flows.approvals.decide import answer
from rearguard.models.errors import NotEntitled
from rearguard.models.runtime import Runtime
from rearguard.notifications.outbox import list_notifications

pytestmark = pytest.mark.usefixtures("prefect_api_url")


@pytest.fixture
def make_runtime(home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Call ``make_runtime(on_timeout="abort", timeout_s=1)`` for a runtime on that policy."""
    made: list[Runtime] = []

    def make(**policy: object) -> Runtime:
        runtime = approval_runtime(home, database_url, monkeypatch, tmp_path, **policy)
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        runtime.db.dispose()


def asked_of(runtime: Runtime, incident_id: int) -> list[dict]:
    """What each approval_needed notification said (its ``extra``), oldest first."""
    with runtime.db.read_session() as session:
        rows = list_notifications(session, incident_id=incident_id)
    return [json.loads(n.payload)["extra"] for n in reversed(rows) if n.event == "approval_needed"]


def outcome_of(runtime: Runtime, incident_id: int, step: str) -> dict:
    """The result of a step's outcome event."""
    (found,) = [d for a, d in events(runtime, incident_id, step) if "ok" in d]
    return found


def test_approval_resumes_the_paused_run_and_rolls_back(make_runtime) -> None:  # type: ignore[no-untyped-def]
    runtime = make_runtime()
    run = PlaybookRun(runtime)
    request = pending_round(runtime, run.incident_id)
    wait_paused(request)
    assert request.approvers == ["alice", "bob"]
    assert production_in_db(runtime, "model-a") == "v3", "nothing rolled back before approval"

    answer(
        runtime=runtime,
        incident_id=run.incident_id,
        approver="alice",
        approve=True,
        comment="v2 checked",
    )
    incident = run.result()

    assert str(incident.status) == "recovered"
    assert production_in_db(runtime, "model-a") == "v2"
    assert flow_run_state(request.flow_run_id or "") == "COMPLETED"
    (decision,) = events(runtime, run.incident_id, "approval.approved")
    assert decision[1]["actor"] == "alice"
    assert decision[1]["comment"] == "v2 checked" and decision[1]["via"] == "cli"
    gate = outcome_of(runtime, run.incident_id, "await_approval")["result"]
    assert gate["decision"] == "approved" and gate["by"] == "alice"
    # The approvers were told, with the command that approves.
    (extra,) = asked_of(runtime, run.incident_id)
    assert extra["approvers"] == ["alice", "bob"]
    assert extra["command"] == f"rearguard approve {run.incident_id} --as NAME"


def test_denial_ends_the_playbook_cleanly_and_leaves_production_alone(make_runtime) -> None:  # type: ignore[no-untyped-def]
    runtime = make_runtime()
    run = PlaybookRun(runtime)
    pending_round(runtime, run.incident_id)

    answer(
        runtime=runtime,
        incident_id=run.incident_id,
        approver="bob",
        approve=False,
        comment="v2 is suspect too; password=hunter22",
    )
    incident = run.result()

    assert str(incident.status) == "failed"
    assert incident.reason == (
        "rollback denied by bob: v2 is suspect too; password=[REDACTED:password]"
    )
    assert production_in_db(runtime, "model-a") == "v3"
    assert not events(runtime, run.incident_id, "rollback")
    assert not events(runtime, run.incident_id, "alias.moved")
    (decision,) = events(runtime, run.incident_id, "approval.denied")
    assert decision[1]["actor"] == "bob" and "hunter22" not in json.dumps(decision)
    (request,) = requests_of(runtime, run.incident_id)
    assert request.status == "denied" and request.decided_by == "bob"


def test_a_person_not_entitled_is_refused_and_recorded(make_runtime) -> None:  # type: ignore[no-untyped-def]
    runtime = make_runtime()
    run = PlaybookRun(runtime)
    pending_round(runtime, run.incident_id)

    with pytest.raises(NotEntitled, match="mallory may not decide the rollback"):
        answer(runtime=runtime, incident_id=run.incident_id, approver="mallory", approve=True)
    (refused,) = events(runtime, run.incident_id, "approval.refused")
    assert refused[1]["actor"] == "mallory" and refused[1]["approvers"] == ["alice", "bob"]
    assert requests_of(runtime, run.incident_id)[0].status == "pending"

    answer(runtime=runtime, incident_id=run.incident_id, approver="bob", approve=True)
    assert str(run.result().status) == "recovered"


def test_a_forged_resume_through_the_prefect_api_is_refused_and_recorded(
    make_runtime, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from prefect.flow_runs import resume_flow_run

    alice = Approver(tmp_path, "alice")
    runtime = make_runtime(keys={"alice": alice.public})
    run = PlaybookRun(runtime)
    request = pending_round(runtime, run.incident_id)
    wait_paused(request)
    flow_run_id = UUID(request.flow_run_id or "")

    # The form's schema refuses a decision that is neither approve nor deny: still paused.
    with pytest.raises(RuntimeError, match="Cannot resume"):
        resume_flow_run(flow_run_id, run_input={"approver": "alice", "decision": "maybe"})
    assert flow_run_state(str(flow_run_id)) == "PAUSED"
    # What anyone who reaches Prefect's API can send: alice's name, no proof. Refused,
    # recorded, and the run pauses again; production is not touched.
    resume_flow_run(flow_run_id, run_input={"approver": "alice", "decision": "approve"})
    eventually(lambda: events(runtime, run.incident_id, "approval.refused"), what="a refusal")
    wait_paused(request)
    assert production_in_db(runtime, "model-a") == "v3"
    # A name the policy does not list: refused too.
    resume_flow_run(flow_run_id, run_input={"approver": "mallory", "decision": "approve"})
    eventually(lambda: len(events(runtime, run.incident_id, "approval.refused")) == 2)
    wait_paused(request)
    # alice's own answer, signed with her key: it decides.
    statement = documented_statement(
        request, approver="alice", decision="approve", comment="from the UI"
    )
    resume_flow_run(
        flow_run_id,
        run_input={
            "approver": "alice",
            "decision": "approve",
            "comment": "from the UI",
            "signature": alice.sign(statement),
        },
    )
    incident = run.result()

    assert str(incident.status) == "recovered"
    forged, stranger = events(runtime, run.incident_id, "approval.refused")
    assert forged[1]["actor"] == "alice" and forged[1]["via"] == "prefect-ui"
    assert forged[1]["reason"] == (
        "the answer for alice carries neither a signature nor a one-time code"
    )
    assert stranger[1]["actor"] == "mallory"
    (decision,) = events(runtime, run.incident_id, "approval.approved")
    assert decision[1]["actor"] == "alice" and decision[1]["comment"] == "from the UI"
    assert decision[1]["proof"] == "signature"


def test_a_timeout_escalates_and_the_run_keeps_waiting(make_runtime) -> None:  # type: ignore[no-untyped-def]
    runtime = make_runtime(timeout_s=2)
    run = PlaybookRun(runtime)
    first = pending_round(runtime, run.incident_id)
    second = pending_round(runtime, run.incident_id, round_=2)
    assert second.approvers == ["alice", "bob", "carol"]
    wait_paused(second)
    escalated = events(runtime, run.incident_id, "approval.escalated")[0][1]
    assert escalated["message"] == "approval timed out after 2s, escalated to carol"
    assert requests_of(runtime, run.incident_id)[0].status == "escalated"
    assert first.flow_run_id == second.flow_run_id

    answer(runtime=runtime, incident_id=run.incident_id, approver="carol", approve=True)
    incident = run.result()

    assert str(incident.status) == "recovered"
    assert production_in_db(runtime, "model-a") == "v2"
    asked = [extra["approvers"] for extra in asked_of(runtime, run.incident_id)]
    assert asked[:2] == [["alice", "bob"], ["alice", "bob", "carol"]]


def test_a_timeout_aborts_when_the_policy_says_so(make_runtime) -> None:  # type: ignore[no-untyped-def]
    runtime = make_runtime(timeout_s=1, on_timeout="abort")
    run = PlaybookRun(runtime)
    request = pending_round(runtime, run.incident_id)
    incident = run.result()

    assert str(incident.status) == "failed"
    assert incident.reason == "rollback not approved within 1s; aborted per policy"
    assert production_in_db(runtime, "model-a") == "v3"
    (timed_out,) = requests_of(runtime, run.incident_id)
    assert timed_out.status == "timed_out"
    (event,) = events(runtime, run.incident_id, "approval.timed_out")
    assert event[1]["message"] == "approval timed out after 1s, aborting per policy"
    # Never a stale pause: Prefect shows the run as ended, not as waiting.
    assert flow_run_state(request.flow_run_id or "") == "FAILED"


def test_a_timeout_proceeds_when_the_policy_says_so(make_runtime) -> None:  # type: ignore[no-untyped-def]
    runtime = make_runtime(timeout_s=1, on_timeout="proceed")
    run = PlaybookRun(runtime)
    incident = run.result()

    assert str(incident.status) == "recovered"
    assert production_in_db(runtime, "model-a") == "v2"
    gate = outcome_of(runtime, run.incident_id, "await_approval")["result"]
    assert gate["decision"] == "not decided within 1s; proceeding per policy"


def test_the_cli_refuses_a_stranger_then_approves_and_lists(make_runtime, cli) -> None:  # type: ignore[no-untyped-def]
    runtime = make_runtime()
    run = PlaybookRun(runtime)
    request = pending_round(runtime, run.incident_id)
    wait_paused(request)
    incident = str(run.incident_id)

    refused = cli("approve", incident, "--as", "mallory")
    listed = cli("approvals", "list", "--pending", "--json")
    approved = cli("approve", incident, "--as", "alice", "--comment", "checked v2")
    ended = run.result()
    table = cli("approvals", "list")

    assert refused.returncode == 2
    assert refused.stderr.splitlines()[0] == (
        f"error: mallory may not decide the rollback of incident {incident}"
    )
    (waiting,) = json.loads(listed.stdout)
    assert waiting["status"] == "pending" and waiting["approvers"] == ["alice", "bob"]
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.strip() == f"incident {incident}: rollback approved by alice"
    assert str(ended.status) == "recovered"
    assert "approved" in table.stdout and "by alice: checked v2" in table.stdout
