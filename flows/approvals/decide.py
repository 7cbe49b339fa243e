"""Deciding a waiting approval from the CLI, and waking the paused Prefect run at once.

The answer carries its proof: a signature by the approver's key (``--key`` or ``[approvals]
signing_key``) over the statement of this decision, or the one-time code sent to them
(``--code``). Prefect is imported only to resume the run, after the decision is recorded, so a
refused or mistaken ``rearguard approve`` stays fast.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any
from uuid import UUID

from rearguard.models.audit.keys import load_private_key
from rearguard.models.db.tables import ApprovalRequest
from rearguard.models.errors import UsageError
from rearguard.models.incidents.approval_proofs import Proof, sign_statement, statement
from rearguard.models.incidents.approvals import PENDING, decide, waiting_request
from rearguard.models.runtime import Runtime

KEY_HINT = (
    "an Ed25519 key readable by you alone: ssh-keygen -t ed25519 -N '' -f KEY "
    "(or openssl genpkey -algorithm ed25519 -out KEY), its public half in [approvals.keys]"
)


def answer(
    *,
    runtime: Runtime,
    incident_id: int,
    approver: str,
    approve: bool,
    comment: str = "",
    key: Path | None = None,
    code: str | None = None,
) -> ApprovalRequest:
    """Decide an incident's pending approval from the CLI, and wake the paused run at once.

    The decision is recorded first; resuming the Prefect run with the same answer only saves
    the run its next look at the database. A round that needs more approvers stays pending
    (and the run paused).

    Args:
        runtime: the process runtime.
        incident_id: the incident whose playbook waits.
        approver: who decides.
        approve: True to approve, False to deny.
        comment: why.
        key: the approver's private key to sign with (default ``[approvals] signing_key``).
        code: or the one-time code sent to the approver.

    Raises:
        UsageError: both a key and a code, or the key cannot be used (missing, readable by
            others, encrypted, not Ed25519).
        NotFoundError: the incident is not waiting for an approval.
        ConflictError: the request was decided or timed out already.
        NotEntitled: ``approver`` may not decide it, or the proof does not hold (the attempt
            is recorded).
    """
    if key is not None and code:
        raise UsageError("give --key or --code, not both")
    approvals = runtime.settings.approvals
    proof = Proof(code=code or "")
    key = key if key is not None or code else approvals.signing_key
    if key is not None:
        private = load_private_key(key.expanduser(), what="the approver key", hint=KEY_HINT)
        with runtime.db.read_session() as session:
            waiting = waiting_request(session=session, incident_id=incident_id)
        message = statement(request=waiting, approver=approver, approve=approve, comment=comment)
        proof = Proof(signature=sign_statement(private, message))
    decided = decide(
        db=runtime.db,
        approvals=approvals,
        approver=approver,
        approve=approve,
        comment=comment,
        via="cli",
        proof=proof,
        incident_id=incident_id,
    )
    if decided.flow_run_id and decided.status != PENDING:
        _resume(
            runtime.settings.home,
            decided.flow_run_id,
            {
                "approver": approver,
                "decision": "approve" if approve else "deny",
                "comment": decided.comment or "",
            },
        )
    return decided


def _resume(home: Path, flow_run_id: str, run_input: dict[str, Any]) -> None:
    from rearguard.flows.run_playbook import configure_prefect, uses_temporary_server

    configure_prefect(home=home)
    if uses_temporary_server():
        return  # a temporary server would not know the run; the run reads the database
    from prefect.flow_runs import resume_flow_run

    # Not paused right now, or the server is unreachable: the decision is recorded, and the
    # waiting run reads it from the database within its poll interval.
    with contextlib.suppress(Exception):
        resume_flow_run(UUID(flow_run_id), run_input=run_input)
