"""The ``slack:CHANNEL`` checkpoint sink: signed checkpoints posted to a Slack channel.

A channel that the people who can write rearguard's database cannot edit (its history belongs to
Slack) is a place outside the machine that vouches for the chain. Each checkpoint is one message
whose text is the checkpoint's JSON line; ``rearguard audit verify --checkpoints slack:CHANNEL``
reads the channel's history back, oldest first, and checks the chain against every checkpoint in
it (the channel's other messages are skipped).

The bot token is ``[notifications.slack]``'s (``REARGUARD_SLACK_TOKEN``); reading back needs the
``channels:history`` (or ``groups:history``) scope.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from rearguard.models.config.notifications import SlackSettings
from rearguard.models.errors import UsageError

if TYPE_CHECKING:
    from slack_sdk import WebClient

__all__ = ["SLACK_SINK", "post_checkpoint", "read_messages"]

SLACK_SINK = "slack:"
_PAGE = 200


def _client(slack: SlackSettings, *, timeout_s: float) -> WebClient | None:
    if slack.token is None:
        return None
    # lazy: the Slack SDK for a Slack sink only (every command's checkpoint check imports this).
    from slack_sdk import WebClient

    base_url = slack.base_url if slack.base_url.endswith("/") else slack.base_url + "/"
    return WebClient(
        token=slack.token.get_secret_value(), base_url=base_url, timeout=max(1, int(timeout_s))
    )


def post_checkpoint(
    record: str, *, channel: str, slack: SlackSettings, timeout_s: float
) -> str | None:
    """Post one checkpoint line to a channel.

    Args:
        record: the checkpoint's JSON line.
        channel: a channel id or ``#name``.
        slack: the Slack settings (token, base URL).
        timeout_s: the attempt's timeout.

    Returns:
        The error, or None when Slack accepted the message.
    """
    client = _client(slack, timeout_s=timeout_s)
    if client is None:
        return "the slack checkpoint sink needs a bot token (REARGUARD_SLACK_TOKEN)"
    from slack_sdk.errors import SlackApiError, SlackClientError  # lazy: as in _client

    # Slack reads &, < and > in text as markup: escaped, as its documentation asks.
    text = html.escape(record, quote=False)
    try:
        client.chat_postMessage(channel=channel, text=text, mrkdwn=False, unfurl_links=False)
    except SlackApiError as exc:
        return f"Slack refused the checkpoint: {exc.response.get('error', 'error')}"
    except (SlackClientError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def read_messages(channel: str, *, slack: SlackSettings, timeout_s: float) -> list[str]:
    """The texts of a channel's messages, oldest first (the caller keeps the checkpoints).

    Args:
        channel: a channel id or ``#name``.
        slack: the Slack settings (token, base URL).
        timeout_s: each request's timeout.

    Returns:
        Each message's text, unescaped.

    Raises:
        UsageError: no token, or Slack refuses or cannot be reached.
    """
    client = _client(slack, timeout_s=timeout_s)
    if client is None:
        raise UsageError("reading checkpoints from Slack needs a bot token (REARGUARD_SLACK_TOKEN)")
    from slack_sdk.errors import SlackApiError, SlackClientError  # lazy: as in _client

    texts: list[str] = []
    cursor: str | None = None
    try:
        while True:
            page = client.conversations_history(channel=channel, limit=_PAGE, cursor=cursor)
            messages: list[dict[str, object]] = page.get("messages", [])
            texts.extend(str(message.get("text", "")) for message in messages)
            metadata: dict[str, object] = page.get("response_metadata") or {}
            cursor = str(metadata.get("next_cursor") or "") or None
            if not page.get("has_more") or cursor is None:
                break
    except SlackApiError as exc:
        error = exc.response.get("error", "error")
        raise UsageError(f"cannot read Slack channel {channel}: {error}") from exc
    except (SlackClientError, OSError) as exc:
        raise UsageError(f"cannot read Slack channel {channel}: {exc}") from exc
    return [html.unescape(text) for text in reversed(texts)]
