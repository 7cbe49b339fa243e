"""The prompt- and config-tampering playbooks (MITRE ATLAS AML.T0051, AML.T0081; Code 8.3).

The model-compromise recovery (quarantine what production served, verify, select the newest
known-good version that verifies, roll back, validate, notify), plus a step that records in
the timeline what the tampering changed: a unified diff between the restored text and the
tampered text as found, with secrets redacted.
"""

from __future__ import annotations

from prefect import flow

from rearguard.flows.playbook_guard import playbook_guard
from rearguard.playbooks.restore import restore_known_good


async def _restore_and_diff(incident_id: int) -> str:
    async with playbook_guard(incident_id) as outcome:
        await restore_known_good(incident_id, outcome, diff=True)
        outcome.recovered()
    return outcome.status


@flow(name="prompt_tampering", log_prints=False, validate_parameters=False)
async def prompt_tampering(incident_id: int) -> str:
    """Recover from an altered system prompt or guardrail text, recording what was changed.

    Args:
        incident_id: the incident to respond to.

    Returns:
        The incident's final status.
    """
    return await _restore_and_diff(incident_id)


@flow(name="config_tampering", log_prints=False, validate_parameters=False)
async def config_tampering(incident_id: int) -> str:
    """Recover from an altered serving or guardrail configuration, recording what was changed.

    Args:
        incident_id: the incident to respond to.

    Returns:
        The incident's final status.
    """
    return await _restore_and_diff(incident_id)
