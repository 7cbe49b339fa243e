"""Running an asset's validation command: argv without a shell, with a timeout."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from rearguard.models.errors import UsageError

_TAIL_CHARS = 2000
# Passed through so that a validation command finds its interpreter and locale, nothing else.
_PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH")


@dataclass(frozen=True)
class ValidationResult:
    """The outcome of one validation run."""

    ok: bool
    exit_code: int | None
    duration_s: float
    output_tail: str
    reason: str

    def as_dict(self) -> dict[str, object]:
        """A JSON-friendly form for the timeline."""
        return {
            "ok": self.ok,
            "exit_code": self.exit_code,
            "duration_s": round(self.duration_s, 3),
            "output_tail": self.output_tail,
            "reason": self.reason,
        }


def parse_command(command: str) -> list[str]:
    """Split a validation command into argv, refusing an empty or unparsable one.

    Raises:
        UsageError: the command is empty or has unbalanced quotes.
    """
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise UsageError(f"cannot parse validation command {command!r}: {exc}") from exc
    if not argv:
        raise UsageError("the validation command is empty")
    return argv


def run_validation(
    *,
    command: str,
    location: Path | str,
    asset: str,
    label: str,
    timeout_s: float,
    drill: bool = False,
) -> ValidationResult:
    """Run a validation command against one version's content.

    The command gets ``REARGUARD_ASSET``, ``REARGUARD_VERSION`` and ``REARGUARD_ASSET_PATH``
    in its environment (and ``REARGUARD_DRILL=1`` in a drill), and ``$NAME`` or ``${NAME}``
    of those three in its arguments is replaced by the value (no shell is involved, nothing
    else is expanded). A run over ``timeout_s`` is killed with its whole process group.

    Args:
        command: the command line, split with shell rules but never run by a shell.
        location: the directory holding the version's files.
        asset: asset name.
        label: version label.
        timeout_s: seconds before the command is killed.
        drill: the run is a drill's, against a sandbox.

    Returns:
        The result; ``ok`` only when the command exited 0 in time.
    """
    ours = {
        "REARGUARD_ASSET": asset,
        "REARGUARD_VERSION": label,
        "REARGUARD_ASSET_PATH": str(location),
    }
    # No shell runs the command, so expand our own variables in its arguments here; nothing
    # else is expanded, so an argument can never turn into a second command.
    argv = [_expand(arg, ours) for arg in parse_command(command)]
    env = {name: os.environ[name] for name in _PASSED_ENV if name in os.environ}
    env.update(ours)
    if drill:
        env["REARGUARD_DRILL"] = "1"
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        return ValidationResult(False, None, 0.0, "", f"cannot start {argv[0]!r}: {exc}")
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        duration = time.monotonic() - started
        tail = _tail(output)
        return ValidationResult(False, None, duration, tail, f"timed out after {timeout_s:g}s")
    duration = time.monotonic() - started
    tail = _tail(output)
    if process.returncode == 0:
        return ValidationResult(True, 0, duration, tail, "passed")
    return ValidationResult(
        False, process.returncode, duration, tail, f"exited {process.returncode}"
    )


def _expand(argument: str, variables: dict[str, str]) -> str:
    for name, value in variables.items():
        argument = argument.replace(f"${{{name}}}", value)
    # Longest names first, so $REARGUARD_ASSET does not eat $REARGUARD_ASSET_PATH.
    for name in sorted(variables, key=len, reverse=True):
        argument = argument.replace(f"${name}", variables[name])
    return argument


def _tail(output: bytes | None) -> str:
    return (output or b"")[-_TAIL_CHARS:].decode("utf-8", errors="replace")
