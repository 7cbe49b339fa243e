"""Routing: which channels and destinations one incident's notifications go to.

Every enabled channel gets every notification at its default destination (the console, the
file, ``[notifications.slack] channel``, ``[notifications.email] recipients``, the webhook).
Routes that match the incident's type and severity add Slack channels, email addresses and
stakeholder roles; stakeholders are looked up per asset (``[notifications.stakeholders]``):
email contacts get the email, ``slack:U...`` contacts are mentioned in Slack and invited to a
dedicated incident channel. A drill (incident source ``drill``) goes only to the drill
channel and drill recipients, and its messages say DRILL.

PagerDuty takes only the events that change a page (:data:`PAGERDUTY_ACTIONS`): ``opened`` and
``failed`` trigger it, ``acknowledged`` (a person decided an approval) acknowledges it,
``resolved`` (and ``recovered``, with ``resolve_on_recovered``) resolves it. The key that pages
is that of the matching routes that name one (``pagerduty = ...``), else the default
(``REARGUARD_PAGERDUTY_ROUTING_KEY``). A drill never pages. ``acknowledged`` and ``resolved``
go to PagerDuty only.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import SecretStr

from rearguard.models.config.notifications import ENV_REFERENCE, RouteSettings
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


PAGERDUTY_ACTIONS = {
    "opened": "trigger",
    "failed": "trigger",
    "acknowledged": "acknowledge",
    "recovered": "resolve",
    "resolved": "resolve",
}
"""The PagerDuty event action of each notification event that may page (``recovered`` only
with ``[notifications.pagerduty] resolve_on_recovered``)."""
PAGE_ONLY_EVENTS = frozenset({"acknowledged", "resolved"})
"""Events only PagerDuty takes: no other channel is told of them."""


def pages(settings: Settings, event: str | None) -> bool:
    """True when a notification event changes a page: PagerDuty is sent it."""
    if event == "recovered":
        return settings.pagerduty.resolve_on_recovered
    return event in PAGERDUTY_ACTIONS


def routing_key_label(configured: str) -> str:
    """How a routing key is named in the outbox, receipts and the timeline, never by value:
    ``env:NAME`` as it is written, a key itself by the first 12 hex digits of its SHA-256."""
    if configured.startswith(ENV_REFERENCE):
        return configured
    return "key-" + hashlib.sha256(configured.encode()).hexdigest()[:12]


def configured_routing_keys(settings: Settings) -> dict[str, str]:
    """Every routing key the settings name (the default and the routes'), by label."""
    secrets: list[SecretStr | None] = [settings.pagerduty.routing_key]
    secrets += [r.pagerduty for r in settings.notifications.routes]
    texts = [s.get_secret_value().strip() for s in secrets if s is not None]
    return {routing_key_label(text): text for text in texts if text}


def _pagerduty_targets(
    settings: Settings, routes: list[RouteSettings], event: str | None
) -> list[Target]:
    if not pages(settings, event):
        return []
    chosen = [r.pagerduty for r in routes if r.pagerduty is not None]
    if not chosen and settings.pagerduty.routing_key is not None:
        chosen = [settings.pagerduty.routing_key]
    labels = _unique([routing_key_label(s.get_secret_value().strip()) for s in chosen])
    return [Target("pagerduty", label) for label in labels]


def route_for(
    settings: Settings,
    *,
    incident_id: int,
    incident_type: str,
    severity: str,
    asset: str | None,
    drill: bool,
    roles: Sequence[str] = (),
    event: str | None = None,
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
        event: the event notified; PagerDuty takes only those it maps to an action (None:
            no page).

    Returns:
        The targets, in a stable order, and the Slack users to mention.
    """
    if drill and event in PAGE_ONLY_EVENTS:
        return Route()  # a drill pages nobody
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
    pages = _pagerduty_targets(settings, routes, event) if "pagerduty" in enabled else []
    if event in PAGE_ONLY_EVENTS:
        return Route(targets=pages)
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
    return Route(targets=targets + pages, mentions=mentions)


def incident_channel_name(*, prefix: str, incident_id: int, asset: str | None) -> str:
    """A valid Slack channel name for an incident: lowercase, at most 80 characters."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", (asset or "").lower()).strip("-")
    name = f"{prefix}{incident_id}" + (f"-{slug}" if slug else "")
    return name[:80].rstrip("-")
