"""Running the installed ``rearguard`` command on a test's runtime (no Prefect needed)."""

from __future__ import annotations

import os
import subprocess

from conftest import REARGUARD_BIN

from rearguard.models.runtime import Runtime


def rearguard(
    runtime: Runtime, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed command on the test's home and database (no Prefect needed), with
    ``env`` added to its environment (a token, say)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("REARGUARD_")}
    environment.update(
        REARGUARD_HOME=str(runtime.settings.home),
        REARGUARD_DATABASE_URL=runtime.db.url,
        COLUMNS="200",
        **(env or {}),
    )
    return subprocess.run(
        [str(REARGUARD_BIN), *args],
        env=environment,
        cwd=runtime.settings.home,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
