"""Slack's Approve and Deny button callbacks, as plain Python that an HTTP route wraps.

Slack posts ``application/x-www-form-urlencoded`` with one field, ``payload`` (JSON), and
signs it: ``X-Slack-Signature`` is ``v0=`` + HMAC-SHA256 of ``v0:{timestamp}:{body}`` with the
app's signing secret, ``X-Slack-Request-Timestamp`` the Unix time it was sent. A callback is
accepted only with a valid signature, a timestamp within five minutes, and a signature not
seen before (kept in the ``seen_callback`` table, so a replay is refused across processes):
:func:`authenticate`, the check the slash command's requests pass too.
The Slack user is mapped to an approver name by ``[approvals.slack_users]`` and the decision
goes through :func:`rearguard.models.incidents.approvals.decide`, the service the CLI uses; the
waiting playbook reads it from the database.

Once a button has been answered, its message no longer offers the choice: the buttons are
replaced by a line saying how the request ended (approved or denied by whom, and when), with
``chat.update``, after the answer has gone back to Slack (Slack wants one within 3 seconds).
That also happens when the button pressed was stale: decided from the CLI, timed out or
escalated meanwhile.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from rearguard.models import bounded_json
from rearguard.models.config.settings import Settings
from rearguard.models.db.tables import ApprovalRequest, SeenCallback, table_of
from rearguard.models.errors import (
    ConfigurationError,
    ConflictError,
    NotEntitled,
    NotFoundError,
    UsageError,
)
from rearguard.models.incidents.approval_proofs import Proof
from rearguard.models.incidents.approvals import (
    APPROVED,
    DENIED,
    ESCALATED,
    PENDING,
    TIMED_OUT,
    decide,
)
from rearguard.models.runtime import Runtime, SecretBlockLoader
from rearguard.notifications.channels.base import DeliveryError
from rearguard.notifications.channels.slack_limits import mrkdwn_escape

logger = logging.getLogger(__name__)
MAX_AGE_S = 300
_SEEN = table_of(SeenCallback)
_ACTIONS = {"approve": True, "deny": False}
_BUTTONS_BLOCK = "rearguard_approval"
_ENDED = {
    APPROVED: ":white_check_mark: Approved by {by}",
    DENIED: ":no_entry: Denied by {by}",
    TIMED_OUT: ":hourglass: No decision in time",
    ESCALATED: ":arrow_up: Escalated: a new request went to more approvers",
}


@dataclass(frozen=True)
class ButtonPress:
    """What a button callback says: who pressed which button on which message."""

    user: str
    callback_id: str
    approve: bool
    channel_id: str | None = None
    message_ts: str | None = None
    blocks: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class EndedMessage:
    """A posted approval message whose buttons are to give way to how its request ended."""

    channel_id: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]


@dataclass(frozen=True)
class SlackAnswer:
    """The answer to a callback: HTTP status, one line for the person who pressed the button,
    and the message to update once the answer has gone (None: leave it as it is)."""

    status: int
    message: str
    ended: EndedMessage | None = None


class CallbackRejected(Exception):
    """A request from Slack that is not answered: the HTTP status and one line saying why."""

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


def authenticate(
    *, runtime: Runtime, headers: Mapping[str, str], body: bytes, now: float | None = None
) -> None:
    """Accept a request only if Slack signed it, lately, and it was not seen before.

    The one check of everything Slack sends rearguard: button callbacks and slash commands.

    Args:
        runtime: the process runtime (the signing secret, and the database of seen requests).
        headers: the HTTP request headers (any case).
        body: the raw request body, exactly as received (the signature covers it).
        now: the current Unix time (tests pass their own).

    Raises:
        CallbackRejected: 503 no signing secret is configured; 401 unsigned, badly signed, or
            older than five minutes; 409 replayed.
    """
    secret = runtime.settings.slack.signing_secret
    if secret is None or not secret.get_secret_value():
        raise CallbackRejected(
            503, "Slack requests are not configured (REARGUARD_SLACK_SIGNING_SECRET)"
        )
    signature = verify(
        secret=secret.get_secret_value(),
        headers=headers,
        body=body,
        now=time.time() if now is None else now,
    )
    _remember(runtime, signature)


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


def _parse(body: bytes) -> ButtonPress:
    """The button press a callback body carries."""
    try:
        fields = parse_qs(body.decode("utf-8"), strict_parsing=True)
        payload: Any = bounded_json.loads(fields["payload"][0])
        user = payload["user"]["id"]
        (action,) = [a for a in payload["actions"] if a.get("action_id") in _ACTIONS]
        callback_id = action["value"]
    except (UnicodeDecodeError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise CallbackRejected(400, "not a Slack button callback") from None
    if payload.get("type") != "block_actions" or not isinstance(user, str):
        raise CallbackRejected(400, "not a Slack button callback")
    if not isinstance(callback_id, str):
        raise CallbackRejected(400, "not a Slack button callback")
    container = payload.get("container")
    message = payload.get("message")
    container = container if isinstance(container, dict) else {}
    message = message if isinstance(message, dict) else {}
    channel_id, ts = container.get("channel_id"), container.get("message_ts")
    blocks = message.get("blocks")
    usable: tuple[dict[str, Any], ...] = ()
    if isinstance(blocks, list) and all(isinstance(b, dict) for b in blocks):
        usable = tuple(blocks)
    return ButtonPress(
        user=user,
        callback_id=callback_id,
        approve=_ACTIONS[action["action_id"]],
        channel_id=channel_id if isinstance(channel_id, str) else None,
        message_ts=ts if isinstance(ts, str) else None,
        blocks=usable,
    )


def _ended_message(runtime: Runtime, press: ButtonPress) -> EndedMessage | None:
    """The pressed message with its buttons replaced by how its request ended; None when the
    request is still open or unknown, or the callback did not carry the message's buttons."""
    buttons = [b for b in press.blocks if b.get("block_id") == _BUTTONS_BLOCK]
    if not (press.channel_id and press.message_ts and buttons):
        return None
    with runtime.db.read_session() as session:
        statement = select(ApprovalRequest).where(ApprovalRequest.callback_id == press.callback_id)
        request = session.exec(statement).first()
    if request is None or request.status not in _ENDED:
        return None
    line = _ENDED[request.status].format(by=mrkdwn_escape(request.decided_by or "?"))
    if request.decided_at is not None:
        line += request.decided_at.astimezone(UTC).strftime(", %Y-%m-%d %H:%M UTC")
    ended = {"type": "context", "elements": [{"type": "mrkdwn", "text": line}]}
    blocks = [ended if b.get("block_id") == _BUTTONS_BLOCK else b for b in press.blocks]
    text = f"The {request.step} of incident {request.incident_id}: {line}"
    return EndedMessage(press.channel_id, press.message_ts, text, blocks)


def show_ended(
    *, settings: Settings, ended: EndedMessage, secret_blocks: SecretBlockLoader | None = None
) -> None:
    """Update the approval message in Slack; a failure is logged, never raised (the decision
    is recorded already, and the playbook's next messages say what it did). ``secret_blocks``
    reads the Slack token's Prefect Secret block, when one is named."""
    from rearguard.notifications.channels.slack import SlackChannel
    from rearguard.notifications.factory import build_channel

    try:
        channel = build_channel("slack", settings, secret_blocks=secret_blocks)
        if isinstance(channel, SlackChannel):
            channel.update_message(
                channel_id=ended.channel_id, ts=ended.ts, text=ended.text, blocks=ended.blocks
            )
    except (ConfigurationError, DeliveryError) as exc:
        logger.warning("the Slack approval message was not updated: %s", exc)


def handle_slack_interaction(
    *,
    runtime: Runtime,
    headers: Mapping[str, str],
    body: bytes,
    now: float | None = None,
) -> SlackAnswer:
    """Verify a Slack button callback and record the decision it carries.

    Args:
        runtime: the process runtime (settings and database).
        headers: the HTTP request headers (any case).
        body: the raw request body, exactly as received (the signature covers it).
        now: the current Unix time (tests pass their own).

    Returns:
        The HTTP status and one line for the person who pressed the button: 200 decided;
        400 malformed; 401 bad signature or stale; 403 not entitled (recorded); 404 no such
        request; 409 replayed, or decided already; 503 no signing secret configured. With a
        200, or a 409 for a request that has ended, the message to show as ended
        (:func:`show_ended`).
    """
    try:
        authenticate(runtime=runtime, headers=headers, body=body, now=now)
        press = _parse(body)
    except CallbackRejected as exc:
        return SlackAnswer(exc.status, exc.message)
    # An unmapped Slack user is named by id, so that the refusal is recorded against them.
    approver = runtime.settings.approvals.slack_users.get(press.user, f"slack:{press.user}")
    try:
        request = decide(
            db=runtime.db,
            approvals=runtime.settings.approvals,
            approver=approver,
            approve=press.approve,
            comment="via Slack",
            via="slack",
            # Slack's signature, checked above, proves who pressed the button.
            proof=Proof(slack=True),
            callback_id=press.callback_id,
        )
    except NotEntitled as exc:
        return SlackAnswer(403, exc.message)
    except NotFoundError as exc:
        return SlackAnswer(404, exc.message)
    except ConflictError as exc:
        return SlackAnswer(409, exc.message, _ended_message(runtime, press))
    except UsageError as exc:
        return SlackAnswer(400, exc.message)
    line = f"{request.step} of incident {request.incident_id} {request.status} by {approver}"
    if request.status == PENDING:
        line = (
            f"{approver}'s approval of the {request.step} of incident {request.incident_id} "
            f"is recorded; it needs {request.policy.get('approvers_required')} distinct approvers"
        )
    return SlackAnswer(200, line, _ended_message(runtime, press))
