"""The runtime of one process: settings, database and registry, built once."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlparse

from rearguard.models.config.settings import Settings, load_settings
from rearguard.models.db.engine import Database
from rearguard.models.errors import ConfigurationError
from rearguard.models.registry.base import RegistryBackend
from rearguard.models.registry.local import LocalStore

Reporter = Callable[[str, str, str], None]
"""Called as reporter(step, phase, message) while a playbook runs (start, wait, done, fail)."""


@dataclass
class Runtime:
    """What services and steps need: the settings, the database and the registry."""

    settings: Settings
    db: Database
    registry: RegistryBackend
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
        return cls(settings=settings, db=db, registry=open_registry(settings))

    def report(self, step: str, phase: str, message: str) -> None:
        """Tell every reporter how a step is going."""
        for reporter in self.reporters:
            reporter(step, phase, message)


_SERVERS = ("http", "https", "databricks")


def open_registry(settings: Settings) -> RegistryBackend:
    """The registry backend ``[registry] backend`` names.

    Raises:
        ConfigurationError: MLflow is chosen without a tracking URI.
    """
    if settings.registry.backend == "local":
        return LocalStore(settings.home / "store")
    from rearguard.models.registry.mlflow_backend import MlflowRegistry

    uri = settings.registry.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise ConfigurationError(
            '[registry] backend = "mlflow" needs a tracking URI',
            hint="set [registry] tracking_uri or REARGUARD_REGISTRY_TRACKING_URI",
        )
    location = settings.registry.artifact_location
    if location is None and urlparse(uri).scheme not in _SERVERS:
        # MLflow's default for a local store is ./mlruns, wherever the command happens to run.
        location = (settings.home / "mlflow-artifacts").as_uri()
    return MlflowRegistry(
        tracking_uri=uri,
        home=settings.home,
        experiment=settings.registry.experiment,
        artifact_location=location,
    )


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
