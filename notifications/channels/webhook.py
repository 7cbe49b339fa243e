"""The generic webhook channel: a signed JSON POST.

Headers: ``X-Rearguard-Timestamp`` (Unix seconds), ``X-Rearguard-Signature``
(``sha256=`` + hex HMAC-SHA256 of ``<timestamp>.<body>`` under the shared secret),
``Idempotency-Key`` (the outbox row's key: the same on every attempt, so a receiver that
remembers keys drops a resend after a crash or a timeout) and ``X-Rearguard-Event``.
A 2xx is delivered; 408, 425, 429 and 5xx are retried (honouring ``Retry-After``); any other
4xx is permanent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from rearguard.notifications.channels.base import Delivery, DeliveryError, Message, Receipt

SIGNATURE_HEADER = "X-Rearguard-Signature"
TIMESTAMP_HEADER = "X-Rearguard-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
EVENT_HEADER = "X-Rearguard-Event"
_RETRYABLE_4XX = frozenset({408, 425, 429})


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value for a body sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str, *, timestamp: str, body: bytes, signature: str, tolerance_s: float = 300
) -> bool:
    """Check a webhook's signature and that its timestamp is recent (for receivers)."""
    try:
        age = abs(time.time() - float(timestamp))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


def retry_after(raw: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait: its delay in seconds, or the time until
    its HTTP date; None when absent or unreadable."""
    if not raw:
        return None
    raw = raw.strip()
    if raw.isdigit():
        return float(raw)
    try:
        moment = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


def webhook_body(message: Message, delivery: Delivery) -> dict[str, Any]:
    """The JSON document a webhook receives."""
    return {
        "id": delivery.idempotency_key,
        "event": delivery.event,
        "drill": message.drill,
        "title": message.title,
        "text": message.text,
        "incident": message.context.get("incident"),
        "production": message.context.get("production"),
    }


SHARED_CLIENT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=100)
"""Connection limits for an ``httpx.Client`` that several threads share.

httpcore 1.0.9's pool closes "surplus" idle connections once it holds more connections than
``max_keepalive_connections`` (20 by default), and a connection it has just handed to another
thread still counts as idle: that thread then writes to a closed socket, or to whatever socket
took its file descriptor (EBADF, or a read that times out). Keeping alive every connection the
pool may open avoids the race."""


class WebhookChannel:
    """POSTs signed JSON to one URL.

    Args:
        url: where to POST.
        secret: the shared HMAC secret.
        timeout_s: seconds to wait for the answer.
    """

    name = "webhook"

    def __init__(self, *, url: str, secret: str, timeout_s: float = 10.0) -> None:
        self.url = url
        self._secret = secret
        self.client = httpx.Client(
            timeout=timeout_s, follow_redirects=False, limits=SHARED_CLIENT_LIMITS
        )

    def send(self, message: Message, delivery: Delivery) -> Receipt:
        """POST the message."""
        body = json.dumps(webhook_body(message, delivery), separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
            IDEMPOTENCY_HEADER: delivery.idempotency_key,
            EVENT_HEADER: delivery.event,
        }
        try:
            response = self.client.post(self.url, content=body, headers=headers)
        except httpx.ConnectError as exc:
            raise DeliveryError(f"webhook: cannot connect: {exc}") from exc
        except httpx.HTTPError as exc:
            # The request may have arrived; the resend carries the same Idempotency-Key.
            raise DeliveryError(f"webhook: {type(exc).__name__}: {exc}", in_doubt=True) from exc
        status = response.status_code
        if 200 <= status < 300:
            return Receipt({"status": status})
        if status in _RETRYABLE_4XX or status >= 500:
            raise DeliveryError(
                f"webhook: HTTP {status}",
                retry_after=retry_after(response.headers.get("Retry-After")),
                in_doubt=status >= 500,
            )
        raise DeliveryError(f"webhook: HTTP {status}", permanent=True)

    def find_sent(self, delivery: Delivery) -> Receipt | None:
        """A webhook cannot be asked; the resend's Idempotency-Key lets the receiver drop it."""
        return None

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()
