"""The model-theft playbook (MITRE ATLAS AML.T0024 Exfiltration via AI Inference API,
AML.T0025 Exfiltration via Cyber Means).

A stolen model cannot be un-stolen: verify what production serves (and only if it fails, roll
back as for a tampered model), rotate the credentials that gave access (the configured
``rotate_credentials`` hooks, recorded by name), and tell legal and privacy, with the 72-hour
regulator deadline when the asset touches personal data. Legal and privacy are told first, once
per incident: a hook that fails or waits for approval never holds the notice back, and a rerun
never sends it again. Contained when the hooks succeed; a person then resolves the incident
with a note (``rearguard incident resolve ID --note``).
"""

from __future__ import annotations

from prefect import flow

from rearguard.flows.playbook_guard import playbook_guard
from rearguard.flows.steps import (
    await_approval,
    notify_legal,
    run_hook,
    verify_production,
)
from rearguard.models.recovery.results import ProductionCheck
from rearguard.playbooks.restore import restore_known_good


@flow(name="model_theft", log_prints=False, validate_parameters=False)
async def model_theft(incident_id: int) -> str:
    """Respond to a stolen model.

    Args:
        incident_id: the incident to respond to.

    Returns:
        The incident's final status.
    """
    async with playbook_guard(incident_id) as outcome:
        production = await verify_production(incident_id)
        if isinstance(production, ProductionCheck) and not production.ok:
            await restore_known_good(incident_id, outcome)
        await notify_legal(incident_id)
        await await_approval(incident_id, step="rotate_credentials")
        await run_hook(incident_id, hook="rotate_credentials", required=True)
        outcome.ends_contained()
    return outcome.status
