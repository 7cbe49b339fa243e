"""What every playbook does around its steps: bind its runtime, tell people, record how it
ended."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from rearguard.flows.prefect_infra.asset_slot import deployment_asset_slot
from rearguard.flows.prefect_infra.lent import with_prefect
from rearguard.flows.steps import conclude, notify
from rearguard.models.config.settings import load_settings
from rearguard.models.enums import IncidentStatus
from rearguard.models.errors import OperationFailed, RearguardError
from rearguard.models.runtime import PLAYBOOK_ENDED, Runtime, bound, bound_runtime
from rearguard.notifications.notify import deliver_after_run


@dataclass
class PlaybookOutcome:
    """How a playbook run is going; the playbook reports containment and recovery on it."""

    incident_id: int
    status: str = IncidentStatus.FAILED.value

    async def contained(self, *, roles: list[str] | None = None) -> None:
        """Tell people the damage is contained (call right after the containing steps).

        Args:
            roles: stakeholder roles to reach besides the routed ones (e.g. ``data_owner``).
        """
        await notify(
            self.incident_id, event="contained", if_status=IncidentStatus.CONTAINED, roles=roles
        )

    def recovered(self) -> None:
        """Mark the run as having recovered the incident."""
        self.status = IncidentStatus.RECOVERED.value

    def ends_contained(self) -> None:
        """Mark the run as ending with the incident contained, with nothing to restore."""
        self.status = IncidentStatus.CONTAINED.value


@asynccontextmanager
async def playbook_guard(incident_id: int) -> AsyncIterator[PlaybookOutcome]:
    """Wrap a playbook body: bind its runtime, tell people it opened, record and announce how
    it ended.

    The run's runtime is the one its caller bound (:func:`rearguard.flows.run_playbook.run_playbook`
    does), or, in a deployment's flow run in a worker's process, where nothing is bound, one
    built here from the settings and closed at the end. It is bound to the body for the run's
    duration, with what Prefect lends it (hook deployments, Secret blocks), so that the steps,
    and only this run's steps, find it.

    On success the incident is ``recovered``, on failure ``failed`` with the reason. Each
    notification is queued only while the incident is in the state it announces, and once per
    state, so a rerun after a crash at any point sends what the crash lost and nothing twice.
    A failure is re-raised as :class:`OperationFailed` so that Prefect shows the flow run as
    failed too. In a deployment's flow run, it first waits for the asset's concurrency slot, so
    that workers run one playbook per asset at a time. However the run ends, the notifications
    it queued are then delivered (for at most ``dispatch_wait_s``; the outbox keeps the rest),
    in whichever process runs it, and the runtime's reporters hear that the run's work is
    over (:data:`rearguard.models.runtime.PLAYBOOK_ENDED`).
    """
    outcome = PlaybookOutcome(incident_id)
    given, owned = bound(), None
    if given is None:  # a deployment's flow run: this worker's process has no runtime of its own
        given = owned = Runtime.from_settings(load_settings())
    runtime = with_prefect(given)
    # Now, not at the end: starting a thread can wait for the OS on a loaded machine.
    runtime.checkpoints.start(settings=runtime.settings)
    try:
        with bound_runtime(runtime):
            async with deployment_asset_slot(runtime, incident_id):
                try:
                    await notify(incident_id, event="opened", if_status=IncidentStatus.OPEN)
                    try:
                        yield outcome
                    except RearguardError as exc:
                        await conclude(incident_id, IncidentStatus.FAILED, exc.message)
                        await notify(incident_id, event="failed", if_status=IncidentStatus.FAILED)
                        raise OperationFailed(exc.message, hint=exc.hint) from exc
                    if outcome.status in (IncidentStatus.RECOVERED, IncidentStatus.CONTAINED):
                        ended = IncidentStatus(outcome.status)
                        await conclude(incident_id, ended)
                        await notify(incident_id, event=str(ended), if_status=ended)
                finally:
                    await _deliver_queued(runtime, incident_id)
                    _checkpoint(runtime, incident_id)
                    runtime.report(*PLAYBOOK_ENDED, str(outcome.status))
    finally:
        if owned is not None:  # this process ends with the run: publish its checkpoint first
            owned.close()


def _checkpoint(runtime: Runtime, incident_id: int) -> None:
    """Ask for a signed checkpoint of the chain as the run ends (when ``[audit] signing_key``
    is set): the runtime's background checkpointer makes, stores and publishes it, so the run
    waits for neither the disk nor a sink, and a checkpoint never fails it. Whatever cannot be
    published is kept and retried."""
    runtime.request_checkpoint(f"incident {incident_id} run ended")


async def _deliver_queued(runtime: Runtime, incident_id: int) -> None:
    """Deliver what the run queued, for a bounded wait, wherever the flow runs (here, or in a
    work pool's worker)."""
    await asyncio.to_thread(deliver_after_run, runtime, incident_id=incident_id)
