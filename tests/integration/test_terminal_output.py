"""What reaches a terminal or a log carries no control character from the input: a summary's
ESC sequences (clear the screen, retitle the window) are shown, not obeyed."""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from scenarios import build_scenario

from rearguard.models.audit.terminal import SafeConsole, SafeFormatter, printable
from rearguard.models.runtime import Runtime
from rearguard.notifications.channels.base import ConsoleChannel, Delivery, Message

pytestmark = pytest.mark.one_database

HOSTILE = "drift \x1b[2J\x1b[H\x1b]0;pwned\x07 \x9b31m red\rhidden \u202eevil\x00 end"
CONTROLS = ("\x1b", "\x07", "\x9b", "\r", "\u202e", "\x00")


def assert_inert(text: str) -> None:
    assert not [c for c in CONTROLS if c in text], repr(text)


def test_incident_show_prints_a_hostile_summary_without_its_escapes(
    cli: Any, runtime: Runtime, tmp_path: Path
) -> None:
    build_scenario(runtime, tmp_path, asset="model-a")
    summary = HOSTILE.replace("\x00", "")  # a NUL is refused at the door (exit 2)
    opened = cli(
        "incident",
        "open",
        "--type",
        "model_compromise",
        "--asset",
        "model-a",
        "--no-run",
        "--summary",
        summary,
    )
    assert opened.returncode == 0, opened.stderr
    shown = cli("incident", "show", "1")
    assert shown.returncode == 0, shown.stderr
    assert_inert(shown.stdout + shown.stderr)
    assert "drift" in shown.stdout and "end" in shown.stdout
    listed = cli("incident", "list")
    assert_inert(listed.stdout + listed.stderr)
    refused = cli("incident", "open", "--type", "model_compromise", "--asset", "m\x1b[2Jx")
    assert refused.returncode == 2
    assert_inert(refused.stdout + refused.stderr)


def test_every_printer_uses_the_one_function() -> None:
    stream = io.StringIO()
    console = SafeConsole(file=stream, highlight=False, soft_wrap=True, force_terminal=False)
    console.print(f"summary: {HOSTILE}")
    assert_inert(stream.getvalue())
    assert stream.getvalue().strip() == f"summary: {printable(HOSTILE)}"

    record = logging.LogRecord("rearguard.x", logging.WARNING, __file__, 1, "%s", (HOSTILE,), None)
    assert_inert(SafeFormatter().format(record))

    printed = io.StringIO()
    message = Message(
        title=f"opened: {HOSTILE}", text="", slack_text="", body=f"line one\n{HOSTILE}\n"
    )
    delivery = Delivery(1, "key", 1, "opened", "console", datetime.now(UTC))
    ConsoleChannel(printed).send(message, delivery)
    assert_inert(printed.getvalue())
    assert printed.getvalue().count("\n") == 3  # the title and two body lines, no more
