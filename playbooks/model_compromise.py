"""The model-compromise playbook (MITRE ATLAS AML.T0018, AML.T0031).

Contain (quarantine what production served), verify every other version, select the newest
known-good version that still verifies, wait for a person's approval when the policy in
``[approvals]`` asks for one, roll production back to it, validate what production
serves, notify. It serves model, prompt and config assets alike.
"""

from __future__ import annotations

from prefect import flow

from rearguard.flows.playbook_guard import playbook_guard
from rearguard.playbooks.restore import restore_known_good


@flow(name="model_compromise", log_prints=False, validate_parameters=False)
async def model_compromise(incident_id: int) -> str:
    """Recover from a tampered model, prompt or config artifact.

    Args:
        incident_id: the incident to respond to.

    Returns:
        The incident's final status.
    """
    async with playbook_guard(incident_id) as outcome:
        await restore_known_good(incident_id, outcome)
        outcome.recovered()
    return outcome.status
