"""The one exception hierarchy of rearguard.

Every expected failure is a :class:`RearguardError`. Each subclass carries the exit code the
CLI uses and, where there is one, a hint that tells the user what to do next.
"""

from __future__ import annotations

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTEGRITY = 3


class RearguardError(Exception):
    """Root of every error rearguard raises on purpose.

    Args:
        message: One line saying what went wrong.
        hint: One line saying what to do about it, if anything.
    """

    exit_code: int = EXIT_FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(RearguardError):
    """The input is malformed or names something that does not exist."""

    exit_code = EXIT_USAGE


class NotFoundError(UsageError):
    """An asset, version, incident or playbook that was named does not exist."""


class ConflictError(UsageError):
    """The request conflicts with what is recorded (e.g. a label registered twice)."""


class UnsafePathError(UsageError):
    """A path from input escapes the directory it must stay in."""


class ConfigurationError(UsageError):
    """The settings or the database cannot be used as they are."""


class NotEntitled(UsageError):
    """A person tried to decide something the policy does not let them decide."""


class OperationFailed(RearguardError):
    """The operation ran but could not reach its goal (e.g. no known-good version)."""

    exit_code = EXIT_FAILED


class RuntimeNotBound(RearguardError):
    """Code that reads its run's runtime ran outside any run (nothing bound one)."""

    exit_code = EXIT_FAILED


class IntegrityViolation(RearguardError):
    """Stored content or the audit chain does not match what was recorded."""

    exit_code = EXIT_INTEGRITY
