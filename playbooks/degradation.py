"""The degradation playbook (MITRE ATLAS AML.T0031 Erode AI Model Integrity, AML.T0015 Evade).

Production fails its validation check: mark it suspect, roll back to the newest known-good
version that verifies and passes the check, validate, notify. When production passes the
check, the playbook says so and moves nothing: the incident ends ``failed`` with that reason.
"""

from __future__ import annotations

from prefect import flow

from rearguard.flows.playbook_guard import playbook_guard
from rearguard.flows.steps import (
    await_approval,
    confirm_degradation,
    rollback,
    select_known_good,
    validate,
)


@flow(name="degradation", log_prints=False, validate_parameters=False)
async def degradation(incident_id: int) -> str:
    """Roll a degraded production version back to the newest known-good one that validates.

    Args:
        incident_id: the incident to respond to.

    Returns:
        The incident's final status.
    """
    async with playbook_guard(incident_id) as outcome:
        await confirm_degradation(incident_id)
        selected = await select_known_good(incident_id)
        await await_approval(incident_id, step="rollback")
        await rollback(incident_id, label=selected.selected)
        await validate(incident_id)
        outcome.recovered()
    return outcome.status
