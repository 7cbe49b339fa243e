"""Shared fixtures: a fresh home and database per test, one real Prefect server per session.

The database is SQLite in the test's temporary directory, or the PostgreSQL server named by
``REARGUARD_TEST_DATABASE_URL`` (its ``public`` schema is recreated for every test).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before Prefect is imported anywhere: no telemetry, quiet logs, a private Prefect home, and
# enough time for a fresh temporary server to migrate its database.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="rearguard-test-prefect-"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
# The test server's SQLite database is shared by workers, heartbeats and events; on a loaded
# 2-core machine a write may wait longer than Prefect's default 10 s ("database is locked").
os.environ.setdefault("PREFECT_SERVER_DATABASE_TIMEOUT", "60")
for _name in ("REARGUARD_HOME", "REARGUARD_DATABASE_URL", "REARGUARD_FAILPOINTS"):
    os.environ.pop(_name, None)

from rearguard.models.config.settings import load_settings  # noqa: E402
from rearguard.models.runtime import Runtime  # noqa: E402


def _worker_database(url: str | None) -> str | None:
    """Under pytest-xdist, a PostgreSQL database of each worker's own, beside the given one.

    Every test recreates the database's ``public`` schema, so two workers must never share one.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not url or not worker:
        return url
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from rearguard.models.db.engine import normalise_url

    base = make_url(url)
    name = f"{base.database}_{worker}"
    engine = create_engine(normalise_url(url), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        found = connection.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
        ).scalar()
        if not found:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


POSTGRES_URL = _worker_database(os.environ.get("REARGUARD_TEST_DATABASE_URL"))
REARGUARD_BIN = Path(sys.executable).with_name("rearguard")


def _reset_postgres(url: str) -> None:
    from sqlalchemy import create_engine, text

    from rearguard.models.db.engine import normalise_url

    engine = create_engine(normalise_url(url))
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked ``one_database`` (its subject is the CLI, Prefect, a format or a channel,
    not the database) runs once: on PostgreSQL when one is configured, else on SQLite. The
    suite stays within CI's time while every database test still runs on both."""
    if not POSTGRES_URL:
        return
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_sqlite = callspec is not None and callspec.params.get("database_url") == "sqlite"
        if on_sqlite and item.get_closest_marker("one_database"):
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(params=["sqlite", "postgresql"] if POSTGRES_URL else ["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database for one test: SQLite, and PostgreSQL when one is configured."""
    if request.param == "postgresql":
        assert POSTGRES_URL
        _reset_postgres(POSTGRES_URL)
        return POSTGRES_URL
    return f"sqlite:///{tmp_path / 'rearguard.db'}"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fresh rearguard home for one test."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def runtime(home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """The test's runtime, on its home and database (given to what it runs, never installed)."""
    monkeypatch.chdir(home)  # no stray rearguard.toml from the working directory
    rt = Runtime.from_settings(load_settings(home=home, database_url=database_url))
    yield rt
    rt.close()


@pytest.fixture(scope="session")
def prefect_api_url() -> Iterator[str]:
    """One real Prefect server (Prefect's own test harness) for the whole session."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        url = PREFECT_API_URL.value()
        assert url
        yield url


@pytest.fixture
def cli_env(home: Path, database_url: str, prefect_api_url: str) -> dict[str, str]:
    """The environment of a ``rearguard`` subprocess on the test's home, database and server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REARGUARD_")}
    env.update(
        REARGUARD_HOME=str(home),
        REARGUARD_DATABASE_URL=database_url,
        PREFECT_API_URL=prefect_api_url,
        COLUMNS="200",
        # The person commands record (a test asking for none removes it).
        REARGUARD_USER="operator",
    )
    return env


def run_cli(
    *args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``rearguard`` command and capture its output."""
    return subprocess.run(
        [str(REARGUARD_BIN), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def cli(cli_env: dict[str, str], home: Path):  # type: ignore[no-untyped-def]
    """Call ``cli("assets", "list")`` to run rearguard in a subprocess against this test."""

    def call(*args: str, env: dict[str, str] | None = None, timeout: float = 120):  # type: ignore[no-untyped-def]
        return run_cli(*args, env={**cli_env, **(env or {})}, cwd=home, timeout=timeout)

    return call


@pytest.fixture
def make_version(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Call ``make_version("v1", {"weights.bin": b"..."})`` to get a directory of files."""

    def make(label: str, files: dict[str, bytes] | None = None) -> Path:
        folder = tmp_path / "sources" / label
        folder.mkdir(parents=True)
        for relative, content in (files or {"weights.bin": f"weights {label}".encode()}).items():
            path = folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        return folder

    return make


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow tracking database, migrated once per session (MLflow migrates a store
    on first use, which takes over a second); each test gets a copy."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow") / "template.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_env(
    mlflow_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Settings for the MLflow backend on a fresh SQLite tracking store of this test's own.

    Set in this process's environment (request it before ``runtime``) and returned, for
    ``cli(..., env=mlflow_env)``.
    """
    import shutil

    store = tmp_path / "mlflow.db"
    shutil.copyfile(mlflow_template, store)
    env = {
        "REARGUARD_REGISTRY_BACKEND": "mlflow",
        "REARGUARD_REGISTRY_TRACKING_URI": f"sqlite:///{store}",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def mlflow_runtime(mlflow_env: dict[str, str], runtime: Runtime) -> Runtime:
    """The test's runtime with the MLflow Model Registry as its registry."""
    return runtime


@pytest.fixture
def narrow_cli(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):  # type: ignore[no-untyped-def]
    """Call ``narrow_cli("incident", "list")`` to run rearguard's entry point in this process on
    the test's runtime, printing for an 80-column terminal (``env=`` adds to its environment)."""
    from cli_helpers import rearguard_in_process  # lazy: cli_helpers imports this module

    def call(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        return rearguard_in_process(
            runtime, *args, monkeypatch=monkeypatch, capsys=capsys, columns=80, env=env
        )

    return call
