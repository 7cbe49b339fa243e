"""The background host: without ``rearguard serve``, the first command that runs a playbook
starts one for its home, hands itself to it, and later commands are handed to it too.

A command run in its own process pays for its imports and for Prefect's first flow run (over
two seconds) every time; a background host has paid for both once. It is ``rearguard serve
--background`` started detached from the command (a session of its own, its output in
``<home>/host.log``), in the command's working directory and environment, so with the
command's settings: a local Prefect server, the playbook process, and on loopback only the
hand-off (no intake, no drill scheduler). It publishes itself in ``serve.json`` as serve does,
marked with its idle stop, and stops once no command has used it for ``[prefect] idle_stop_s``
(see :mod:`rearguard.flows.prefect_infra.idle`). A command whose settings differ from the
host's makes it retire (it stops once its commands end) and starts a new one.

None is started when a Prefect API is configured (the commands use it), when ``idle_stop_s`` is
0, or for ``--local``, ``REARGUARD_LOCAL`` or ``REARGUARD_DEBUG`` (see
:func:`rearguard.flows.cli.handoff.hand_off`). Two commands at once start one host
(``<home>/host.lock``). The standard library only, imported when it is needed: a command
handed to a running host never imports this module's dependencies.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

from rearguard.flows.cli.handoff import ROOT_VARIABLES, note
from rearguard.flows.intake.published import PublishedServe, alive, read_published
from rearguard.flows.prefect_infra.api_url import configured_api_url
from rearguard.models.config.home import PRIVATE_FILE_MODE, private_directory
from rearguard.models.config.location import background_idle_stop_s
from rearguard.models.errors import RearguardError

LOCK_FILE = "host.lock"
LOG_FILE = "host.log"
START_TIMEOUT_S = 300.0
"""How long the first command waits for its host: a local Prefect server's first start (its
database created) and the playbook process's imports."""
_POLL_S = 0.05
USAGE_EXIT = 2
"""The exit status of a command refused for its settings or command line."""


def wanted(*, home: Path) -> float | None:
    """The idle stop of a background host for this home, or None when none should start: a
    Prefect API is configured, or ``[prefect] idle_stop_s`` is 0 (or in a form only the
    settings decide on)."""
    try:
        if configured_api_url():
            return None
    except RearguardError:
        return None  # Prefect's own settings are broken: the command here says how
    idle_stop_s = background_idle_stop_s(home=home)
    return idle_stop_s if idle_stop_s else None


def start_host(
    *,
    home: Path,
    root_options: dict[str, str],
    idle_stop_s: float,
    failed: PublishedServe | None,
) -> PublishedServe | None:
    """Start this home's background host, unless another command has published one by now;
    return it once it has published itself.

    Args:
        home: the home it serves.
        root_options: the command line's root options (``--home``, ``--database-url``).
        idle_stop_s: its idle stop, for the line that announces it.
        failed: the host this command found first, which did not take the command (gone, or
            retired): never the one returned.

    Returns:
        The host, or None when it did not start (a line says why; the command then runs here).
    """
    private_directory(home)
    lock = os.open(home / LOCK_FILE, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        served = read_published(home)
        if served is not None and served.token and served != failed and alive(served.pid):
            return served  # started by a command at once with this one
        sys.stderr.write(
            "starting a background host for this home's commands (a local Prefect server, "
            f"and a process later commands are handed to; it stops after {idle_stop_s:g} s "
            "unused, [prefect] idle_stop_s)\n"
        )
        sys.stderr.flush()
        return _spawn(home=home, root_options=root_options)
    finally:
        os.close(lock)  # releases the lock


def _spawn(*, home: Path, root_options: dict[str, str]) -> PublishedServe | None:
    log_path = home / LOG_FILE
    command = [sys.executable, "-m", "rearguard.flows.cli.launch", "serve", "--background"]
    # The root options as the variables they override: the same settings (and fingerprint),
    # and a database URL's password out of the host's command line.
    environ = {**os.environ, **{ROOT_VARIABLES[k]: v for k, v in root_options.items()}}
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE_MODE)
    try:
        process = subprocess.Popen(
            command,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # it outlives the command, and its terminal
        )
    finally:
        os.close(log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        served = read_published(home)
        if served is not None and served.pid == process.pid:
            return served
        if process.poll() is not None:
            if process.returncode != USAGE_EXIT:  # bad settings: the command here says which
                note(f"the background host exited with {process.returncode} (see {log_path})")
            return None
        time.sleep(_POLL_S)
    note(f"the background host did not start in {START_TIMEOUT_S:.0f} s (see {log_path})")
    return None
