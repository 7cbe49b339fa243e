"""Answers to a Slack slash command that come after its acknowledgement: a JSON POST to the
command's ``response_url``.

Slack gives every command a ``response_url`` that takes up to five messages within 30
minutes. The outbox row's destination is that URL; it is posted to only when it is under
``[slack_commands] response_url_prefix`` (Slack's ``https://hooks.slack.com/``), checked when
the command arrives and again here, so neither a request nor a row can point rearguard at
another address. The message is ephemeral: only the person who typed the command sees it.

A 2xx is delivered; 429 and 5xx are retried (honouring ``Retry-After``); any other 4xx is
permanent (an expired or used-up URL). Slack keeps no key to look a message up by, so a reply
in doubt is not posted again: the result it carried is in the incident's timeline and in the
channels the incident's notifications go to.
"""

from __future__ import annotations

from typing import Any

import httpx

from rearguard.models.config.slack_commands import RESPONSE_CHANNEL, SlackCommandSettings
from rearguard.notifications.channels.base import Delivery, DeliveryError, Message, Receipt


class SlackResponseChannel:
    """Posts a message to a slash command's ``response_url``.

    Args:
        commands: the settings that say which URLs may be posted to.
        timeout_s: seconds to wait for the answer.
    """

    name = RESPONSE_CHANNEL

    def __init__(self, *, commands: SlackCommandSettings, timeout_s: float = 10.0) -> None:
        self._commands = commands
        self.client = httpx.Client(timeout=timeout_s, follow_redirects=False)

    def send(self, message: Message, delivery: Delivery) -> Receipt:
        """POST the message, ephemeral, to the command's response_url."""
        if not self._commands.may_post_to(delivery.destination):
            raise DeliveryError(
                "slack_response: the response_url is not under "
                f"{self._commands.response_url_prefix}",
                permanent=True,
            )
        body: dict[str, Any] = {
            "response_type": "ephemeral",
            "replace_original": False,
            "text": message.slack_text,
        }
        if message.blocks:
            body["blocks"] = message.blocks
        try:
            response = self.client.post(delivery.destination, json=body)
        except httpx.ConnectError as exc:
            raise DeliveryError(f"slack_response: cannot connect: {exc}") from exc
        except httpx.HTTPError as exc:
            raise DeliveryError(f"slack_response: {type(exc).__name__}", in_doubt=True) from exc
        status = response.status_code
        if 200 <= status < 300:
            return Receipt({"status": status})
        if status == 429 or status >= 500:
            raw = response.headers.get("Retry-After")
            retry_after = float(raw) if raw and raw.isdigit() else None
            raise DeliveryError(
                f"slack_response: HTTP {status}", retry_after=retry_after, in_doubt=status >= 500
            )
        raise DeliveryError(f"slack_response: HTTP {status}", permanent=True)

    def find_sent(self, delivery: Delivery) -> Receipt | None:
        """A response_url cannot be searched: a reply in doubt is not posted again."""
        raise DeliveryError("a Slack command reply in doubt is not repeated", permanent=True)

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()
