"""Running an asset's validation command: argv without a shell, with a timeout.

A check that cannot run (its program missing or not executable, exit 126 or 127, an
interpreter that cannot open its script) judges nothing: it raises :class:`CheckCannotRun`,
so the step fails with that cause and no version is marked for it. Relative paths in a
command are made absolute when it is set (:func:`resolve_command`), since the check later runs
from whatever directory the playbook's process has.
"""

from __future__ import annotations

import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from rearguard.models.commands import CommandRun, base_env, run_argv
from rearguard.models.errors import OperationFailed, UsageError

# Exit codes a shell, env or exec wrapper gives when the program itself could not be run.
_NOT_RUN_EXIT_CODES = {126: "not executable", 127: "not found"}
# What an interpreter says when its script argument does not exist (python exits 2).
_CANNOT_OPEN = "can't open file"
_SCRIPT_SUFFIXES = (".py", ".sh", ".bash", ".rb", ".pl", ".js", ".ts", ".R", ".jl")


class CheckCannotRun(OperationFailed):
    """An asset's validation command could not run at all, so it judged no version."""


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
    cause = _cannot_run(run, argv[0])
    if cause is not None:
        raise CheckCannotRun(
            f"the validation check of {asset} cannot run ({cause}), so it judged no version; "
            f"fix it with `rearguard assets check {asset} --set COMMAND` (absolute paths)"
        )
    return ValidationResult(run.ok, run.exit_code, run.duration_s, run.output_tail, run.reason)


def _cannot_run(run: CommandRun, program: str) -> str | None:
    """Why a run never got to check anything, or None when the check itself ran."""
    if not run.started:
        return run.reason
    if run.exit_code in _NOT_RUN_EXIT_CODES:
        said = _last_line(run.output_tail)
        return f"{program} exited {run.exit_code}, {_NOT_RUN_EXIT_CODES[run.exit_code]}" + (
            f": {said}" if said else ""
        )
    if run.exit_code == 2 and _CANNOT_OPEN in run.output_tail:
        lines = [line for line in run.output_tail.splitlines() if _CANNOT_OPEN in line]
        return f"{lines[-1].strip()} (exit 2)"
    return None


def _last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1][-200:] if lines else ""


def resolve_command(command: str, *, cwd: Path) -> str:
    """Make the relative paths of a validation command absolute, as seen from ``cwd``.

    The program, when written as a path (``checks/run.sh``), and every argument that names a
    file or directory existing under ``cwd`` (``checks/smoke.py``) become absolute; a program
    or script path that does not exist is refused now rather than failing at 3 a.m. Options,
    bare words and arguments holding ``$`` (our variables) are left as they are. The command
    is returned unchanged when nothing needed resolving.

    Raises:
        UsageError: the command is empty or unparsable, or names a relative program or script
            that does not exist under ``cwd``.
    """
    argv = parse_command(command)
    resolved: list[str] = []
    for index, argument in enumerate(argv):
        if argument.startswith("-") or "$" in argument or Path(argument).is_absolute():
            resolved.append(argument)
            continue
        candidate = cwd / argument
        if candidate.exists():
            named_as_path = "/" in argument or index > 0
            resolved.append(str(candidate.resolve()) if named_as_path else argument)
            continue
        program_path = index == 0 and "/" in argument
        if program_path or argument.endswith(_SCRIPT_SUFFIXES):
            raise UsageError(
                f"the validation command names {argument!r}, which does not exist in {cwd}",
                hint="give its absolute path, or run this from the directory that holds it",
            )
        if index == 0 and shutil.which(argument) is None:
            raise UsageError(f"the validation command's program {argument!r} is not on PATH")
        resolved.append(argument)
    return command if resolved == argv else shlex.join(resolved)


def _expand(argument: str, variables: dict[str, str]) -> str:
    for name, value in variables.items():
        argument = argument.replace(f"${{{name}}}", value)
    # Longest names first, so $REARGUARD_ASSET does not eat $REARGUARD_ASSET_PATH.
    for name in sorted(variables, key=len, reverse=True):
        argument = argument.replace(f"${name}", variables[name])
    return argument
