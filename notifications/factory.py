"""Building the configured channels, with their secrets, from the settings.

Secrets come from the environment (``REARGUARD_SLACK_TOKEN``, ``REARGUARD_SMTP_PASSWORD``,
``REARGUARD_WEBHOOK_SECRET``, ``REARGUARD_PAGERDUTY_ROUTING_KEY`` and the variables routes name
with ``pagerduty = "env:NAME"``) or, for the Slack token, from a Prefect Secret block. Reading a
block needs Prefect, which this package never imports: the flows layer lends a loader on the
runtime (``Runtime.secret_blocks``), which is passed down to here.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import IO

from rearguard.models.config.notifications import ENV_REFERENCE
from rearguard.models.config.settings import Settings
from rearguard.models.config.slack_commands import RESPONSE_CHANNEL
from rearguard.models.errors import ConfigurationError
from rearguard.models.runtime import SecretBlockLoader
from rearguard.notifications.channels.base import Channel, ConsoleChannel, FileChannel
from rearguard.notifications.channels.email import EmailChannel
from rearguard.notifications.channels.pagerduty import PagerDutyChannel
from rearguard.notifications.channels.slack import SlackChannel
from rearguard.notifications.channels.slack_response import SlackResponseChannel
from rearguard.notifications.channels.webhook import WebhookChannel
from rearguard.notifications.routing import configured_routing_keys

logger = logging.getLogger(__name__)


def slack_token(settings: Settings, *, secret_blocks: SecretBlockLoader | None = None) -> str:
    """The Slack token: the environment's, else the Prefect Secret block's.

    Args:
        settings: the settings naming the token or its block.
        secret_blocks: reads a Prefect Secret block (None: a block cannot be read here).

    Raises:
        ConfigurationError: neither is configured, or the block cannot be read.
    """
    if settings.slack.token is not None and settings.slack.token.get_secret_value():
        return settings.slack.token.get_secret_value()
    block = settings.slack.token_block
    if block:
        if secret_blocks is None:
            raise ConfigurationError(f"cannot read the Prefect Secret block {block!r} here")
        try:
            return secret_blocks(block)
        except Exception as exc:
            raise ConfigurationError(
                f"cannot read the Prefect Secret block {block!r}: {type(exc).__name__}"
            ) from exc
    raise ConfigurationError(
        "no Slack token", hint="set REARGUARD_SLACK_TOKEN or [notifications.slack] token_block"
    )


def routing_keys(settings: Settings) -> dict[str, str | None]:
    """Every configured PagerDuty routing key by its label, ``env:NAME`` read from the process
    environment; None for a variable that is unset."""
    return {
        label: os.environ.get(text.removeprefix(ENV_REFERENCE))
        if text.startswith(ENV_REFERENCE)
        else text
        for label, text in configured_routing_keys(settings).items()
    }


def build_channel(
    name: str,
    settings: Settings,
    *,
    secret_blocks: SecretBlockLoader | None = None,
    console: IO[str] | None = None,
) -> Channel:
    """Build one channel from the settings (``secret_blocks`` reads the Slack token's block;
    the console channel prints on ``console``, standard error when None).

    Raises:
        ConfigurationError: the channel is not configured (no URL, host, token or secret).
    """
    if name == "console":
        return ConsoleChannel(console)
    if name == "file":
        return FileChannel(settings.notification_file)
    if name == "slack":
        return SlackChannel(
            token=slack_token(settings, secret_blocks=secret_blocks),
            base_url=settings.slack.base_url,
            timeout_s=settings.slack.timeout_s,
            channel_prefix=settings.slack.incident_channel_prefix,
        )
    if name == "email":
        email = settings.email
        if not email.host:
            raise ConfigurationError(
                "no SMTP server", hint="set [notifications.email] host or REARGUARD_SMTP_HOST"
            )
        if email.security == "none" and email.username:
            if not email.allow_plaintext_auth:
                raise ConfigurationError(
                    'SMTP login with security = "none" would send the password in clear',
                    hint='use security = "starttls" or "tls"; or, on a trusted network, set '
                    "[notifications.email] allow_plaintext_auth = true",
                )
            logger.warning(
                "SMTP login to %s without TLS: the password travels in clear "
                "(allow_plaintext_auth = true)",
                email.host,
            )
        return EmailChannel(
            host=email.host,
            port=email.port,
            security=email.security,
            username=email.username,
            password=email.password.get_secret_value() if email.password else None,
            sender=email.sender,
            ca_file=email.ca_file,
            timeout_s=email.timeout_s,
        )
    if name == "webhook":
        webhook = settings.webhook
        if not webhook.url:
            raise ConfigurationError(
                "no webhook URL", hint="set [notifications.webhook] url or REARGUARD_WEBHOOK_URL"
            )
        if webhook.secret is None or not webhook.secret.get_secret_value():
            raise ConfigurationError(
                "no webhook secret to sign with", hint="set REARGUARD_WEBHOOK_SECRET"
            )
        return WebhookChannel(
            url=webhook.url, secret=webhook.secret.get_secret_value(), timeout_s=webhook.timeout_s
        )
    if name == "pagerduty":
        keys = routing_keys(settings)
        if not keys:
            raise ConfigurationError(
                "no PagerDuty routing key",
                hint="set REARGUARD_PAGERDUTY_ROUTING_KEY, or pagerduty = ... in a route",
            )
        pagerduty = settings.pagerduty
        return PagerDutyChannel(
            events_url=pagerduty.events_url,
            routing_keys=keys,
            source=pagerduty.source,
            review_url=pagerduty.review_url,
            timeout_s=pagerduty.timeout_s,
        )
    if name == RESPONSE_CHANNEL:
        return SlackResponseChannel(
            commands=settings.slack_commands, timeout_s=settings.slack.timeout_s
        )
    raise ConfigurationError(f"unknown channel {name!r}")


class ChannelPool:
    """The channels one dispatcher uses, built on first use and shared by its workers.

    Args:
        settings: the channels' settings.
        secret_blocks: reads the Slack token's Prefect Secret block, when one is named.
        console: where the console channel prints (standard error when None).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        secret_blocks: SecretBlockLoader | None = None,
        console: IO[str] | None = None,
    ) -> None:
        self.settings = settings
        self.secret_blocks = secret_blocks
        self.console = console
        self._channels: dict[str, Channel | ConfigurationError] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Channel:
        """The channel ``name``.

        Raises:
            ConfigurationError: it is not configured.
        """
        with self._lock:
            if name not in self._channels:
                try:
                    self._channels[name] = build_channel(
                        name, self.settings, secret_blocks=self.secret_blocks, console=self.console
                    )
                except ConfigurationError as exc:
                    self._channels[name] = exc
            found = self._channels[name]
        if isinstance(found, ConfigurationError):
            raise found
        return found

    def close(self) -> None:
        """Close every channel that was built."""
        for channel in self._channels.values():
            if not isinstance(channel, ConfigurationError):
                channel.close()
        self._channels.clear()
