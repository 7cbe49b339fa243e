"""Approval requests: a named person's decision before a playbook step, kept in the database.

The database is where an approval's state lives: the CLI, Slack and the Prefect UI all decide
through :func:`decide`, and the waiting playbook reads the result from here, so a decision
never depends on one channel and a timeout is a recorded state, not a stale pause. A request
is one *round*: it ends approved, denied, timed out (the policy then proceeds or aborts) or
escalated (a new round asks more people, with a new deadline).

Every decision carries a proof of who made it (:mod:`rearguard.models.incidents.approval_proofs`);
one without is refused and recorded as ``approval.refused``. A rule may need several distinct
people (``approvers_required``): each one's approval is an ``approval.given`` event of the
chain, and the round is approved by the approval that completes the count.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from rearguard.models.audit.chain import append_event
from rearguard.models.config.approvals import ApprovalRule, ApprovalSettings
from rearguard.models.db.engine import Database
from rearguard.models.db.tables import ApprovalRequest, Incident, TimelineEvent
from rearguard.models.enums import EventKind
from rearguard.models.errors import ConflictError, NotEntitled, NotFoundError
from rearguard.models.incidents.approval_proofs import (
    CODES,
    Proof,
    clean_comment,
    code_digest,
    new_code,
    prove,
)
from rearguard.models.incidents.service import get_incident

PENDING = "pending"
APPROVED = "approved"
DENIED = "denied"
TIMED_OUT = "timed_out"
ESCALATED = "escalated"
STATUSES = (PENDING, APPROVED, DENIED, TIMED_OUT, ESCALATED)
# One person's approval of a round that needs more than one (``approvers_required``).
GIVEN = "approval.given"
_DECIDED_BY_MAX = 128


def format_wait(seconds: float) -> str:
    """A duration as people write it: ``45s``, ``15m``, ``2h``, ``1h30m``."""
    whole = max(round(seconds), 0)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = (
        [f"{hours}h"] * bool(hours) + [f"{minutes}m"] * bool(minutes) + [f"{secs}s"] * bool(secs)
    )
    return "".join(parts) or "0s"


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def is_overdue(request: ApprovalRequest, *, now: datetime | None = None) -> bool:
    """True when a pending request is past its deadline (nobody has recorded the timeout yet)."""
    return request.status == PENDING and _aware(request.deadline) <= (now or datetime.now(UTC))


def _record(
    session: Session,
    *,
    incident: Incident,
    action: str,
    actor: str,
    kind: EventKind,
    data: dict[str, Any],
) -> None:
    append_event(
        session,
        kind=kind,
        action=action,
        actor=actor,
        incident_id=incident.id,
        asset=incident.asset_name,
        data=data,
    )


def _new_round(
    session: Session,
    *,
    incident: Incident,
    step: str,
    round_: int,
    approvers: list[str],
    policy: dict[str, Any],
    flow_run_id: str | None,
    now: datetime,
) -> ApprovalRequest:
    request = ApprovalRequest(
        incident_id=int(incident.id or 0),
        step=step,
        round=round_,
        callback_id=f"apr-{secrets.token_hex(16)}",
        requested_at=now,
        deadline=now + timedelta(seconds=policy["timeout_s"]),
        approvers=approvers,
        policy=policy,
        flow_run_id=flow_run_id,
    )
    session.add(request)
    session.flush()
    return request


def latest_request(*, session: Session, incident_id: int, step: str) -> ApprovalRequest | None:
    """The newest round of an incident's approval of one step, if it ever needed one."""
    statement = (
        select(ApprovalRequest)
        .where(ApprovalRequest.incident_id == incident_id, ApprovalRequest.step == step)
        .order_by(col(ApprovalRequest.id).desc())
        .limit(1)
    )
    return session.exec(statement).first()


def open_request(
    *,
    db: Database,
    approvals: ApprovalSettings,
    incident_id: int,
    step: str,
    rule: ApprovalRule,
    actor: str,
    flow_run_id: str | None = None,
) -> ApprovalRequest:
    """Start waiting for a decision on ``step``, or return the round a rerun should continue.

    Idempotent: a pending round is continued (and now belongs to ``flow_run_id``); an approved
    step, or one the policy let proceed after a timeout, stays decided. A denied or aborted
    step asks again: rerunning the playbook is a person asking for a new decision.

    Args:
        db: the database.
        approvals: the approval settings (to expand groups).
        incident_id: the incident whose playbook waits.
        step: the step that waits.
        rule: the rule that makes it wait.
        actor: who records the request (``playbook:<type>``).
        flow_run_id: the Prefect flow run that waits, if one does.

    Returns:
        The round to wait on (or already decided).
    """
    now = datetime.now(UTC)
    with db.session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        latest = latest_request(session=session, incident_id=incident_id, step=step)
        settled = latest is not None and (
            latest.status == APPROVED
            or (latest.status == TIMED_OUT and latest.policy.get("on_timeout") == "proceed")
        )
        if latest is not None and (latest.status == PENDING or settled):
            if latest.status == PENDING and flow_run_id and latest.flow_run_id != flow_run_id:
                latest.flow_run_id = flow_run_id
                session.add(latest)
            return latest
        policy = {
            "timeout_s": rule.timeout_s,
            "on_timeout": rule.on_timeout,
            "escalate_to": approvals.expand(rule.escalate_to),
            "approvers_required": rule.approvers_required,
        }
        request = _new_round(
            session,
            incident=incident,
            step=step,
            round_=1,
            approvers=approvals.expand(rule.approvers),
            policy=policy,
            flow_run_id=flow_run_id,
            now=now,
        )
        _record(
            session,
            incident=incident,
            action="approval.requested",
            actor=actor,
            kind=EventKind.STATE,
            data={
                "step": step,
                "round": 1,
                "approvers": request.approvers,
                "deadline": _aware(request.deadline).isoformat(timespec="seconds"),
                **policy,
            },
        )
        return request


def _find_open(
    session: Session, *, incident_id: int | None, callback_id: str | None
) -> ApprovalRequest:
    if callback_id is not None:
        statement = select(ApprovalRequest).where(ApprovalRequest.callback_id == callback_id)
    else:
        statement = (
            select(ApprovalRequest)
            .where(ApprovalRequest.incident_id == incident_id, ApprovalRequest.status == PENDING)
            .order_by(col(ApprovalRequest.id).desc())
        )
    request = session.exec(statement.with_for_update()).first()
    if request is None:
        what = f"incident {incident_id} is not waiting" if incident_id else "no such request"
        raise NotFoundError(f"{what} for an approval", hint="see `rearguard approvals list`")
    if request.status != PENDING:
        by = f" by {request.decided_by}" if request.decided_by else ""
        raise ConflictError(
            f"the approval of {request.step} for incident {request.incident_id} is already "
            f"{request.status}{by}"
        )
    return request


def waiting_request(*, session: Session, incident_id: int) -> ApprovalRequest:
    """The round an incident's playbook waits on now.

    Raises:
        NotFoundError: the incident is not waiting for an approval.
    """
    found = list_requests(session=session, status=PENDING, incident_id=incident_id, limit=1)
    if not found:
        raise NotFoundError(
            f"incident {incident_id} is not waiting for an approval",
            hint="see `rearguard approvals list`",
        )
    return found[0]


def decide(
    *,
    db: Database,
    approvals: ApprovalSettings,
    approver: str,
    approve: bool,
    comment: str = "",
    via: str,
    proof: Proof,
    incident_id: int | None = None,
    callback_id: str | None = None,
) -> ApprovalRequest:
    """Record a person's decision on the pending approval of an incident (or of one request).

    The one service every channel uses: the CLI, Slack's buttons and the Prefect UI's form.
    A person the request does not name, or an answer whose proof does not hold, is refused,
    and the attempt is recorded (``approval.refused``, with the reason). A denial ends the
    round; an approval ends it once ``approvers_required`` distinct people have approved.

    Args:
        db: the database.
        approvals: the approval settings (registered keys, contacts, self-assertion).
        approver: who decides (a name of the approval policy).
        approve: True to approve, False to deny.
        comment: why (redacted before it is stored).
        via: the channel: ``cli``, ``slack`` or ``prefect-ui``.
        proof: what shows that ``approver`` gave the answer.
        incident_id: the incident whose pending approval is decided.
        callback_id: or the exact request (Slack buttons carry it).

    Returns:
        The request: decided, or still pending when more approvals are needed.

    Raises:
        NotFoundError: nothing is waiting for a decision.
        ConflictError: the request was decided (or timed out) already.
        NotEntitled: ``approver`` is not one of the request's approvers, has approved this
            round already, or the proof does not hold.
        UsageError: the comment is too long.
    """
    approver = approver.strip()
    comment = clean_comment(comment)
    now = datetime.now(UTC)
    with db.session() as session:
        request = _find_open(session, incident_id=incident_id, callback_id=callback_id)
        incident = get_incident(session=session, incident_id=request.incident_id)
        facts = {
            "request": request.id,
            "step": request.step,
            "round": request.round,
            "via": via,
            "comment": comment,
        }
        given = _given(session, request) if approve else []
        refused: NotEntitled | None = None
        if approver not in request.approvers:
            refused = NotEntitled(
                f"{approver or 'an empty name'} may not decide the {request.step} of incident "
                f"{request.incident_id}",
                hint=f"approvers: {', '.join(request.approvers)}",
            )
        elif approver in given:
            refused = NotEntitled(
                f"{approver} has approved the {request.step} of incident "
                f"{request.incident_id} already",
                hint=f"it needs {_required(request)} distinct approvers",
            )
        else:
            try:
                proven = prove(
                    approvals=approvals,
                    request=request,
                    approver=approver,
                    approve=approve,
                    comment=comment,
                    proof=proof,
                    now=now,
                )
            except NotEntitled as exc:
                refused = exc
        if refused is not None:
            _record(
                session,
                incident=incident,
                action="approval.refused",
                actor=approver or "(nobody)",
                kind=EventKind.DECISION,
                data={
                    **facts,
                    "approve": approve,
                    "approvers": request.approvers,
                    "reason": refused.message,
                },
            )
        else:
            codes = dict(request.policy.get(CODES) or {})
            if codes.pop(approver, None) is not None:
                request.policy = {**request.policy, CODES: codes}  # a code works once
            given.append(approver)
            action = _settle(request, approve=approve, given=given, comment=comment, now=now)
            session.add(request)
            more = {"approvals": len(given), "required": _required(request)} if approve else {}
            _record(
                session,
                incident=incident,
                action=action,
                actor=approver,
                kind=EventKind.DECISION,
                data={**facts, **proven.record(), **more},
            )
    # Raised after the commit: the refused attempt stays on the record.
    if refused is not None:
        raise refused
    return request


def _required(request: ApprovalRequest) -> int:
    return int(request.policy.get("approvers_required", 1))


def _given(session: Session, request: ApprovalRequest) -> list[str]:
    """Who has approved this round so far (each an ``approval.given`` event), in order."""
    statement = (
        select(TimelineEvent)
        .where(TimelineEvent.incident_id == request.incident_id, TimelineEvent.action == GIVEN)
        .order_by(col(TimelineEvent.seq))
    )
    found: list[str] = []
    for event in session.exec(statement):
        if json.loads(event.data).get("request") == request.id and event.actor not in found:
            found.append(event.actor)
    return found


def _settle(
    request: ApprovalRequest, *, approve: bool, given: list[str], comment: str, now: datetime
) -> str:
    """Apply one proven answer to the round; return the action to record."""
    if approve and len(given) < _required(request):
        return GIVEN
    request.status = APPROVED if approve else DENIED
    names = ", ".join(given)
    # decided_by holds 128 characters; the events name everyone anyway.
    if len(names) > _DECIDED_BY_MAX:
        names = f"{given[-1][:80]} and {len(given) - 1} others"
    request.decided_by = names
    request.decided_at = now
    request.comment = comment
    return f"approval.{request.status}"


def issue_codes(
    *, session: Session, approvals: ApprovalSettings, request_id: int
) -> dict[str, str]:
    """Make a fresh one-time code for each approver of a round who has a contact.

    Only the codes' digests are kept (in the round's policy), and codes issued before for
    the round stop working. The caller queues each code for its person in the same
    transaction (``session``), so a code exists exactly when its message does.

    Returns:
        person -> code, for the approvers with a contact (empty when nobody has one, or the
        round is no longer pending).
    """
    statement = select(ApprovalRequest).where(ApprovalRequest.id == request_id)
    request = session.exec(statement.with_for_update()).one()
    if request.status != PENDING:
        return {}
    codes = {p: new_code() for p in request.approvers if approvals.contact(p) is not None}
    digests = {p: code_digest(request=request, person=p, code=c) for p, c in codes.items()}
    request.policy = {**request.policy, CODES: digests}
    session.add(request)
    return codes


def expire(*, db: Database, request_id: int, actor: str) -> ApprovalRequest:
    """Apply the policy to a round that reached its deadline undecided.

    ``escalate`` marks the round escalated and opens the next one, which asks the round's
    approvers and ``escalate_to``; ``proceed`` and ``abort`` mark it timed out. A round that
    is decided, or not due yet, is returned as it is.

    Returns:
        The round the playbook goes on with: the next one after an escalation, else this one.
    """
    now = datetime.now(UTC)
    with db.session() as session:
        statement = select(ApprovalRequest).where(ApprovalRequest.id == request_id)
        request = session.exec(statement.with_for_update()).one()
        if not is_overdue(request, now=now):
            return request
        incident = get_incident(session=session, incident_id=request.incident_id)
        waited = format_wait(request.policy["timeout_s"])
        on_timeout = request.policy["on_timeout"]
        facts = {"step": request.step, "round": request.round, "on_timeout": on_timeout}
        if on_timeout == "escalate":
            request.status = ESCALATED
            added = [p for p in request.policy["escalate_to"] if p not in request.approvers]
            following = _new_round(
                session,
                incident=incident,
                step=request.step,
                round_=request.round + 1,
                approvers=request.approvers + added,
                policy={k: v for k, v in request.policy.items() if k != CODES},
                flow_run_id=request.flow_run_id,
                now=now,
            )
            who = ", ".join(added) if added else "the same approvers (nobody else to ask)"
            message = f"approval timed out after {waited}, escalated to {who}"
            data = {**facts, "message": message, "approvers": following.approvers}
        else:
            request.status = TIMED_OUT
            following = request
            then = "proceeding" if on_timeout == "proceed" else "aborting"
            message = f"approval timed out after {waited}, {then} per policy"
            data = {**facts, "message": message}
        request.decided_at = now
        session.add(request)
        _record(
            session,
            incident=incident,
            action=f"approval.{request.status}",
            actor=actor,
            kind=EventKind.STATE,
            data=data,
        )
        return following


def get_request(*, session: Session, request_id: int) -> ApprovalRequest:
    """An approval request by id.

    Raises:
        NotFoundError: there is no such request.
    """
    request = session.get(ApprovalRequest, request_id)
    if request is None:
        raise NotFoundError(f"unknown approval request {request_id}")
    return request


def list_requests(
    *,
    session: Session,
    status: str | None = None,
    incident_id: int | None = None,
    limit: int = 200,
) -> list[ApprovalRequest]:
    """Approval requests, newest first, optionally only one status or one incident's."""
    statement = select(ApprovalRequest).order_by(col(ApprovalRequest.id).desc()).limit(limit)
    if status is not None:
        statement = statement.where(ApprovalRequest.status == status)
    if incident_id is not None:
        statement = statement.where(ApprovalRequest.incident_id == incident_id)
    return list(session.exec(statement))
