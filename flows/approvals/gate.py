"""The ``await_approval`` step: a playbook waits for a named person's decision.

Any playbook can place it before any step. When ``[approvals]`` has no rule for that step of
that run, the step records "not required" and returns at once. In a drill (an incident of
source ``drill``) it records "skipped in drill" with what the policy would require, unless
``[drills] exercise_approvals`` is true. Otherwise it opens an approval
request (``rearguard.models.incidents.approvals``), queues the ``approval_needed`` notification and
pauses the flow run with Prefect's ``pause_flow_run(wait_for_input=ApprovalAnswer)``, so the
run shows as Paused in the Prefect UI, whose form answers it.

The decision itself lives in the database, and every channel records it through
:func:`rearguard.models.incidents.approvals.decide`: the CLI and Slack write it there (the CLI also
resumes the paused run with the answer, ``rearguard.flows.approvals.decide``), and the paused run
watches the database as well as Prefect. Anyone who can reach Prefect's API can resume a run,
so the form's answer counts only with a proof: the one-time code sent to that approver
(``rearguard.flows.approvals.codes``) or a signature by their registered key. An answer
without one, or naming someone who may not approve, is refused, recorded, and the run pauses
again. At the deadline the run leaves the
Paused state itself (so Prefect never shows a pause that can no longer be answered) and the
policy escalates, proceeds or aborts.
"""

from __future__ import annotations

import asyncio
import math
import threading
from datetime import UTC, datetime
from typing import Literal
from uuid import UUID

from prefect.input import RunInput
from pydantic import Field

from rearguard.flows.approvals.codes import queue_codes
from rearguard.models.db.tables import ApprovalRequest, Incident
from rearguard.models.enums import IncidentSource
from rearguard.models.errors import OperationFailed, UsageError
from rearguard.models.incidents.approval_proofs import Proof
from rearguard.models.incidents.approvals import (
    APPROVED,
    DENIED,
    PENDING,
    decide,
    expire,
    format_wait,
    get_request,
    is_overdue,
    open_request,
)
from rearguard.models.incidents.service import get_incident
from rearguard.models.recovery.results import ApprovalDecision
from rearguard.models.runtime import Runtime
from rearguard.notifications.notify import deliver_after_run
from rearguard.notifications.outbox import enqueue

# The Paused state outlives the wait by this much: leaving it at the deadline is then an
# ordinary transition, and a run whose process died is failed by Prefect's server soon after.
_PAUSE_GRACE_S = 60


class ApprovalAnswer(RunInput):
    """The form the Prefect UI shows while a playbook waits for approval."""

    approver: str = Field(
        min_length=1, max_length=128, description="Your name, as the approval policy lists it."
    )
    decision: Literal["approve", "deny"] = Field(description="Approve or deny the step.")
    comment: str = Field(default="", max_length=2000, description="Why; kept in the timeline.")
    code: str = Field(
        default="",
        max_length=64,
        description="The one-time code rearguard sent you by email or Slack: it proves it is you.",
    )
    signature: str = Field(
        default="",
        max_length=200,
        description="Or the base64 signature of this decision's statement by your registered key.",
    )


def await_approval(*, runtime: Runtime, incident_id: int, step: str) -> ApprovalDecision:
    """Wait, when the approval policy says so, for a named person's decision on ``step``.

    Args:
        runtime: the process runtime.
        incident_id: the incident whose playbook waits.
        step: the step that needs the decision.

    Returns:
        ``required`` False when no rule applies; else the decision, who made it and why (in a
        drill, by default, that it was skipped and what the policy would have required).

    Raises:
        OperationFailed: the step was denied, or not approved in time under an ``abort``
            policy; production is left as it is.
    """
    with runtime.db.read_session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
    approvals = runtime.settings.approvals
    rule = approvals.rule_for(
        playbook=incident.type,
        severity=str(incident.severity),
        asset=incident.asset_name,
        step=step,
    )
    if rule is None:
        return ApprovalDecision(step=step, required=False, decision="not required")
    if (
        str(incident.source) == IncidentSource.DRILL
        and not runtime.settings.drills.exercise_approvals
    ):
        # Nobody is paged at 3 a.m. for a drill; the timeline keeps what the policy asks for.
        who = " or ".join(rule.approvers)
        if rule.approvers_required > 1:
            who = f"{rule.approvers_required} of {', '.join(rule.approvers)}"
        asks = f"approval by {who} within {format_wait(rule.timeout_s)}"
        return ApprovalDecision(
            step=step, required=True, decision=f"skipped in drill (policy would require {asks})"
        )
    actor = f"playbook:{incident.type}"
    request = open_request(
        db=runtime.db,
        approvals=approvals,
        incident_id=incident_id,
        step=step,
        rule=rule,
        actor=actor,
        flow_run_id=_flow_run_id(),
    )
    announced: set[int] = set()
    while request.status == PENDING:
        # An escalation (expire below) continues as a new request: a new id, announced anew.
        request_id = request.id
        assert request_id is not None  # a stored request
        if request_id not in announced:
            announced.add(request_id)
            _announce(runtime, incident, request)
        answer = _wait(runtime, request)
        request = _reload(runtime, request_id)
        if answer is not None and request.status == PENDING:
            _apply(runtime, request, answer)
            request = _reload(runtime, request_id)
        if is_overdue(request):
            request = expire(db=runtime.db, request_id=request_id, actor=actor)
    return _conclusion(request)


def _conclusion(request: ApprovalRequest) -> ApprovalDecision:
    if request.status == APPROVED:
        return ApprovalDecision(
            step=request.step,
            required=True,
            round=request.round,
            decision="approved",
            by=request.decided_by,
            comment=request.comment or "",
        )
    if request.status == DENIED:
        because = f": {request.comment}" if request.comment else ""
        raise OperationFailed(
            f"{request.step} denied by {request.decided_by}{because}",
            hint="production was not changed by the denied step",
        )
    waited = format_wait(request.policy["timeout_s"])
    if request.policy.get("on_timeout") == "proceed":
        return ApprovalDecision(
            step=request.step,
            required=True,
            round=request.round,
            decision=f"not decided within {waited}; proceeding per policy",
        )
    raise OperationFailed(
        f"{request.step} not approved within {waited}; aborted per policy",
        hint="rerun the playbook to ask again",
    )


def _reload(runtime: Runtime, request_id: int) -> ApprovalRequest:
    with runtime.db.read_session() as session:
        return get_request(session=session, request_id=request_id)


def _apply(runtime: Runtime, request: ApprovalRequest, answer: ApprovalAnswer) -> None:
    """Record an answer from the Prefect UI's form; a refused one is recorded and asked again."""
    try:
        decide(
            db=runtime.db,
            approvals=runtime.settings.approvals,
            approver=answer.approver,
            approve=answer.decision == "approve",
            comment=answer.comment,
            via="prefect-ui",
            proof=Proof(signature=answer.signature, code=answer.code),
            callback_id=request.callback_id,
        )
    except UsageError as exc:
        runtime.report("await_approval", "wait", f"{exc.message}; asking again")


def _announce(runtime: Runtime, incident: Incident, request: ApprovalRequest) -> None:
    """Queue the approval_needed notification and each approver's one-time code, and deliver
    them while the run waits."""
    command = f"rearguard approve {incident.id} --as NAME"
    deadline = request.deadline.strftime("%H:%M:%S UTC")
    escalated = f" (round {request.round}, after an escalation)" if request.round > 1 else ""
    extra = {
        "what": f"{request.step} {incident.asset_name or ''}".strip(),
        "step": request.step,
        "approvers": list(request.approvers),
        "command": command,
        "deny_command": f"{command} --deny --comment WHY",
        "callback_id": request.callback_id,
        "round": request.round,
        "deadline": request.deadline.isoformat(timespec="seconds"),
        "detail": (
            f"The {incident.type} playbook waits before {request.step} until {deadline}"
            f"{escalated}; then it will {_timeout_effect(request)}.{_proof_note(runtime, request)}"
        ),
    }
    with runtime.db.session() as session:
        enqueue(
            session,
            settings=runtime.settings,
            incident=incident,
            event="approval_needed",
            actor=f"playbook:{incident.type}",
            extra=extra,
        )
        queue_codes(session, settings=runtime.settings, incident=incident, request=request)
    # Delivery runs beside the wait: a slow channel must not eat into the approvers' time.
    threading.Thread(
        target=deliver_after_run,
        args=(runtime,),
        kwargs={"incident_id": incident.id},
        name=f"approval-notify-{request.id}",
        daemon=True,
    ).start()
    runtime.report(
        "await_approval",
        "wait",
        f"waiting for {', '.join(request.approvers)} until {deadline}: {command}",
    )


def _proof_note(runtime: Runtime, request: ApprovalRequest) -> str:
    """What the message asks of approvers besides a decision: how many, and a proof."""
    approvals = runtime.settings.approvals
    required = int(request.policy.get("approvers_required", 1))
    note = f" It needs {required} distinct approvers." if required > 1 else ""
    if any(not approvals.self_asserted(p) for p in request.approvers):
        note += (
            " Prove it is you: sign with your registered key (--key PATH), or give the "
            "one-time code sent to you (--code)."
        )
    return note


def _timeout_effect(request: ApprovalRequest) -> str:
    on_timeout = request.policy.get("on_timeout")
    if on_timeout == "escalate":
        more = [p for p in request.policy.get("escalate_to", []) if p not in request.approvers]
        return f"escalate to {', '.join(more)}" if more else "ask again"
    return "proceed without a decision" if on_timeout == "proceed" else "abort"


def _flow_run_id() -> str | None:
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return str(context.flow_run.id) if context and context.flow_run else None


def _wait(runtime: Runtime, request: ApprovalRequest) -> ApprovalAnswer | None:
    """Wait until the deadline for an answer from the Prefect UI or a decision in the database.

    Returns:
        The Prefect UI's answer, or None when the database has a decision or time ran out.
    """
    remaining = (request.deadline - datetime.now(UTC)).total_seconds()
    if remaining <= 0:
        return None
    # The step body runs in a worker thread: it waits on an event loop of its own.
    return asyncio.run(_pause_or_watch(runtime, request, remaining))


async def _pause_or_watch(
    runtime: Runtime, request: ApprovalRequest, remaining: float
) -> ApprovalAnswer | None:
    from prefect.flow_runs import apause_flow_run

    poll_s = runtime.settings.approvals.poll_s
    loop = asyncio.get_running_loop()
    deadline = loop.time() + remaining
    decided = asyncio.ensure_future(_decided_elsewhere(runtime, request, poll_s))
    pause: asyncio.Future[ApprovalAnswer] | None = None
    if request.flow_run_id is not None and request.flow_run_id == _flow_run_id():
        pause = asyncio.ensure_future(
            apause_flow_run(
                wait_for_input=ApprovalAnswer,
                timeout=math.ceil(remaining) + _PAUSE_GRACE_S,
                poll_interval=poll_s,  # type: ignore[call-overload]  # typed int, but only slept on
            )
        )
    paused = pause is not None
    try:
        while True:
            waiting = [f for f in (decided, pause) if f is not None]
            done, _ = await asyncio.wait(
                waiting, timeout=max(deadline - loop.time(), 0), return_when=asyncio.FIRST_COMPLETED
            )
            if pause is None or pause not in done:
                break  # decided elsewhere, or out of time
            failure = pause.exception()
            if failure is None:
                return pause.result()
            # Prefect cannot hold the pause (its API went away...): decisions still arrive
            # through the database, so the run keeps waiting instead of failing.
            runtime.report(
                "await_approval",
                "wait",
                f"the Prefect pause failed ({type(failure).__name__}); waiting on the database",
            )
            pause = None
    finally:
        unfinished = [f for f in (decided, pause) if f is not None and not f.done()]
        for future in unfinished:
            future.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
    if paused:
        await _leave_pause(request)
    return None


async def _decided_elsewhere(runtime: Runtime, request: ApprovalRequest, poll_s: float) -> None:
    assert request.id is not None
    while True:
        current = await asyncio.to_thread(_reload, runtime, request.id)
        if current.status != PENDING:
            return
        await asyncio.sleep(poll_s)


async def _leave_pause(request: ApprovalRequest) -> None:
    """Move a run that is still Paused back to Running: the decision came from elsewhere."""
    from prefect import get_client
    from prefect.states import Running

    assert request.flow_run_id is not None
    flow_run_id = UUID(request.flow_run_id)
    async with get_client() as client:
        flow_run = await client.read_flow_run(flow_run_id)
        if flow_run.state is not None and flow_run.state.is_paused():
            await client.set_flow_run_state(
                flow_run_id, Running(message=f"left the approval of {request.step}")
            )
