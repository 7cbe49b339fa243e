"""Running an asset's validation command: argv without a shell, with a timeout."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from rearguard.models.commands import base_env, run_argv
from rearguard.models.errors import UsageError


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
    env = base_env()
    env.update(ours)
    if drill:
        env["REARGUARD_DRILL"] = "1"
    run = run_argv(argv, env=env, timeout_s=timeout_s)
    return ValidationResult(run.ok, run.exit_code, run.duration_s, run.output_tail, run.reason)


def _expand(argument: str, variables: dict[str, str]) -> str:
    for name, value in variables.items():
        argument = argument.replace(f"${{{name}}}", value)
    # Longest names first, so $REARGUARD_ASSET does not eat $REARGUARD_ASSET_PATH.
    for name in sorted(variables, key=len, reverse=True):
        argument = argument.replace(f"${name}", variables[name])
    return argument
