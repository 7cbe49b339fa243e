"""Running the installed ``rearguard`` command on a test's runtime (no Prefect needed)."""

from __future__ import annotations

import os
import subprocess

from conftest import REARGUARD_BIN

from rearguard.models.runtime import Runtime


def rearguard(runtime: Runtime, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed command on the test's home and database (no Prefect needed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REARGUARD_")}
    env.update(
        REARGUARD_HOME=str(runtime.settings.home),
        REARGUARD_DATABASE_URL=runtime.db.url,
        COLUMNS="200",
    )
    return subprocess.run(
        [str(REARGUARD_BIN), *args],
        env=env,
        cwd=runtime.settings.home,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def invoke(runtime: Runtime, *args: str, columns: int = 80, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    """Run a rearguard command in this process (click's runner, no new interpreter) on the
    test's home and database, printing for a terminal ``columns`` wide (not a terminal: no
    spinner, no colour); the result has ``exit_code``, ``stdout`` and ``stderr``."""
    from typer.testing import CliRunner

    from rearguard.flows.cli.context import Invocation
    from rearguard.flows.cli.main import build_app

    argv = ["--home", str(runtime.settings.home), "--database-url", runtime.db.url, *args]
    given = Invocation()
    try:
        return CliRunner().invoke(
            build_app(argv),
            argv,
            obj=given,
            env={"COLUMNS": str(columns), "REARGUARD_USER": "operator", **(env or {})},
            catch_exceptions=False,
        )
    finally:
        given.close()
