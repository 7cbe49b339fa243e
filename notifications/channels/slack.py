"""The Slack channel: ``chat.postMessage`` with Block Kit, one thread per incident.

The first message of an incident to a channel starts a thread; the dispatcher stores the
channel id and the thread's ``ts`` and later messages go into that thread. With
``incident_channels`` on, an incident also gets its own channel (``conversations.create``),
its Slack stakeholders are invited, and its messages are posted there.

Every message carries its outbox row's idempotency key twice: as ``client_msg_id`` and in the
message ``metadata``. When a send is in doubt (a timeout or a 5xx after the request went out,
or a crash before the receipt was recorded) the dispatcher calls :meth:`SlackChannel.find_sent`,
which looks for that key in the channel's history or the thread's replies before anything is
sent again. ``Retry-After`` of a 429 is passed up as ``retry_after``; permanent errors
(``invalid_auth``, ``channel_not_found``, ``not_in_channel``...) are not retried.
"""

from __future__ import annotations

import re
import socket
import urllib.error
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from rearguard.notifications.channels.base import (
    Delivery,
    DeliveryError,
    Message,
    Receipt,
    SlackThread,
)
from rearguard.notifications.channels.slack_limits import cut
from rearguard.notifications.routing import NEW_CHANNEL_PREFIX

METADATA_EVENT_TYPE = "rearguard_notification"
# Slack's error codes that a later retry can fix; every other error code is permanent.
TRANSIENT_ERRORS = frozenset(
    {
        "ratelimited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "team_added_to_org",
    }
)
# Errors saying the server cannot search messages: a message in doubt is then sent again.
_NO_LOOKUP = frozenset({"unknown_method", "method_not_supported_for_channel_type", "not_allowed"})
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{6,}$")
_NOT_FOUND_STATUS = 404


def _header(headers: Any, name: str) -> str | None:
    for key, value in dict(headers or {}).items():
        if key.lower() == name.lower():
            return value[0] if isinstance(value, list) else str(value)
    return None


def _classify(exc: Exception, *, sent: bool) -> DeliveryError:
    """Turn a slack_sdk or network error into a DeliveryError that says what to do next."""
    if isinstance(exc, SlackApiError):
        status = exc.response.status_code
        data = exc.response.data if isinstance(exc.response.data, dict) else {}
        error = str(data.get("error") or f"HTTP {status}")
        if status == 429 or error == "ratelimited":
            raw = _header(exc.response.headers, "Retry-After")
            retry_after = float(raw) if raw and raw.replace(".", "", 1).isdigit() else 1.0
            return DeliveryError(
                f"slack: ratelimited (retry after {retry_after:g} s)", retry_after=retry_after
            )
        if status >= 500:
            return DeliveryError(f"slack: {error}", in_doubt=sent)
        if error in TRANSIENT_ERRORS:
            return DeliveryError(f"slack: {error}")
        return DeliveryError(f"slack: {error}", permanent=True)
    if isinstance(exc, TimeoutError | socket.timeout):
        return DeliveryError("slack: timed out waiting for the answer", in_doubt=sent)
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        refused = isinstance(reason, ConnectionRefusedError | socket.gaierror)
        return DeliveryError(f"slack: cannot connect: {reason}", in_doubt=sent and not refused)
    return DeliveryError(f"slack: {type(exc).__name__}: {exc}", in_doubt=sent)


class SlackChannel:
    """Posts to Slack through ``slack_sdk.WebClient``.

    Args:
        token: the bot token (from the environment or a Prefect Secret block).
        base_url: the Web API base URL (Slack's, a gateway's, or a test server's).
        timeout_s: seconds to wait for each API call.
        channel_prefix: the name prefix of dedicated incident channels.
    """

    name = "slack"

    def __init__(
        self,
        *,
        token: str,
        base_url: str = "https://slack.com/api/",
        timeout_s: float = 10.0,
        channel_prefix: str = "inc-",
    ) -> None:
        # No retry handlers: a silent retry after a dropped connection could post twice; the
        # dispatcher retries, after checking whether the first attempt arrived.
        self.client = WebClient(
            token=token,
            base_url=base_url if base_url.endswith("/") else base_url + "/",
            timeout=max(1, round(timeout_s)),
            retry_handlers=[],
        )
        self.channel_prefix = channel_prefix
        self._channel_ids: dict[str, str] = {}

    # -- sending ----------------------------------------------------------------------------

    def send(self, message: Message, delivery: Delivery) -> Receipt:
        """Post the message: into the incident's thread if it has one, else start it."""
        thread = delivery.thread
        created: dict[str, Any] = {}
        if thread is None and delivery.destination.startswith(NEW_CHANNEL_PREFIX):
            thread, created = self._open_incident_channel(delivery)
        channel = thread.channel_id if thread else delivery.destination
        arguments: dict[str, Any] = {
            "channel": channel,
            # The fallback text is mrkdwn too (push notifications, screen readers): escaped
            # like the blocks, so a summary's <!channel> or <http://x|disguised> stays text.
            "text": message.slack_text,
            "blocks": message.blocks or None,
            "unfurl_links": False,
            "unfurl_media": False,
            "metadata": {
                "event_type": METADATA_EVENT_TYPE,
                "event_payload": {
                    "rearguard_id": delivery.idempotency_key,
                    "incident_id": delivery.incident_id or 0,
                    "event": delivery.event,
                },
            },
            "client_msg_id": delivery.idempotency_key,
        }
        if thread is not None and thread.thread_ts:
            arguments["thread_ts"] = thread.thread_ts
        try:
            response = self.client.chat_postMessage(**arguments)
        except (SlackClientError, OSError, ValueError) as exc:
            raise _classify(exc, sent=True) from exc
        channel_id = str(response.get("channel") or channel)
        ts = str(response.get("ts"))
        details = {"channel": channel_id, "ts": ts, **created}
        if thread is None:
            # The first message of the incident here: it starts the thread.
            return Receipt(details, thread=SlackThread(channel_id, ts))
        details["thread_ts"] = thread.thread_ts
        return Receipt(details, thread=thread if created else None)

    def _open_incident_channel(self, delivery: Delivery) -> tuple[SlackThread, dict[str, Any]]:
        name = delivery.destination.removeprefix(NEW_CHANNEL_PREFIX)
        try:
            response = self.client.conversations_create(name=name)
            channel_id = str(response["channel"]["id"])
        except SlackApiError as exc:
            if exc.response.data.get("error") != "name_taken":
                raise _classify(exc, sent=False) from exc
            found = self._resolve(name)
            if found is None:
                raise DeliveryError(f"slack: channel {name} exists but is not visible") from exc
            channel_id = found
        except (SlackClientError, OSError, ValueError) as exc:
            raise _classify(exc, sent=False) from exc
        created: dict[str, Any] = {"created_channel": name}
        users = [m.removeprefix("slack:") for m in delivery.mentions if m.startswith("slack:")]
        if users:
            try:
                self.client.conversations_invite(channel=channel_id, users=",".join(users))
                created["invited"] = users
            except SlackApiError as exc:
                # Someone not invitable must not stop the incident's messages.
                created["invite_error"] = str(exc.response.data.get("error"))
            except (SlackClientError, OSError, ValueError) as exc:
                created["invite_error"] = cut(str(exc), 200)
        return SlackThread(channel_id, None), created

    # -- finding a message in doubt -------------------------------------------------------------

    def find_sent(self, delivery: Delivery) -> Receipt | None:
        """Look for a message carrying this row's key in the thread or the channel's history."""
        thread = delivery.thread
        try:
            channel_id = thread.channel_id if thread else self._resolve(delivery.destination)
            if channel_id is None:
                return None
            oldest = f"{delivery.created_at.timestamp() - 60:.6f}"
            if thread is not None and thread.thread_ts:
                response = self.client.conversations_replies(
                    channel=channel_id,
                    ts=thread.thread_ts,
                    oldest=oldest,
                    include_all_metadata=True,
                    limit=1000,
                )
            else:
                response = self.client.conversations_history(
                    channel=channel_id, oldest=oldest, include_all_metadata=True, limit=1000
                )
        except SlackApiError as exc:
            data = exc.response.data if isinstance(exc.response.data, dict) else {}
            error = _classify(exc, sent=False)
            if (
                exc.response.status_code == _NOT_FOUND_STATUS
                or data.get("error") in _NO_LOOKUP
                or error.permanent
            ):
                # This server (or this token: no history scope) cannot search. The message is
                # sent again, with the same client_msg_id for Slack itself to drop a duplicate.
                return None
            raise error from exc
        except (SlackClientError, OSError, ValueError) as exc:
            raise _classify(exc, sent=False) from exc
        for item in response.get("messages") or []:
            payload = (item.get("metadata") or {}).get("event_payload") or {}
            if delivery.idempotency_key in (payload.get("rearguard_id"), item.get("client_msg_id")):
                ts = str(item.get("ts"))
                details = {"channel": channel_id, "ts": ts, "found_after_doubt": True}
                if thread is not None and thread.thread_ts:
                    return Receipt({**details, "thread_ts": thread.thread_ts})
                return Receipt(details, thread=thread or SlackThread(channel_id, ts))
        return None

    def _resolve(self, name: str) -> str | None:
        """A channel's id from its name (``#incidents`` or ``incidents``); ids pass through."""
        bare = name.removeprefix(NEW_CHANNEL_PREFIX).lstrip("#")
        if _CHANNEL_ID.match(bare):
            return bare
        if bare in self._channel_ids:
            return self._channel_ids[bare]
        cursor: str | None = None
        while True:
            response = self.client.conversations_list(
                cursor=cursor,
                exclude_archived=True,
                limit=1000,
                types="public_channel,private_channel",
            )
            for channel in response.get("channels") or []:
                self._channel_ids[str(channel.get("name"))] = str(channel.get("id"))
            if bare in self._channel_ids:
                return self._channel_ids[bare]
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return None

    def update_message(
        self, *, channel_id: str, ts: str, text: str, blocks: list[dict[str, Any]]
    ) -> None:
        """Replace a posted message's text and blocks (``chat.update``).

        Raises:
            DeliveryError: Slack refused, or could not be reached.
        """
        try:
            self.client.chat_update(channel=channel_id, ts=ts, text=text, blocks=blocks)
        except (SlackClientError, OSError, ValueError) as exc:
            raise _classify(exc, sent=True) from exc

    def close(self) -> None:
        """Nothing pooled to release (the client opens a connection per call)."""
