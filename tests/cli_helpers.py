"""Running the ``rearguard`` command on a test's runtime (no Prefect needed): the installed
command in a subprocess (or on a pseudo-terminal), or its entry point in this process (cheaper,
for what needs no process)."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import Result
from conftest import REARGUARD_BIN
from typer.testing import CliRunner

from rearguard.flows.cli.context import Invocation
from rearguard.flows.cli.main import build_app, main
from rearguard.models.runtime import Runtime


def open_compromise(asset: str) -> list[str]:
    """The command line that opens a ``model_compromise`` incident on ``asset``."""
    return ["incident", "open", "--type", "model_compromise", "--asset", asset]


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


@dataclass(frozen=True)
class Ran:
    """What a command run in this process printed, and its exit status."""

    returncode: int
    stdout: str
    stderr: str


def rearguard_in_process(
    runtime: Runtime,
    *args: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    columns: int = 200,
    env: dict[str, str] | None = None,
) -> Ran:
    """Run the ``rearguard`` command's entry point in this process, on the test's home and
    database, as the console script runs it (its one-line errors and exit codes included),
    without the start-up of a new interpreter: printing for a terminal ``columns`` wide (not a
    terminal: no spinner, no colour), with ``env`` added to its environment."""
    return rearguard_in_process_on(
        runtime.settings.home,
        *args,
        monkeypatch=monkeypatch,
        capsys=capsys,
        columns=columns,
        env={"REARGUARD_DATABASE_URL": runtime.db.url, **(env or {})},
    )


def rearguard_in_process_on(
    home: Path,
    *args: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    columns: int = 200,
    env: dict[str, str] | None = None,
) -> Ran:
    """:func:`rearguard_in_process` on a home of the test's own, with its embedded database
    (unless ``env`` names one), as a user with no rearguard settings runs it."""
    for name in [name for name in os.environ if name.startswith("REARGUARD_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("REARGUARD_HOME", str(home))
    monkeypatch.setenv("REARGUARD_USER", "operator")
    monkeypatch.setenv("COLUMNS", str(columns))
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(home)
    monkeypatch.setattr(sys, "argv", ["rearguard", *args])
    capsys.readouterr()  # what the test printed before is not the command's
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    code = exited.value.code
    return Ran(code if isinstance(code, int) else 1, captured.out, captured.err)


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


def run_in_terminal(args: list[str], env: dict[str, str], cwd: Path) -> str:
    """Run the installed command on a pseudo-terminal (its stdout and stderr are a TTY, as in
    a shell); everything it wrote."""
    controller, terminal = pty.openpty()
    with subprocess.Popen(
        [str(REARGUARD_BIN), *args], env=env, cwd=cwd, stdout=terminal, stderr=terminal
    ) as process:
        os.close(terminal)
        written = bytearray()
        while True:
            ready, _, _ = select.select([controller], [], [], 120)
            assert ready, "the command printed nothing for 2 minutes"
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal closed: the command has exited
                break
            if not chunk:
                break
            written += chunk
        assert process.wait(timeout=60) == 0, written.decode(errors="replace")
    os.close(controller)
    # What the terminal shows, without its styles and cursor moves.
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", written.decode())
