"""Running an incident's playbook in this process, under Prefect."""

from __future__ import annotations

import asyncio
import contextlib
import os

from rearguard.models.errors import RearguardError
from rearguard.models.incidents import get_incident
from rearguard.models.runtime import Runtime, use_runtime
from rearguard.models.tables import Incident
from rearguard.notifications.notify import deliver_after_run
from rearguard.playbooks.catalog import get_playbook

# Defaults for the embedded mode; a user's own PREFECT_* settings always win.
_PREFECT_DEFAULTS = {
    # A fresh machine's first temporary server migrates its database, which takes 20-30 s.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    # This machine may have no network: no telemetry from the temporary server.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # rearguard prints its own step progress; Prefect's INFO lines would repeat it.
    "PREFECT_LOGGING_LEVEL": "WARNING",
}


def configure_prefect() -> None:
    """Apply rearguard's defaults for Prefect settings the user has not set."""
    for name, value in _PREFECT_DEFAULTS.items():
        os.environ.setdefault(name, value)


def uses_temporary_server() -> bool:
    """True when no Prefect API is configured, so Prefect will start a temporary server."""
    if os.environ.get("PREFECT_API_URL"):
        return False
    from prefect.settings import get_current_settings

    return not get_current_settings().api.url


def install_secret_block_loader() -> None:
    """Let notifications read the Slack token from a Prefect Secret block when configured."""
    from rearguard.notifications.factory import set_secret_block_loader

    def load(name: str) -> str:
        from prefect.blocks.system import Secret

        return str(Secret.load(name).get())

    set_secret_block_loader(load)


def run_playbook(*, runtime: Runtime, incident_id: int) -> Incident:
    """Run (or rerun) an incident's playbook to its end and return the incident as it ends.

    A playbook that fails records ``failed`` and the reason on the incident; that is a result,
    not an exception. Steps converge on a rerun, so this also resumes an interrupted run.

    Raises:
        NotFoundError: unknown incident or incident type.
    """
    configure_prefect()
    with runtime.db.read_session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
    playbook = get_playbook(incident.type).load()
    use_runtime(runtime)
    # A drill's incident ids are its sandbox's; its flow runs say so in Prefect's UI.
    prefix = f"drill-{runtime.settings.home.name}-" if runtime.drill else ""
    named = playbook.with_options(flow_run_name=f"{prefix}incident-{incident_id}")
    # A playbook failure is recorded on the incident by the playbook guard.
    with contextlib.suppress(RearguardError):
        asyncio.run(named(incident_id=incident_id))
    # The playbook only queued its notifications; deliver them now, for a bounded wait.
    install_secret_block_loader()
    deliver_after_run(runtime, incident_id=incident_id)
    with runtime.db.read_session() as session:
        return get_incident(session=session, incident_id=incident_id)
