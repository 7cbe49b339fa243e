"""What every playbook does around its steps: record how it ended and tell people."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from rearguard.flows.steps import conclude, notify
from rearguard.models.enums import IncidentStatus
from rearguard.models.errors import OperationFailed, RearguardError


@dataclass
class PlaybookOutcome:
    """How a playbook run ended; the playbook calls :meth:`recovered` after its last step."""

    status: str = IncidentStatus.FAILED.value

    def recovered(self) -> None:
        """Mark the run as having recovered the incident."""
        self.status = IncidentStatus.RECOVERED.value

    def contained(self) -> None:
        """Mark the run as having contained the incident, with nothing to restore."""
        self.status = IncidentStatus.CONTAINED.value


@asynccontextmanager
async def playbook_guard(incident_id: int) -> AsyncIterator[PlaybookOutcome]:
    """Wrap a playbook body: on success record ``recovered``, on failure ``failed`` and why.

    Either way the people concerned are notified, unless a rerun ended exactly as before. A
    failure is re-raised as :class:`OperationFailed` so that Prefect shows the flow run as
    failed too.
    """
    outcome = PlaybookOutcome()
    try:
        yield outcome
    except RearguardError as exc:
        ended = await conclude(incident_id, IncidentStatus.FAILED, exc.message)
        if ended["changed"]:
            await notify(incident_id, event="failed")
        raise OperationFailed(exc.message, hint=exc.hint) from exc
    if outcome.status in (IncidentStatus.RECOVERED, IncidentStatus.CONTAINED):
        ended = await conclude(incident_id, IncidentStatus(outcome.status))
        if ended["changed"]:
            await notify(incident_id, event=outcome.status)
