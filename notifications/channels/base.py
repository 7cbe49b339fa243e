"""The channel interface, and the two channels of the embedded default: console and file.

A channel delivers one rendered :class:`Message` for one outbox row (:class:`Delivery`) and
returns a :class:`Receipt`, or raises :class:`DeliveryError` saying whether a retry can help
(``permanent``), when it may happen (``retry_after``) and whether the message may have reached
the destination anyway (``in_doubt``). A channel that can tell whether a message was already
delivered implements ``find_sent``: the dispatcher asks it before resending a message that is
in doubt, so a crash between sending and recording never delivers a message twice.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Protocol

from rearguard.models.audit.terminal import printable
from rearguard.models.config.home import PRIVATE_FILE_MODE


@dataclass(frozen=True)
class Message:
    """One rendered notification: a title and bodies for each kind of channel.

    ``text`` is the title and body as one plain text (an email's); ``slack_text`` the same,
    mrkdwn-escaped, as Slack's fallback text; ``body`` is the body alone.
    """

    title: str
    text: str
    slack_text: str
    body: str = ""
    html: str = ""
    blocks: list[dict[str, Any]] = field(default_factory=list)
    drill: bool = False
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SlackThread:
    """Where an incident's messages to one Slack destination go."""

    channel_id: str
    thread_ts: str | None


@dataclass(frozen=True)
class Delivery:
    """What a channel needs to know about the outbox row it delivers."""

    outbox_id: int
    idempotency_key: str
    incident_id: int | None
    event: str
    destination: str
    created_at: datetime
    thread: SlackThread | None = None
    mentions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Receipt:
    """Proof of delivery, recorded on the timeline (never holds a secret)."""

    details: dict[str, Any]
    thread: SlackThread | None = None


class DeliveryError(Exception):
    """A delivery that did not happen (or may not have).

    Args:
        message: what went wrong, for the timeline and ``notifications list``.
        permanent: retrying cannot help (bad credentials, unknown channel, a 4xx response).
        retry_after: the earliest retry the destination asked for, in seconds.
        in_doubt: the destination may have received the message (a timeout after sending).
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        retry_after: float | None = None,
        in_doubt: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.retry_after = retry_after
        self.in_doubt = in_doubt


class Channel(Protocol):
    """Delivers notifications somewhere."""

    name: str

    def send(self, message: Message, delivery: Delivery) -> Receipt:
        """Deliver one message.

        Raises:
            DeliveryError: not delivered (or not known to be).
        """
        ...

    def find_sent(self, delivery: Delivery) -> Receipt | None:
        """Return the receipt of an earlier delivery of this row, or None if there was none.

        Raises:
            DeliveryError: the channel cannot tell now; ``permanent`` when it never can.
        """
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class ConsoleChannel:
    """Writes a notification as plain lines to a stream (standard error by default)."""

    name = "console"

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream

    def send(self, message: Message, delivery: Delivery) -> Receipt:
        """Print the notification."""
        stream = self.stream or sys.stderr
        severity = (message.context.get("incident") or {}).get("severity") or "-"
        stream.write(printable(f"[notify {severity}] {message.title}", newlines=False) + "\n")
        body = printable(message.body.strip())
        if body:
            stream.write("".join(f"  {line}\n" for line in body.splitlines()))
        stream.flush()
        return Receipt({"printed": True})

    def find_sent(self, delivery: Delivery) -> Receipt | None:
        """A console cannot be searched: a message in doubt is not printed again."""
        raise DeliveryError("a console message in doubt is not repeated", permanent=True)

    def close(self) -> None:
        """Nothing to release."""


_FILE_LOCK = threading.Lock()


class FileChannel:
    """Appends each notification as one JSON line to a file, and can find it there again."""

    name = "file"

    def __init__(self, path: Path) -> None:
        self.path = path

    def send(self, message: Message, delivery: Delivery) -> Receipt:
        """Append the notification and fsync the file."""
        incident = message.context.get("incident", {})
        record = {
            "id": delivery.idempotency_key,
            "incident_id": delivery.incident_id,
            "event": delivery.event,
            "title": message.title,
            "body": message.body,
            "severity": incident.get("severity"),
            "drill": message.drill,
            "facts": {
                "asset": incident.get("asset"),
                "status": incident.get("status"),
                "production": message.context.get("production"),
            },
        }
        line = json.dumps(record, sort_keys=True) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Owner-only when it is created: it holds every incident's notifications.
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
            descriptor = os.open(self.path, flags, PRIVATE_FILE_MODE)
            with _FILE_LOCK, open(descriptor, "a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise DeliveryError(f"cannot append to {self.path}: {exc.strerror or exc}") from exc
        return Receipt({"file": str(self.path)})

    def find_sent(self, delivery: Delivery) -> Receipt | None:
        """Look for the row's line in the file."""
        marker = f'"id": "{delivery.idempotency_key}"'
        try:
            with self.path.open(encoding="utf-8") as handle:
                if any(marker in line for line in handle):
                    return Receipt({"file": str(self.path), "found": True})
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DeliveryError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        return None

    def close(self) -> None:
        """Nothing to release."""
