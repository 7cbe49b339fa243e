"""Prefect events for incidents, so users can build Prefect automations on them.

``rearguard.incident.opened``, ``.contained``, ``.recovered`` and ``.failed``, with the asset as
the resource (``rearguard.asset.<name>``) and the incident as a related resource.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rearguard.models.db.tables import Incident

logger = logging.getLogger(__name__)


def _prefect_api_configured() -> bool:
    # Without a configured API, emitting would start Prefect's temporary server (10-20 s) just
    # for an event; a process that already imported Prefect knows its own settings.
    if os.environ.get("PREFECT_API_URL"):
        return True
    if "prefect.settings" not in sys.modules:
        return False
    from prefect.settings import get_current_settings  # lazy: Prefect after configure_prefect

    return bool(get_current_settings().api.url)


def emit_incident_event(status: str, incident: Incident) -> None:
    """Emit ``rearguard.incident.<status>`` for an incident; never fails the caller.

    Args:
        status: opened, contained, recovered or failed.
        incident: the incident, as recorded.
    """
    if not _prefect_api_configured():
        return
    try:
        from prefect.events import emit_event  # lazy: Prefect after configure_prefect

        emit_event(
            event=f"rearguard.incident.{status}",
            resource={
                "prefect.resource.id": f"rearguard.asset.{incident.asset_name or 'none'}",
                "prefect.resource.name": incident.asset_name or "none",
            },
            related=[
                {
                    "prefect.resource.id": f"rearguard.incident.{incident.id}",
                    "prefect.resource.role": "incident",
                }
            ],
            payload={
                "incident_id": incident.id,
                "type": incident.type,
                "severity": str(incident.severity),
                "status": str(incident.status),
                "source": str(incident.source),
            },
        )
    except Exception as exc:  # an event is a courtesy: it never stops a response
        logger.warning("could not emit rearguard.incident.%s: %s", status, exc)
