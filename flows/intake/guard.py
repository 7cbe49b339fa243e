"""What every ``/v1/`` request passes before a route sees it: the bearer token, the body size
limit and the optional HMAC signature; and the counts of accepted and refused requests.

Slack's interactivity callback is the one exception to the token and the HMAC signature:
Slack can send neither, and signs the request its own way, which its route verifies. It still
gets the body limit and is counted.

A plain ASGI middleware, so the token is checked before the body is read and the size limit
holds while the body streams in (a client may lie in ``Content-Length``, or send none).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections import Counter
from typing import Any

from rearguard.flows.asgi_replay import replay, request_message
from rearguard.models.config.intake import IntakeSettings

Scope = dict[str, Any]
_PROTECTED = "/v1/"
SIGNATURE_HEADER = "x-rearguard-signature"
SLACK_INTERACTIONS_PATH = "/v1/slack/interactions"


class IntakeStats:
    """Counts of requests by outcome and of alerts by what became of them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.alerts: Counter[str] = Counter()

    def request(self, status: int) -> None:
        """Count one answered request."""
        with self._lock:
            self.requests["accepted" if status < 400 else f"refused_{status}"] += 1

    def alert(self, action: str, count: int = 1) -> None:
        """Count alerts by outcome (opened, attached, resolved, unmatched, rejected)."""
        with self._lock:
            self.alerts[action] += count

    def snapshot(self) -> dict[str, Any]:
        """A JSON-friendly copy."""
        with self._lock:
            refused = sum(v for k, v in self.requests.items() if k != "accepted")
            return {
                "requests": {"accepted": self.requests["accepted"], "refused": refused},
                "refused_by_status": {
                    k.removeprefix("refused_"): v
                    for k, v in self.requests.items()
                    if k != "accepted"
                },
                "alerts": dict(self.alerts),
            }


def body_signature(secret: bytes, body: bytes) -> str:
    """The ``X-Rearguard-Signature`` value of a body: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class IntakeGuard:
    """ASGI middleware enforcing auth, the body limit and the signature on ``/v1/`` routes.

    Args:
        app: the ASGI app it guards.
        settings: the intake settings (tokens, auth mode, HMAC secret, body limit).
        stats: where answered requests are counted.
    """

    def __init__(self, app: Any, *, settings: IntakeSettings, stats: IntakeStats) -> None:
        self.app = app
        self.stats = stats
        self.limit = settings.max_body_bytes
        self.auth = settings.auth == "required"
        self.tokens = [t.get_secret_value().encode() for t in settings.tokens]
        secret = settings.hmac_secret
        self.hmac_secret = secret.get_secret_value().encode() if secret else None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counted_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.stats.request(int(message["status"]))
            await send(message)

        if not scope["path"].startswith(_PROTECTED):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        slack = scope["path"] == SLACK_INTERACTIONS_PATH
        refusal = None if slack else self._check_token(headers.get(b"authorization"))
        if refusal:
            await _refuse(counted_send, *refusal)
            return
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _refuse(counted_send, 400, "invalid Content-Length")
                return
            if int(declared) > self.limit:
                await _refuse(counted_send, 413, f"the body is over {self.limit} bytes")
                return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                await _refuse(counted_send, 413, f"the body is over {self.limit} bytes")
                return
        if self.hmac_secret is not None and scope["method"] == "POST" and not slack:
            signature = headers.get(SIGNATURE_HEADER.encode())
            if signature is None:
                await _refuse(counted_send, 401, "missing signature")
                return
            expected = body_signature(self.hmac_secret, bytes(body)).encode()
            if not hmac.compare_digest(signature.strip(), expected):
                await _refuse(counted_send, 403, "forbidden")
                return
        await self.app(scope, replay([request_message(bytes(body))], receive), counted_send)

    def _check_token(self, header: bytes | None) -> tuple[int, str] | None:
        if not self.auth:
            return None
        scheme, _, token = (header or b"").partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            return 401, "unauthorized"
        token = token.strip()
        # Compare with every token, so the time taken does not say which one nearly matched.
        matches = [hmac.compare_digest(token, known) for known in self.tokens]
        return None if any(matches) else (403, "forbidden")


async def _refuse(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
