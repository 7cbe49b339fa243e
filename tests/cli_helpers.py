"""Running the ``rearguard`` command on a test's runtime (no Prefect needed): the installed
command in a subprocess, or the same app in process (cheaper, for what needs no process)."""

from __future__ import annotations

import os
import subprocess

from click.testing import Result
from conftest import REARGUARD_BIN
from typer.testing import CliRunner

from rearguard.flows.cli.context import Invocation
from rearguard.flows.cli.main import build_app
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


def invoke(runtime: Runtime, *args: str) -> Result:
    """Run a command in this process on the test's home and database; its exit code and its
    stdout and stderr apart; an expected error is in ``result.exception`` (``main``, which
    prints it in one line, is not run)."""
    argv = ["--home", str(runtime.settings.home), "--database-url", runtime.db.url, *args]
    run = Invocation()
    try:
        return CliRunner().invoke(build_app(argv), argv, obj=run, env={"COLUMNS": "200"})
    finally:
        run.close()
