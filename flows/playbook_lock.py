"""The lock on the process-wide runtime slot that playbooks' steps read, and the per-asset
slot that deployments' flow runs hold across workers.

Steps find their runtime through one slot per process (``rearguard.models.runtime``). Playbooks
on the application's runtime (the intake's, the sweep's) can share it; a drill installs its
sandbox's runtime there, so it runs alone: in ``rearguard serve`` an incident's playbook must
never find a drill's sandbox in the slot.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress


class PlaybookLock:
    """Shared for playbooks on the application's runtime, exclusive for a drill."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._sharing = 0
        self._exclusive = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        """Run a playbook on the application's runtime (others may run at the same time)."""
        with self._changed:
            self._changed.wait_for(lambda: not self._exclusive)
            self._sharing += 1
        try:
            yield
        finally:
            with self._changed:
                self._sharing -= 1
                self._changed.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Run a drill: wait until no playbook runs, and keep others out until it ends."""
        with self._changed:
            self._changed.wait_for(lambda: not self._exclusive and self._sharing == 0)
            self._exclusive = True
        try:
            yield
        finally:
            with self._changed:
                self._exclusive = False
                self._changed.notify_all()


PLAYBOOK_LOCK = PlaybookLock()


def asset_limit_name(asset: str) -> str:
    """The Prefect global concurrency limit that lets one playbook at a time work on an asset."""
    return f"rearguard-asset-{asset}"


@asynccontextmanager
async def deployment_asset_slot(incident_id: int) -> AsyncIterator[None]:
    """In a flow run of a deployment, hold the asset's Prefect concurrency slot while it runs.

    Workers on several machines take the pool's flow runs in any order; the asset's global
    concurrency limit (one slot, created on first use) makes a second playbook on the same
    asset wait for the first to end. Anywhere else (the CLI, the inline intake, a drill) this
    does nothing: those serialise on their own process's locks.
    """
    from prefect.runtime import deployment

    asset = None if deployment.id is None else _asset_of(incident_id)
    if asset is None:
        yield
        return
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.concurrency.asyncio import concurrency
    from prefect.exceptions import ObjectAlreadyExists

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


def _asset_of(incident_id: int) -> str | None:
    from rearguard.models.incidents.service import get_incident
    from rearguard.models.runtime import current_runtime

    with current_runtime().db.read_session() as session:
        return get_incident(session=session, incident_id=incident_id).asset_name
