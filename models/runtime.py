"""The runtime of a run: settings, database and registry, and what the orchestration lends.

A process may hold several runtimes at once: the application's, and a drill's sandbox's while
the drill runs beside incidents' playbooks. A playbook run binds its runtime for its duration
(:func:`bound_runtime`) and its steps read it back (:func:`current_runtime`). The binding is a
:class:`contextvars.ContextVar`: asyncio tasks and ``asyncio.to_thread`` carry it, as do
Prefect's task runners, so each run sees its own and never another's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import IO
from urllib.parse import urlparse

from rearguard.models.audit.checkpoint_worker import CheckpointWorker
from rearguard.models.commands import CommandRun
from rearguard.models.config.settings import Settings
from rearguard.models.db.engine import Database
from rearguard.models.errors import ConfigurationError, RuntimeNotBound
from rearguard.models.registry.base import RegistryBackend
from rearguard.models.registry.local import LocalStore
from rearguard.models.registry.mlflow_backend import MlflowRegistry

Reporter = Callable[[str, str, str], None]
"""Called as reporter(step, phase, message) while a playbook runs (start, wait, done, fail),
and once as reporter(*PLAYBOOK_ENDED, status) when the run's work is over."""
PLAYBOOK_ENDED = ("playbook", "ended")
"""The report of a playbook run whose work is over (its notifications delivered): what is left
is Prefect's bookkeeping of the flow run."""
DeploymentRunner = Callable[..., CommandRun]
"""Called as runner(deployment, env=..., timeout_s=...): run a flow run of the deployment and
wait for it (a hook that names a Prefect deployment)."""
SecretBlockLoader = Callable[[str], str]
"""Called as loader(name): the value of the Prefect Secret block ``name``."""


@dataclass
class Runtime:
    """What services and steps need: the settings, the database and the registry."""

    settings: Settings
    db: Database
    registry: RegistryBackend
    reporters: list[Reporter] = field(default_factory=list)
    drill: bool = False
    """True in a drill's sandbox: hooks run with ``REARGUARD_DRILL=1``."""
    hook_deployments: DeploymentRunner | None = None
    """Runs hooks that name a Prefect deployment; ``models`` never imports Prefect, so the
    orchestration layer lends it (None: such a hook fails, saying where it can run)."""
    secret_blocks: SecretBlockLoader | None = None
    """Reads the Slack token from a Prefect Secret block, lent the same way."""
    checkpoints: CheckpointWorker = field(
        default_factory=CheckpointWorker, repr=False, compare=False
    )
    """Signs and publishes audit checkpoints in the background; shared by this runtime's
    copies (``dataclasses.replace`` passes it on), finished by :meth:`close`."""
    console: IO[str] | None = None
    """Where the console notification channel prints: standard error when None (for a
    command ``rearguard serve`` runs for the ``rearguard`` command, that command's)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        """Open the database (upgrading the embedded default on first use) and the registry.

        Raises:
            ConfigurationError: the database is unreachable, behind, or newer than this code.
        """
        db = Database(settings.database_url, busy_timeout_s=settings.database.busy_timeout_s)
        db.ensure_current(auto_upgrade=settings.is_embedded_database)
        return cls(settings=settings, db=db, registry=open_registry(settings))

    def request_checkpoint(self, reason: str | None) -> None:
        """Ask for a signed checkpoint of the chain (``reason``: why, e.g. ``incident 12 run
        ended``; None: only retry the sinks whose back-off is over), made and published in the
        background: returns at once. Nothing happens without ``[audit] signing_key``."""
        self.checkpoints.request(db=self.db, settings=self.settings, reason=reason)

    def close(self) -> None:
        """Finish the checkpoints asked for (made and published before this returns), then
        release the database."""
        self.checkpoints.close()
        self.db.dispose()

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


_bound: ContextVar[Runtime | None] = ContextVar("rearguard_runtime", default=None)


@contextmanager
def bound_runtime(runtime: Runtime) -> Iterator[Runtime]:
    """Bind ``runtime`` to the code that runs inside the block, and to the asyncio tasks and
    threads it starts with the context (``asyncio.to_thread``, Prefect's tasks).

    Other threads and tasks keep theirs: two runs in one process each see their own.
    """
    token = _bound.set(runtime)
    try:
        yield runtime
    finally:
        _bound.reset(token)


def bound() -> Runtime | None:
    """The runtime bound here, or None outside any run."""
    return _bound.get()


def current_runtime() -> Runtime:
    """The runtime of the run this code belongs to.

    Raises:
        RuntimeNotBound: no run bound one here (code that needs a runtime ran outside a run).
    """
    runtime = _bound.get()
    if runtime is None:
        raise RuntimeNotBound(
            "no runtime is bound here: this runs only inside a playbook run",
            hint="run playbooks with `rearguard playbook run` or run_playbook(runtime=...)",
        )
    return runtime
