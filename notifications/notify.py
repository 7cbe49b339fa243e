"""The notify step's body, and delivering what a playbook run queued.

The step only writes: the ``notify.<event>`` timeline event and the outbox rows, in one
transaction. Delivery happens after the playbook (:func:`deliver_after_run`) or from
``rearguard notifications dispatch``, so a Slack outage never holds up a rollback.
"""

from __future__ import annotations

import contextlib
from typing import Any

from rearguard.models.assets import alias_version, get_asset
from rearguard.models.errors import NotFoundError
from rearguard.models.incidents import get_incident
from rearguard.models.runtime import Runtime
from rearguard.notifications.outbox import enqueue


def notify(
    *, runtime: Runtime, incident_id: int, event: str, if_status: str | None = None
) -> dict[str, Any]:
    """Queue the notification of an incident's event for every routed channel.

    Idempotent: a rerun for the same incident state queues nothing new.

    Args:
        runtime: the process runtime.
        incident_id: the incident.
        event: what to announce (a template name).
        if_status: announce only while the incident has this status, so that a rerun does not
            announce ``opened`` for an incident that is contained by now.

    Returns:
        ``{"event", "receipts": {target: "queued"}, "queued": rows written}``, or
        ``{"event", "skipped": why}``.
    """
    alias = runtime.settings.registry.alias
    with runtime.db.read_session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        if if_status is not None and incident.status != if_status:
            return {"event": event, "skipped": f"the incident is {incident.status}"}
        production = None
        if incident.asset_name:
            # An asset the registry does not know must not stop the notification.
            with contextlib.suppress(NotFoundError):
                asset = get_asset(session=session, name=incident.asset_name)
                current = alias_version(session=session, asset=asset, alias=alias)
                production = current.label if current else None
    with runtime.db.transaction() as connection:
        queued = enqueue(
            connection,
            settings=runtime.settings,
            incident=incident,
            event=event,
            actor=f"playbook:{incident.type}",
            production=production,
        )
    return {"event": event, "receipts": queued.targets, "queued": queued.rows}


def deliver_after_run(runtime: Runtime, *, incident_id: int) -> None:
    """Deliver an incident's queued notifications, waiting at most ``dispatch_wait_s``.

    Called when a playbook run has ended. A channel that is down (failed twice in a row, not
    a rate limit) is not waited for; whatever is still waiting stays in the outbox for
    ``rearguard notifications dispatch``. How it went is reported to the runtime's reporters
    as the step ``notifications``.
    """
    from rearguard.notifications.dispatcher import Dispatcher

    wait_s = runtime.settings.notifications.dispatch_wait_s
    try:
        with Dispatcher(settings=runtime.settings, db=runtime.db) as dispatcher:
            report = dispatcher.drain(wait_s=wait_s, incident_id=incident_id, stop_when_down=True)
    except Exception as exc:  # the outbox keeps them; a delivery problem never fails the run
        runtime.report("notifications", "fail", f"not delivered yet: {type(exc).__name__}")
        return
    if report.pending or report.failed:
        hint = "; `rearguard notifications dispatch` retries" if report.pending else ""
        runtime.report("notifications", "fail", report.describe() + hint)
