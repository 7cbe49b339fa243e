"""What every ``/v1/`` request passes before a route sees it: the bearer token and its scope
(``read`` for GET, ``write`` for the rest), the body size limit and the optional HMAC signature
over a timestamp and the body (the signing of rearguard's own webhooks); and the counts of
accepted and refused requests, 5xx included.

Slack's interactivity callbacks and slash commands are the exceptions to the token and the
HMAC signature: Slack can send neither, and signs the request its own way, which their routes
verify. So is the CLI's hand-off (:data:`rearguard.flows.intake.handoff.HANDOFF_PATH`), whose
route checks serve's own hand-off token. They still get the body limit and are counted.
``GET /metrics`` is guarded like a ``/v1/`` GET (a ``read`` token) unless ``[intake]
metrics_public`` is set.

A plain ASGI middleware, so the token is checked before the body is read and the size limit
holds while the body streams in (a client may lie in ``Content-Length``, or send none).
"""

from __future__ import annotations

import hmac
import json
import threading
from collections import Counter
from typing import Any

from rearguard.flows.asgi_replay import replay, request_message
from rearguard.flows.intake.handoff import HANDOFF_PATH
from rearguard.models.config.intake import READ, WRITE, IntakeSettings
from rearguard.notifications.channels.webhook import TIMESTAMP_HEADER, verify_signature

Scope = dict[str, Any]
_PROTECTED = "/v1/"
SIGNATURE_HEADER = "x-rearguard-signature"
MAX_SIGNATURE_AGE_S = 300
SLACK_INTERACTIONS_PATH = "/v1/slack/interactions"
METRICS_PATH = "/metrics"
SLACK_COMMANDS_PATH = "/v1/slack/commands"
_SLACK_SIGNED = frozenset({SLACK_INTERACTIONS_PATH, SLACK_COMMANDS_PATH})
_OWN_AUTH = _SLACK_SIGNED | {HANDOFF_PATH}
"""The ``/v1/`` routes that check who calls themselves (not with the intake's tokens)."""


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
        self.metrics_guarded = not settings.metrics_public
        self.auth = settings.auth == "required"
        self.tokens = settings.scoped_tokens()
        secret = settings.hmac_secret
        self.hmac_secret = secret.get_secret_value() if secret else None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = False

        async def tracked_send(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        async def counted_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.stats.request(int(message["status"]))
            await tracked_send(message)

        try:
            path = scope["path"]
            if path.startswith(_PROTECTED) or (path == METRICS_PATH and self.metrics_guarded):
                await self._guard(scope, receive, counted_send)
            else:  # /healthz and /docs are not counted, unless they fail
                await self.app(scope, receive, tracked_send)
        except Exception:
            # Starlette's outermost middleware answers 500 for an unhandled error, past this
            # one: count it here, or /healthz would never show a 5xx.
            if not started:
                self.stats.request(500)
            raise

    async def _guard(self, scope: Scope, receive: Any, counted_send: Any) -> None:
        headers = dict(scope["headers"])
        own_auth = scope["path"] in _OWN_AUTH
        needed = READ if scope["method"] in ("GET", "HEAD") else WRITE
        refusal = None if own_auth else self._check_token(headers.get(b"authorization"), needed)
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
        if self.hmac_secret is not None and scope["method"] == "POST" and not own_auth:
            signature = headers.get(SIGNATURE_HEADER.encode())
            timestamp = headers.get(TIMESTAMP_HEADER.lower().encode())
            if signature is None or timestamp is None:
                await _refuse(counted_send, 401, "missing signature or timestamp")
                return
            # The timestamp is signed with the body, and an old one refused: a captured
            # request cannot be replayed after MAX_SIGNATURE_AGE_S.
            if not verify_signature(
                self.hmac_secret,
                timestamp=timestamp.decode("latin-1").strip(),
                body=bytes(body),
                signature=signature.decode("latin-1").strip(),
                tolerance_s=MAX_SIGNATURE_AGE_S,
            ):
                await _refuse(counted_send, 403, "forbidden: bad signature or stale timestamp")
                return
        await self.app(scope, replay([request_message(bytes(body))], receive), counted_send)

    def _check_token(self, header: bytes | None, needed: str) -> tuple[int, str] | None:
        if not self.auth:
            return None
        scheme, _, token = (header or b"").partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            return 401, "unauthorized"
        token = token.strip()
        # Compare with every token, so the time taken does not say which one nearly matched.
        matches = [known for known in self.tokens if hmac.compare_digest(token, known.token)]
        if not matches:
            return 403, "forbidden"
        if not any(needed in known.scopes for known in matches):
            return 403, f"forbidden: this token has no {needed} scope"
        return None


async def _refuse(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
