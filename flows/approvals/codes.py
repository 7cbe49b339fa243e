"""One-time approval codes, each sent to its approver alone through their own contact.

When a round of an approval request opens, every approver with a contact (``[approvals.contacts]``:
an email address, or ``slack:U123`` for a Slack direct message) gets a fresh code through the
notification outbox, addressed to them only; the routed channels get the ``approval_needed``
message, which never holds a code. The round keeps only the codes' digests. The outbox row
holds the code until it is delivered, so a code proves access to that person's mailbox or
Slack account, and to nothing stronger than the database's readers.
"""

from __future__ import annotations

from sqlmodel import Session

from rearguard.models.config.settings import Settings
from rearguard.models.db.tables import ApprovalRequest, Incident
from rearguard.models.incidents.approvals import issue_codes
from rearguard.notifications.outbox import enqueue
from rearguard.notifications.routing import Target


def queue_codes(
    session: Session, *, settings: Settings, incident: Incident, request: ApprovalRequest
) -> list[str]:
    """Issue the round's one-time codes and queue each to its approver, in ``session``'s
    transaction.

    Args:
        session: an open write session (the codes and their messages commit together).
        settings: the settings (approvers' contacts, channels).
        incident: the incident whose playbook waits.
        request: the round that waits.

    Returns:
        The approvers a code was queued for.
    """
    assert request.id is not None
    approvals = settings.approvals
    codes = issue_codes(session=session, approvals=approvals, request_id=request.id)
    deadline = request.deadline.strftime("%H:%M:%S UTC")
    for person, code in codes.items():
        contact = approvals.contact(person)
        assert contact is not None  # codes are issued only to approvers with a contact
        command = f"rearguard approve {incident.id} --by {person} --code {code}"
        enqueue(
            session,
            settings=settings,
            incident=incident,
            event="approval_code",
            actor=f"playbook:{incident.type}",
            extra={
                "what": f"{request.step} {incident.asset_name or ''}".strip(),
                "step": request.step,
                "round": request.round,
                "approver": person,
                "code": code,
                "deadline": deadline,
                "command": command,
                "deny_command": f"{command} --deny --comment WHY",
            },
            targets=[Target(contact.channel, contact.destination)],
        )
    return sorted(codes)
