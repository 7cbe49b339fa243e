"""Notification channels of the embedded default: the console and a JSON-lines file.

Slack, email and webhooks, routing and the durable outbox come with their own issue; these two
channels keep the same interface so the notify step does not change when they arrive.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol, TextIO


@dataclass(frozen=True)
class Notification:
    """One message about an incident."""

    incident_id: int
    event: str
    title: str
    body: str
    severity: str
    facts: dict[str, str | None] = field(default_factory=dict)


class Channel(Protocol):
    """Delivers notifications somewhere; returns a receipt for the timeline."""

    name: str

    def send(self, notification: Notification) -> str:
        """Deliver one notification and return a receipt."""
        ...


class ConsoleChannel:
    """Writes a notification as plain lines to a stream (standard error by default)."""

    name = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def send(self, notification: Notification) -> str:
        """Print the notification."""
        stream = self.stream or sys.stderr
        stream.write(f"[notify {notification.severity}] {notification.title}\n")
        if notification.body:
            stream.write(f"  {notification.body}\n")
        stream.flush()
        return "printed"


class FileChannel:
    """Appends each notification as one JSON line to a file."""

    name = "file"

    def __init__(self, path: Path) -> None:
        self.path = path

    def send(self, notification: Notification) -> str:
        """Append the notification and fsync the file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(asdict(notification), sort_keys=True) + "\n"
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        return f"appended to {self.path}"
