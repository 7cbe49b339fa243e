"""The restore sequence that several playbooks share.

Quarantine what production served and announce containment, re-verify every other version,
select the newest known-good one that still verifies, wait for approval where the policy asks
for it, roll production back, and validate what it serves now.
"""

from __future__ import annotations

from rearguard.flows.playbook_guard import PlaybookOutcome
from rearguard.flows.steps import (
    await_approval,
    quarantine,
    record_diff,
    rollback,
    select_known_good,
    validate,
    verify_integrity,
)


async def restore_known_good(
    incident_id: int, outcome: PlaybookOutcome, *, diff: bool = False
) -> str:
    """Contain the incident's asset and roll it back to a verified known-good version.

    Args:
        incident_id: the incident to respond to.
        outcome: the running playbook's outcome (containment is announced on it).
        diff: record in the timeline what changed between the tampered and the restored text.

    Returns:
        The label production serves now.
    """
    await quarantine(incident_id)
    await outcome.contained()
    verified = await verify_integrity(incident_id)
    selected = await select_known_good(incident_id, checks=verified.checks)
    await await_approval(incident_id, step="rollback")
    await rollback(incident_id, label=selected.selected)
    if diff:
        await record_diff(incident_id, label=selected.selected)
    await validate(incident_id)
    return selected.selected
