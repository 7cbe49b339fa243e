"""The hand-off: a CLI command run by this home's ``rearguard serve`` for the ``rearguard``
command that asked, its output streamed back; what both sides agree on.

``rearguard incident open``, ``playbook run``, ``drills run`` and ``approve`` first look for a
serve of their home (``serve.json``, see :mod:`rearguard.flows.intake.published`). When one
answers, the command line goes to ``POST`` :data:`HANDOFF_PATH` with serve's hand-off token, as
:func:`request_body` writes it (serve reads it as
:class:`rearguard.flows.intake.schemas.HandOffRequest`). serve's playbook process, where
Prefect is warm, runs it as the CLI would, printing for the client's terminal, and streams what
it prints: one JSON object per line, ``{"out": text}`` or ``{"err": text}`` as it is printed,
then ``{"exit": code}``. The client writes each text on its own standard output or error and
exits with the code: the same lines and exit status, without its own Prefect start.

Imported by the client before anything else: the standard library only, and no more of it
than it needs (no dataclasses: ``inspect`` alone takes milliseconds).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Literal

HANDOFF_PATH = "/v1/cli"
"""Where serve takes a command line (loopback clients with the hand-off token only)."""

Stream = Literal["out", "err"]

TERMINAL_VARIABLES = (
    "TERM",
    "COLORTERM",
    "NO_COLOR",
    "FORCE_COLOR",
    "TTY_COMPATIBLE",
    "TTY_INTERACTIVE",
    "COLUMNS",
    "LINES",
)
"""The client's environment variables that decide how output looks (rich reads them): serve
prints with the client's, not its own."""


def request_body(
    *,
    argv: Sequence[str],
    fingerprint: str,
    cwd: str,
    prog: str,
    people: Mapping[str, str],
    outputs: Mapping[Stream, tuple[bool, str]],
    size: tuple[int, int] | None,
    terminal_environ: Mapping[str, str],
) -> bytes:
    """The JSON body of a hand-off request.

    Args:
        argv: the command line after the program's name.
        fingerprint: the client's settings fingerprint (serve runs only commands whose
            settings are its own).
        cwd: the client's working directory (relative paths on the command line are relative
            to it).
        prog: the program's name, as usage messages show it.
        people: the client's login user variables (``USER``...), for the name a decision
            records when neither ``--by`` nor the settings give one.
        outputs: for standard output and error, whether it is a terminal, and its encoding.
        size: the columns and lines of the client's terminal, if it has one.
        terminal_environ: the client's :data:`TERMINAL_VARIABLES`.
    """
    return json.dumps(
        {
            "argv": list(argv),
            "fingerprint": fingerprint,
            "cwd": cwd,
            "prog": prog,
            "people": dict(people),
            "terminal": {
                "outputs": {
                    name: {"tty": tty, "encoding": encoding}
                    for name, (tty, encoding) in outputs.items()
                },
                "size": list(size) if size else None,
                "environ": dict(terminal_environ),
            },
        }
    ).encode()


def output_line(stream: Stream, text: str) -> bytes:
    """One line of the stream: ``text`` printed on the client's ``stream``."""
    return json.dumps({stream: text}).encode() + b"\n"


def exit_line(code: int) -> bytes:
    """The stream's last line: the command's exit status."""
    return json.dumps({"exit": code}).encode() + b"\n"


def parse_line(line: bytes) -> tuple[Stream, str] | int:
    """What a line of the stream says: a text for a stream, or (the last line) the exit status.

    Raises:
        ValueError: not a line of the stream.
    """
    found = json.loads(line)
    if isinstance(found, dict) and len(found) == 1:
        ((key, value),) = found.items()
        if key == "exit" and isinstance(value, int):
            return value
        if key in ("out", "err") and isinstance(value, str):
            return ("out" if key == "out" else "err"), value
    raise ValueError(f"not a line of the hand-off stream: {line[:80]!r}")
