"""Prefect kept off rearguard's terminal: its defaults for the embedded mode, and its log
records off the console.

rearguard says itself how each step and each playbook ended. Prefect's own console output
(its first-run telemetry notice, its run records, the warnings and tracebacks its background
workers log when a temporary server stops under them) would repeat that or, after a run that
succeeded, read like a failure. ``REARGUARD_DEBUG`` keeps them all. No Prefect import here:
the defaults must be in place before Prefect is first imported, when it reads its settings.
"""

from __future__ import annotations

import logging
import os

PREFECT_DEFAULTS = {
    # A fresh machine's first temporary server migrates its database, which takes 20-30 s.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    # This machine may have no network: no telemetry from the temporary server...
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # ...nor from the client, whose first import in a terminal also prints a notice about it.
    "DO_NOT_TRACK": "1",
    # rearguard prints its own step progress; Prefect's INFO lines would repeat it.
    "PREFECT_LOGGING_LEVEL": "WARNING",
}
TEMPORARY_SERVER_DEFAULTS = {
    # The temporary server writes to this process's terminal; what it logs as it is stopped
    # under a finished run (cancelled services, closed connections) is noise there.
    "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL",
}


def debugging() -> bool:
    """True when ``REARGUARD_DEBUG`` asks for everything, Prefect's output included."""
    return bool(os.environ.get("REARGUARD_DEBUG"))


def apply_defaults(defaults: dict[str, str] = PREFECT_DEFAULTS) -> None:
    """Set each of ``defaults`` the user has not set (their own settings always win)."""
    for name, value in defaults.items():
        os.environ.setdefault(name, value)


class PrefectRecordsOff(logging.Filter):
    """Drops the log records of the named loggers (and their children).

    Args:
        *prefixes: logger names, e.g. ``prefect.flow_runs``.
    """

    def __init__(self, *prefixes: str) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the record unless its logger is one of the named ones."""
        return not any(
            record.name == prefix or record.name.startswith(f"{prefix}.")
            for prefix in self.prefixes
        )


def _terminal_handlers() -> list[logging.Handler]:
    """The handlers Prefect's logging set-up writes to the terminal with: its console handler
    on the root logger, and the handler of ``prefect._internal`` (which does not propagate).
    Its API handlers (which send run records to the server, for its UI) hang on other loggers,
    and other handlers of the root logger (a test's capture) are not Prefect's."""
    # lazy: Prefect must not be imported before the defaults above are in place.
    from prefect.logging.handlers import PrefectConsoleHandler

    console = [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]
    return console + list(logging.getLogger("prefect._internal").handlers)


EVERY_PREFECT_RECORD = PrefectRecordsOff("prefect")
"""One filter, so that installing it twice on a handler installs it once."""


def prefect_off_the_terminal() -> None:
    """Keep every Prefect log record off this process's terminal from now on (a command's
    process ends with its command, and Prefect's background workers log as it exits), unless
    ``REARGUARD_DEBUG`` is set. It imports Prefect, whose logging set-up creates the handlers
    it filters: call it once the defaults are applied.
    """
    if debugging():
        return
    # lazy: Prefect after configure_prefect; it sets up the handlers filtered here
    import prefect.main  # noqa: F401

    for handler in _terminal_handlers():
        handler.addFilter(EVERY_PREFECT_RECORD)
