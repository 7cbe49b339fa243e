"""Running an outside command: argv without a shell, a timeout that kills its process group."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

TAIL_CHARS = 2000
# Passed through so that a command finds its interpreter and locale, nothing else by default.
BASE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH")


@dataclass(frozen=True)
class CommandRun:
    """How one run of a command ended."""

    ok: bool
    exit_code: int | None
    duration_s: float
    output_tail: str
    reason: str
    started: bool = True


def base_env(allowed: Sequence[str] = ()) -> dict[str, str]:
    """The environment a command inherits: :data:`BASE_ENV` and the ``allowed`` names set."""
    return {name: os.environ[name] for name in (*BASE_ENV, *allowed) if name in os.environ}


def run_argv(argv: Sequence[str], *, env: Mapping[str, str], timeout_s: float) -> CommandRun:
    """Run ``argv`` (never through a shell), stdout and stderr together, for at most ``timeout_s``.

    The command runs in a new session; at the timeout its whole process group is killed, so a
    child it started cannot keep running (or keep the output pipe open).

    Args:
        argv: the program and its arguments.
        env: its whole environment.
        timeout_s: seconds before it is killed.

    Returns:
        The outcome; ``ok`` only when it exited 0 in time. ``output_tail`` is the last
        :data:`TAIL_CHARS` bytes of its output, as text.
    """
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env),
            start_new_session=True,
        )
    except OSError as exc:
        why = exc.strerror or str(exc)
        return CommandRun(False, None, 0.0, "", f"cannot start {argv[0]!r}: {why}", started=False)
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return CommandRun(
            False,
            None,
            time.monotonic() - started,
            _tail(output),
            f"timed out after {timeout_s:g}s",
        )
    duration = time.monotonic() - started
    if process.returncode == 0:
        return CommandRun(True, 0, duration, _tail(output), "passed")
    return CommandRun(
        False, process.returncode, duration, _tail(output), f"exited {process.returncode}"
    )


def _tail(output: bytes | None) -> str:
    return (output or b"")[-TAIL_CHARS:].decode("utf-8", errors="replace")
