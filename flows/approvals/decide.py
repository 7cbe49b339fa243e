"""Deciding a waiting approval from the CLI, and waking the paused Prefect run at once.

Prefect is imported only to resume the run, after the decision is recorded, so a refused or
mistaken ``rearguard approve`` stays fast.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any
from uuid import UUID

from rearguard.flows.run_playbook import configure_prefect, uses_temporary_server
from rearguard.models.db.tables import ApprovalRequest
from rearguard.models.incidents.approvals import decide
from rearguard.models.runtime import Runtime


def answer(
    *,
    runtime: Runtime,
    incident_id: int,
    approver: str,
    approve: bool,
    comment: str = "",
) -> ApprovalRequest:
    """Decide an incident's pending approval from the CLI, and wake the paused run at once.

    The decision is recorded first; resuming the Prefect run with the same answer only saves
    the run its next look at the database.

    Raises:
        NotFoundError: the incident is not waiting for an approval.
        ConflictError: the request was decided or timed out already.
        NotEntitled: ``approver`` may not decide it (the attempt is recorded).
    """
    decided = decide(
        db=runtime.db,
        approver=approver,
        approve=approve,
        comment=comment,
        via="cli",
        incident_id=incident_id,
    )
    if decided.flow_run_id:
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
    configure_prefect(home=home)
    if uses_temporary_server():
        return  # a temporary server would not know the run; the run reads the database
    from prefect.flow_runs import resume_flow_run  # lazy: Prefect after configure_prefect

    # Not paused right now, or the server is unreachable: the decision is recorded, and the
    # waiting run reads it from the database within its poll interval.
    with contextlib.suppress(Exception):
        resume_flow_run(UUID(flow_run_id), run_input=run_input)
