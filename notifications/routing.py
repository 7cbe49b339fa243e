"""Routing: which channels and destinations one incident's notifications go to.

Every enabled channel gets every notification at its default destination (the console, the
file, ``[notifications.slack] channel``, ``[notifications.email] recipients``, the webhook).
Routes that match the incident's type and severity add Slack channels, email addresses and
stakeholder roles; stakeholders are looked up per asset (``[notifications.stakeholders]``):
email contacts get the email, ``slack:U...`` contacts are mentioned in Slack and invited to a
dedicated incident channel. A drill (incident source ``drill``) goes only to the drill
channel and drill recipients, and its messages say DRILL.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from rearguard.models.config.settings import Settings

# A Slack destination with this prefix is a dedicated incident channel, created on first use.
NEW_CHANNEL_PREFIX = "new:"


@dataclass(frozen=True)
class Target:
    """One destination of one channel."""

    channel: str
    destination: str


@dataclass(frozen=True)
class Route:
    """Where one incident's notifications go, and who is mentioned."""

    targets: list[Target] = field(default_factory=list)
    mentions: list[str] = field(default_factory=list)


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(item for item in items if item))


def route_for(
    settings: Settings,
    *,
    incident_id: int,
    incident_type: str,
    severity: str,
    asset: str | None,
    drill: bool,
    roles: Sequence[str] = (),
) -> Route:
    """Resolve the targets of an incident's notifications from the settings.

    Args:
        settings: the resolved settings.
        incident_id: the incident.
        incident_type: its type (matched by routes).
        severity: its severity (matched by routes).
        asset: its asset (stakeholders are per asset).
        drill: True for a drill: only the drill destinations, and no stakeholders but
            those of ``roles``.
        roles: stakeholder roles to tell besides the configured ones (legal and privacy, the data
            owners; for a drill, the asset owner of one that failed).

    Returns:
        The targets, in a stable order, and the Slack users to mention.
    """
    notifications = settings.notifications
    enabled = [c for c in notifications.channels if c != "console" or notifications.console]
    targets: list[Target] = []
    if "console" in enabled:
        targets.append(Target("console", "stderr"))
    if "file" in enabled:
        targets.append(Target("file", str(settings.notification_file)))
    if drill:
        owners = notifications.stakeholders.contacts(asset=asset, roles=list(roles))
        if "slack" in enabled:
            channel = notifications.drill_slack_channel or settings.slack.channel
            targets.extend(Target("slack", c) for c in _unique([channel or ""]))
        if "email" in enabled:
            recipients = notifications.drill_email or settings.email.recipients
            emails = [c for c in owners if "@" in c and not c.startswith("slack:")]
            targets.extend(Target("email", r) for r in _unique([*recipients, *emails]))
        if "webhook" in enabled and settings.webhook.url:
            targets.append(Target("webhook", "webhook"))
        return Route(targets=targets, mentions=[c for c in owners if c.startswith("slack:")])
    routes = [
        r for r in notifications.routes if r.matches(incident_type=incident_type, severity=severity)
    ]
    wanted = _unique(
        list(notifications.roles) + [role for r in routes for role in r.roles] + list(roles)
    )
    contacts = notifications.stakeholders.contacts(asset=asset, roles=wanted)
    mentions = [c for c in contacts if c.startswith("slack:")]
    emails = [c for c in contacts if "@" in c and not c.startswith("slack:")]
    if "slack" in enabled:
        channels = _unique([settings.slack.channel or ""] + [c for r in routes for c in r.slack])
        targets.extend(Target("slack", c) for c in channels)
        if settings.slack.incident_channels:
            name = incident_channel_name(
                prefix=settings.slack.incident_channel_prefix,
                incident_id=incident_id,
                asset=asset,
            )
            targets.append(Target("slack", NEW_CHANNEL_PREFIX + name))
    if "email" in enabled:
        recipients = _unique(
            list(settings.email.recipients) + [e for r in routes for e in r.email] + emails
        )
        targets.extend(Target("email", r) for r in recipients)
    if "webhook" in enabled and settings.webhook.url:
        targets.append(Target("webhook", "webhook"))
    return Route(targets=targets, mentions=mentions)


def incident_channel_name(*, prefix: str, incident_id: int, asset: str | None) -> str:
    """A valid Slack channel name for an incident: lowercase, at most 80 characters."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", (asset or "").lower()).strip("-")
    name = f"{prefix}{incident_id}" + (f"-{slug}" if slug else "")
    return name[:80].rstrip("-")
