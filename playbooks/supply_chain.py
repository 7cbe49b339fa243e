"""The supply-chain playbook (MITRE ATLAS AML.T0010 AI Supply Chain Compromise).

A third-party file is known to be malicious. Denylist its digest (so it cannot be registered
or promoted again), find every stored version of every asset holding it by one indexed query,
quarantine each of them, and roll every production alias that served one back to a clean
known-good version, validating what production then serves. Assets that never held the file
are not touched.
"""

from __future__ import annotations

from prefect import flow

from rearguard.flows.playbook_guard import playbook_guard
from rearguard.flows.steps import (
    await_approval,
    denylist_digest,
    find_digest_versions,
    quarantine,
    rollback,
    select_known_good,
    validate,
)


@flow(name="supply_chain", log_prints=False, validate_parameters=False)
async def supply_chain(incident_id: int) -> str:
    """Recover from a malicious third-party file inside stored versions.

    Args:
        incident_id: the incident to respond to (its state holds the digest).

    Returns:
        The incident's final status.
    """
    async with playbook_guard(incident_id) as outcome:
        await denylist_digest(incident_id)
        found = await find_digest_versions(incident_id)
        for hit in found.affected:
            await quarantine(
                incident_id,
                asset=hit.asset,
                label=hit.label,
                reason=f"holds a file with denylisted digest {found.digest}",
            )
        await outcome.contained()
        if found.production:
            await await_approval(incident_id, step="rollback")
        for asset in sorted(found.production):
            selected = await select_known_good(incident_id, asset=asset)
            await rollback(incident_id, asset=asset, label=selected.selected)
            await validate(incident_id, asset=asset)
        outcome.recovered()
    return outcome.status
