"""The runtime of one process: settings, database and registry, built once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from rearguard.models.database import Database
from rearguard.models.registry.local import LocalStore
from rearguard.models.settings import Settings, load_settings

Reporter = Callable[[str, str, str], None]
"""Called as reporter(step, phase, message) while a playbook runs (start, wait, done, fail)."""


@dataclass
class Runtime:
    """What services and steps need: the settings, the database and the registry."""

    settings: Settings
    db: Database
    registry: LocalStore
    reporters: list[Reporter] = field(default_factory=list)
    drill: bool = False
    """True in a drill's sandbox: hooks run with ``REARGUARD_DRILL=1``."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        """Open the database (upgrading the embedded default on first use) and the registry.

        Raises:
            ConfigurationError: the database is unreachable, behind, or newer than this code.
        """
        db = Database(settings.database_url, busy_timeout_s=settings.database.busy_timeout_s)
        db.ensure_current(auto_upgrade=settings.is_embedded_database)
        return cls(settings=settings, db=db, registry=LocalStore(settings.home / "store"))

    def report(self, step: str, phase: str, message: str) -> None:
        """Tell every reporter how a step is going."""
        for reporter in self.reporters:
            reporter(step, phase, message)


_current: Runtime | None = None


def use_runtime(runtime: Runtime | None) -> None:
    """Install the runtime this process uses (the CLI and tests call this)."""
    global _current
    _current = runtime


def current_runtime() -> Runtime:
    """Return the installed runtime, building one from the settings if none is."""
    global _current
    if _current is None:
        _current = Runtime.from_settings(load_settings())
    return _current
