"""The notify step's body: build a notification and deliver it to the configured channels."""

from __future__ import annotations

from typing import Any

from rearguard.models.assets import alias_version, get_asset
from rearguard.models.audit import append_event
from rearguard.models.enums import EventKind
from rearguard.models.incidents import get_incident
from rearguard.models.runtime import Runtime
from rearguard.notifications.channels import Channel, ConsoleChannel, FileChannel, Notification


def channels_for(runtime: Runtime) -> list[Channel]:
    """The channels of the embedded default, as configured."""
    channels: list[Channel] = [FileChannel(runtime.settings.notification_file)]
    if runtime.settings.notifications.console:
        channels.insert(0, ConsoleChannel())
    return channels


def notify(*, runtime: Runtime, incident_id: int, event: str) -> dict[str, Any]:
    """Tell people how the incident stands; each delivery is a timeline event."""
    alias = runtime.settings.registry.alias
    with runtime.db.read_session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        production = None
        if incident.asset_name:
            asset = get_asset(session=session, name=incident.asset_name)
            current = alias_version(session=session, asset=asset, alias=alias)
            production = current.label if current else None
    notification = Notification(
        incident_id=incident_id,
        event=event,
        title=(
            f"Incident {incident_id} ({incident.type}, {incident.severity}) on "
            f"{incident.asset_name}: {event}"
        ),
        body=(incident.reason or "") if event == "failed" else f"{alias} -> {production}",
        severity=str(incident.severity),
        facts={"asset": incident.asset_name, alias: production, "status": str(incident.status)},
    )
    receipts: dict[str, str] = {}
    for channel in channels_for(runtime):
        try:
            receipts[channel.name] = channel.send(notification)
        except OSError as exc:  # a channel outage never blocks recovery
            receipts[channel.name] = f"failed: {exc}"
    with runtime.db.session() as session:
        append_event(
            session,
            kind=EventKind.NOTIFICATION,
            action=f"notify.{event}",
            actor=f"playbook:{incident.type}",
            incident_id=incident_id,
            asset=incident.asset_name,
            data={"title": notification.title, "receipts": receipts},
        )
    return {"event": event, "receipts": receipts}
