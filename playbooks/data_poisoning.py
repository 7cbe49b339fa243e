"""The data-poisoning playbook (MITRE ATLAS AML.T0020 Poison Training Data).

A dataset is poisoned from ``since`` on. Mark its versions registered since then suspect,
freeze ingestion (a hook), follow lineage to every model version of any asset trained on a
suspect version and quarantine those, roll every production alias that served one back to the
newest known-good version trained on a clean dataset version, ask for retraining on the last
clean dataset version (a hook, per asset), and tell the data owners. Assets not trained on a
suspect version are not touched.
"""

from __future__ import annotations

from prefect import flow

from rearguard.flows.playbook_guard import playbook_guard
from rearguard.flows.steps import (
    await_approval,
    mark_dataset_suspect,
    quarantine,
    rollback,
    run_hook,
    select_known_good,
    trace_lineage,
    validate,
)


@flow(name="data_poisoning", log_prints=False, validate_parameters=False)
async def data_poisoning(incident_id: int) -> str:
    """Recover from poisoned training data.

    Args:
        incident_id: the incident to respond to (its asset is the dataset).

    Returns:
        The incident's final status.
    """
    async with playbook_guard(incident_id) as outcome:
        marked = await mark_dataset_suspect(incident_id)
        dataset_env = {"REARGUARD_DATASET": marked.dataset}
        await run_hook(incident_id, hook="freeze_ingestion", env=dataset_env)
        traced = await trace_lineage(incident_id)
        for version in traced.tainted:
            await quarantine(
                incident_id,
                asset=version.asset,
                label=version.label,
                reason=f"trained on suspect dataset {marked.dataset}@{version.dataset_version}",
            )
        await outcome.contained(roles=["data_owner"])
        if traced.production:
            await await_approval(incident_id, step="rollback")
        for asset in sorted(traced.production):
            selected = await select_known_good(
                incident_id, asset=asset, honour_since=False, clean_lineage=True
            )
            await rollback(incident_id, asset=asset, label=selected.selected)
            await validate(incident_id, asset=asset)
        for asset in sorted({v.asset for v in traced.tainted}):
            await run_hook(
                incident_id,
                hook="retrain",
                asset=asset,
                env={**dataset_env, "REARGUARD_DATASET_VERSION": marked.clean or ""},
            )
        outcome.recovered()
    return outcome.status
