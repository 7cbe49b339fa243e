"""Slack's Approve and Deny button callbacks, as plain Python that an HTTP route wraps.

Slack posts ``application/x-www-form-urlencoded`` with one field, ``payload`` (JSON), and
signs it: ``X-Slack-Signature`` is ``v0=`` + HMAC-SHA256 of ``v0:{timestamp}:{body}`` with the
app's signing secret, ``X-Slack-Request-Timestamp`` the Unix time it was sent. A callback is
accepted only with a valid signature, a timestamp within five minutes, and a signature not
seen before (kept in the ``seen_callback`` table, so a replay is refused across processes).
The Slack user is mapped to an approver name by ``[approvals.slack_users]`` and the decision
goes through :func:`rearguard.models.approvals.decide`, the service the CLI uses; the waiting
playbook reads it from the database.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError

from rearguard.models.approvals import decide
from rearguard.models.errors import ConflictError, NotEntitled, NotFoundError, UsageError
from rearguard.models.runtime import Runtime
from rearguard.models.tables import SeenCallback

MAX_AGE_S = 300
_SEEN = SeenCallback.__table__  # type: ignore[attr-defined]
_ACTIONS = {"approve": True, "deny": False}


class CallbackRejected(Exception):
    """A callback that is not answered: the HTTP status and one line saying why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _header(headers: Mapping[str, str], name: str) -> str:
    wanted = name.lower()
    return next((str(v) for k, v in headers.items() if k.lower() == wanted), "")


def sign(*, secret: str, timestamp: str, body: bytes) -> str:
    """Slack's v0 signature of a request body."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def verify(*, secret: str, headers: Mapping[str, str], body: bytes, now: float) -> str:
    """Check a callback's signature and age.

    Returns:
        The signature, which identifies the callback (for replay detection).

    Raises:
        CallbackRejected: 401 when unsigned, badly signed, or older than five minutes.
    """
    timestamp = _header(headers, "X-Slack-Request-Timestamp")
    signature = _header(headers, "X-Slack-Signature")
    if not timestamp or not signature:
        raise CallbackRejected(401, "missing Slack signature headers")
    try:
        sent = int(timestamp)
    except ValueError:
        raise CallbackRejected(401, "invalid Slack request timestamp") from None
    if abs(now - sent) > MAX_AGE_S:
        raise CallbackRejected(401, "stale Slack request (more than 5 minutes old)")
    if not hmac.compare_digest(sign(secret=secret, timestamp=timestamp, body=body), signature):
        raise CallbackRejected(401, "invalid Slack signature")
    return signature


def _remember(runtime: Runtime, signature: str) -> None:
    """Record a signature as seen; forget those too old to pass :func:`verify` anyway."""
    now = datetime.now(UTC)
    try:
        with runtime.db.transaction() as connection:
            cutoff = now - timedelta(seconds=2 * MAX_AGE_S)
            connection.execute(delete(_SEEN).where(_SEEN.c.received_at < cutoff))
            connection.execute(insert(_SEEN).values(signature=signature, received_at=now))
    except IntegrityError:
        raise CallbackRejected(409, "replayed Slack request") from None


def _parse(body: bytes) -> tuple[str, str, bool]:
    """The Slack user id, the request's callback id and approve (True) or deny (False)."""
    try:
        fields = parse_qs(body.decode("utf-8"), strict_parsing=True)
        payload: Any = json.loads(fields["payload"][0])
        user = payload["user"]["id"]
        (action,) = [a for a in payload["actions"] if a.get("action_id") in _ACTIONS]
        callback_id = action["value"]
    except (UnicodeDecodeError, ValueError, KeyError, IndexError, TypeError):
        raise CallbackRejected(400, "not a Slack button callback") from None
    if payload.get("type") != "block_actions" or not isinstance(user, str):
        raise CallbackRejected(400, "not a Slack button callback")
    if not isinstance(callback_id, str):
        raise CallbackRejected(400, "not a Slack button callback")
    return user, callback_id, _ACTIONS[action["action_id"]]


def handle_slack_interaction(
    *,
    runtime: Runtime,
    headers: Mapping[str, str],
    body: bytes,
    now: float | None = None,
) -> tuple[int, str]:
    """Verify a Slack button callback and record the decision it carries.

    Args:
        runtime: the process runtime (settings and database).
        headers: the HTTP request headers (any case).
        body: the raw request body, exactly as received (the signature covers it).
        now: the current Unix time (tests pass their own).

    Returns:
        The HTTP status and one line for the person who pressed the button: 200 decided;
        400 malformed; 401 bad signature or stale; 403 not entitled (recorded); 404 no such
        request; 409 replayed, or decided already; 503 no signing secret configured.
    """
    secret = runtime.settings.slack.signing_secret
    if secret is None or not secret.get_secret_value():
        return 503, "Slack callbacks are not configured (REARGUARD_SLACK_SIGNING_SECRET)"
    try:
        signature = verify(
            secret=secret.get_secret_value(),
            headers=headers,
            body=body,
            now=time.time() if now is None else now,
        )
        user, callback_id, approve = _parse(body)
        _remember(runtime, signature)
    except CallbackRejected as exc:
        return exc.status, exc.message
    # An unmapped Slack user is named by id, so that the refusal is recorded against them.
    approver = runtime.settings.approvals.slack_users.get(user, f"slack:{user}")
    try:
        request = decide(
            db=runtime.db,
            approver=approver,
            approve=approve,
            comment="via Slack",
            via="slack",
            callback_id=callback_id,
        )
    except NotEntitled as exc:
        return 403, exc.message
    except NotFoundError as exc:
        return 404, exc.message
    except ConflictError as exc:
        return 409, exc.message
    except UsageError as exc:
        return 400, exc.message
    return 200, f"{request.step} of incident {request.incident_id} {request.status} by {approver}"
