"""Sending a test message through one channel, straight away, for ``rearguard notify test``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from rearguard.models.audit.chain import append_event
from rearguard.models.enums import EventKind
from rearguard.models.errors import UsageError
from rearguard.models.runtime import Runtime
from rearguard.notifications.channels.base import Delivery, DeliveryError
from rearguard.notifications.factory import build_channel
from rearguard.notifications.templates import Renderer

_FORMATS = {"slack": frozenset({"slack"}), "email": frozenset({"html"})}


def _default_destination(runtime: Runtime, channel: str) -> str:
    settings = runtime.settings
    if channel == "slack":
        if not settings.slack.channel:
            raise UsageError(
                "no Slack channel to send to", hint="pass --to or set [notifications.slack] channel"
            )
        return settings.slack.channel
    if channel == "email":
        if not settings.email.recipients:
            raise UsageError(
                "no email recipient", hint="pass --to or set [notifications.email] recipients"
            )
        return settings.email.recipients[0]
    if channel == "file":
        return str(settings.notification_file)
    return "stderr" if channel == "console" else "webhook"


def send_test(
    runtime: Runtime, *, channel: str, destination: str | None, actor: str
) -> dict[str, Any]:
    """Send the ``test`` template through ``channel`` now and record the outcome.

    Returns:
        ``{"ok", "channel", "destination", "receipt" | "error", "permanent"}``.

    Raises:
        ConfigurationError: the channel is not configured.
        UsageError: no destination given or configured.
    """
    target = destination or _default_destination(runtime, channel)
    sender = build_channel(channel, runtime.settings, secret_blocks=runtime.secret_blocks)
    context: dict[str, Any] = {
        "event": "test",
        "sent_by": actor,
        "channel": channel,
        "incident": dict.fromkeys(
            ("id", "type", "severity", "status", "asset", "summary", "reason", "source")
        ),
        "alias": runtime.settings.registry.alias,
        "production": None,
        "drill": False,
        "mentions": [],
        "command": "rearguard notifications list",
        "extra": {},
    }
    message = Renderer(runtime.settings.notifications.templates_dir).render(
        "test", context, formats=_FORMATS.get(channel, frozenset())
    )
    delivery = Delivery(
        outbox_id=0,
        idempotency_key=str(uuid.uuid4()),
        incident_id=None,
        event="test",
        destination=target,
        created_at=datetime.now(UTC),
    )
    result: dict[str, Any] = {"channel": channel, "destination": target}
    try:
        receipt = sender.send(message, delivery)
        result.update(ok=True, receipt=receipt.details)
    except DeliveryError as exc:
        result.update(ok=False, error=exc.message, permanent=exc.permanent)
    finally:
        sender.close()
    with runtime.db.transaction() as connection:
        append_event(
            connection,
            kind=EventKind.NOTIFICATION,
            action="notification.test",
            actor=actor,
            data=result,
        )
    return result
