"""The per-asset slot that deployments' flow runs hold across workers.

Workers on several machines take a work pool's flow runs in any order; each asset has a
Prefect global concurrency limit of one slot, so that a second playbook on the same asset waits
for the first to end. Playbooks run in one process (the CLI, the inline intake, the scheduler,
a drill) serialise per asset on that process's own locks instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.asyncio import concurrency
from prefect.exceptions import ObjectAlreadyExists
from prefect.runtime import deployment

from rearguard.models.incidents.service import get_incident
from rearguard.models.runtime import Runtime


def asset_limit_name(asset: str) -> str:
    """The Prefect global concurrency limit that lets one playbook at a time work on an asset."""
    return f"rearguard-asset-{asset}"


@asynccontextmanager
async def deployment_asset_slot(runtime: Runtime, incident_id: int) -> AsyncIterator[None]:
    """In a flow run of a deployment, hold the asset's Prefect concurrency slot while it runs.

    The limit (one slot) is created on first use. Anywhere else this does nothing.

    Args:
        runtime: the run's runtime (where the incident is).
        incident_id: the incident whose asset's slot to hold.
    """
    asset = None if deployment.id is None else _asset_of(runtime, incident_id)
    if asset is None:
        yield
        return

    name = asset_limit_name(asset)
    async with get_client() as client:
        with suppress(ObjectAlreadyExists):
            await client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=name, limit=1)
            )
    # The lease is renewed while the run lives; a worker that dies frees the asset within a
    # minute instead of Prefect's default five.
    async with concurrency(name, occupy=1, strict=True, lease_duration=60):
        yield


def _asset_of(runtime: Runtime, incident_id: int) -> str | None:
    with runtime.db.read_session() as session:
        return get_incident(session=session, incident_id=incident_id).asset_name
