"""Without ``rearguard serve`` and without a Prefect API of the user's, the first command that
runs a playbook starts a background host (a local Prefect server and a process that runs
commands) and hands itself to it; the next command is handed to it; a command with other
settings replaces it; once nothing uses it for ``[prefect] idle_stop_s``, it stops and withdraws
its records. A command run here (``--local``) starts the local Prefect server alone in the
background, and the next one reuses it in the same way."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from cli_helpers import open_compromise
from conftest import run_cli
from intake_helpers import incidents, wait_for
from scenarios import build_scenario

from rearguard.models.runtime import Runtime

pytestmark = pytest.mark.one_database
Result = subprocess.CompletedProcess[str]
# A Prefect API nobody answers at: a command that ran here instead of in the host would fail.
NO_PREFECT_HERE = {"PREFECT_API_URL": "http://127.0.0.1:9/api"}


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie not yet reaped by whoever adopted it counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _environment(home: Path, runtime: Runtime, tmp_path: Path) -> dict[str, str]:
    """No Prefect API configured (no variable, no profile), a 3 s idle stop."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REARGUARD_", "PREFECT_"))}
    env.update(
        REARGUARD_HOME=str(home),
        REARGUARD_DATABASE_URL=runtime.settings.database_url,
        REARGUARD_USER="operator",
        REARGUARD_PREFECT_IDLE_STOP_S="3",
        PREFECT_HOME=str(tmp_path / "prefect-home"),  # no profile: no API URL configured
        COLUMNS="200",
    )
    return env


def _flow_runs(api_url: str, runtime: Runtime) -> list[tuple[str, str]]:
    """The incidents' flow runs on the Prefect server at ``api_url``, with their states."""
    names = sorted(f"incident-{incident.id}" for incident in incidents(runtime))
    runs = httpx.post(
        f"{api_url}/flow_runs/filter",
        json={"flow_runs": {"name": {"any_": names}}},
        timeout=10,
    ).json()
    return sorted((r["name"], r["state_type"]) for r in runs)


def _open(asset: str, env: dict[str, str], home: Path, *root: str) -> Result:
    return run_cli(*root, *open_compromise(asset), env=env, cwd=home, timeout=240)


def test_commands_run_here_reuse_the_background_server_which_stops_when_unused(
    home: Path, runtime: Runtime, tmp_path: Path
) -> None:
    build_scenario(runtime, tmp_path / "a", asset="model-a", tampered=True)
    build_scenario(runtime, tmp_path / "b", asset="model-b", tampered=True)
    env = {**_environment(home, runtime, tmp_path), "REARGUARD_LOCAL": "1"}
    published = home / "prefect-server.json"
    # This test counts as one more user of the server (as every command using it does) until
    # it has looked at it: the 3 s idle stop must not race the checks below.
    lease = os.open(home / "prefect-server.users", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lease, fcntl.LOCK_SH)
    server_pid: int | None = None
    try:
        first = _open("model-a", env, home)
        assert first.returncode == 0, first.stderr
        assert "starting a local Prefect server in the background" in first.stderr
        assert "temporary" not in first.stderr
        record = json.loads(published.read_text())
        server_pid = int(record["server_pid"])
        assert record["pid"] == server_pid  # the record follows the server's own life
        assert _alive(server_pid)  # it outlived the command that started it

        second = _open("model-b", env, home)
        assert second.returncode == 0, second.stderr
        assert "starting a local Prefect server" not in second.stderr
        assert "temporary" not in second.stderr
        assert json.loads(published.read_text()) == record
        assert _alive(server_pid)

        # Both playbooks ran as flow runs of that one server.
        assert _flow_runs(record["api_url"], runtime) == [
            ("incident-1", "COMPLETED"),
            ("incident-2", "COMPLETED"),
        ]
        assert not (home / "serve.json").exists()  # no background host: run here
        status = json.loads(run_cli("status", "--json", env=env, cwd=home).stdout)
        assert status["prefect"]["api_url"] == record["api_url"]
        assert status["prefect"]["pid"] == server_pid
        assert status["prefect"]["idle_stop_s"] == 3

        os.close(lease)  # the last user is gone
        lease = -1
        wait_for(lambda: not _alive(server_pid), timeout=60, what="the idle server to stop")
        assert not published.exists()
    finally:
        if lease >= 0:
            os.close(lease)
        if server_pid is not None and _alive(server_pid):
            os.killpg(server_pid, signal.SIGKILL)


def test_the_first_command_starts_a_background_host_later_ones_are_handed_to_it(
    home: Path, runtime: Runtime, tmp_path: Path
) -> None:
    build_scenario(runtime, tmp_path / "a", asset="model-a", tampered=True)
    build_scenario(runtime, tmp_path / "b", asset="model-b", tampered=True)
    build_scenario(runtime, tmp_path / "c", asset="model-c", tampered=True)
    env = _environment(home, runtime, tmp_path)
    published = home / "serve.json"
    # Held until the checks below are done, as a command running here would hold it: the 3 s
    # idle stop must not race them.
    lease = os.open(home / "prefect-server.users", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lease, fcntl.LOCK_SH)
    hosts: list[int] = []
    try:
        first = _open("model-a", env, home, "--home", str(home))
        assert first.returncode == 0, first.stderr
        assert first.stderr.startswith("starting a background host for this home's commands")
        assert first.stdout.startswith("incident 1: recovered; model-a production -> v2")
        host = json.loads(published.read_text())
        hosts.append(int(host["pid"]))
        assert host["idle_stop_s"] == 3
        assert published.stat().st_mode & 0o777 == 0o600
        assert _alive(hosts[0])  # it outlived the command that started it
        server = json.loads((home / "prefect-server.json").read_text())
        assert server["pid"] == hosts[0]  # its Prefect server follows its life

        # Handed to the host: this shell's Prefect API does not answer, its server does.
        second = _open("model-b", {**env, **NO_PREFECT_HERE}, home)
        assert second.returncode == 0, second.stderr
        assert second.stdout.startswith("incident 2: recovered; model-b production -> v2")
        assert "starting a background host" not in second.stderr
        assert "note:" not in second.stderr
        assert json.loads(published.read_text()) == host
        # Both flow runs of the host's server (a command in the host ends with the playbook's
        # work; the host records the run's end in Prefect after).
        both = [("incident-1", "COMPLETED"), ("incident-2", "COMPLETED")]
        wait_for(
            lambda: _flow_runs(server["api_url"], runtime) == both,
            timeout=120,
            what="both flow runs COMPLETED on the host's Prefect server",
        )
        status = json.loads(run_cli("status", "--json", env=env, cwd=home).stdout)
        assert status["intake"]["ours"] is True
        assert status["intake"]["published"]["idle_stop_s"] == 3
        assert status["prefect"]["api_url"] == server["api_url"]
        shown = run_cli("status", env=env, cwd=home).stdout
        assert f"this home's background host, pid {hosts[0]}" in shown

        # Other settings: the host steps aside, a new one runs the command with them.
        changed = {**env, "REARGUARD_DATABASE_BUSY_TIMEOUT_S": "31"}
        third = _open("model-c", changed, home)
        assert third.returncode == 0, third.stderr
        assert third.stderr.startswith("starting a background host for this home's commands")
        assert "note:" not in third.stderr
        assert third.stdout.startswith("incident 3: recovered; model-c production -> v2")
        replaced = json.loads(published.read_text())
        hosts.append(int(replaced["pid"]))
        assert replaced["instance"] != host["instance"]

        os.close(lease)  # the last user is gone: both stop, the records go with them
        lease = -1
        for pid in hosts:
            wait_for(lambda pid=pid: not _alive(pid), timeout=120, what=f"host {pid} to stop")
        wait_for(lambda: not published.exists(), timeout=10, what="serve.json withdrawn")
        assert not (home / "prefect-server.json").exists()
        assert not _alive(int(server["server_pid"]))
    finally:
        if lease >= 0:
            os.close(lease)
        for pid in hosts:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
