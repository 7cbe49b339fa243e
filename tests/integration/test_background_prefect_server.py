"""Without ``rearguard serve`` and without a Prefect API of the user's, the first command that
runs a playbook starts a local Prefect server in the background; the next command reuses it;
once nothing uses it for ``[prefect] idle_stop_s``, it stops and withdraws its record."""

from __future__ import annotations

import fcntl
import json
import os
import signal
from pathlib import Path

import httpx
import pytest
from conftest import run_cli
from intake_helpers import incidents, wait_for
from scenarios import build_scenario

from rearguard.models.runtime import Runtime

pytestmark = pytest.mark.one_database


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie not yet reaped by whoever adopted it counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_a_second_command_reuses_the_background_server_which_stops_when_unused(
    home: Path, runtime: Runtime, tmp_path: Path
) -> None:
    build_scenario(runtime, tmp_path / "a", asset="model-a", tampered=True)
    build_scenario(runtime, tmp_path / "b", asset="model-b", tampered=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REARGUARD_", "PREFECT_"))}
    env.update(
        REARGUARD_HOME=str(home),
        REARGUARD_DATABASE_URL=runtime.settings.database_url,
        REARGUARD_USER="operator",
        REARGUARD_PREFECT_IDLE_STOP_S="3",
        PREFECT_HOME=str(tmp_path / "prefect-home"),  # no profile: no API URL configured
        COLUMNS="200",
    )
    published = home / "prefect-server.json"
    # This test counts as one more user of the server (as every command using it does) until
    # it has looked at it: the 3 s idle stop must not race the checks below.
    lease = os.open(home / "prefect-server.users", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lease, fcntl.LOCK_SH)
    server_pid: int | None = None
    try:
        first = run_cli(
            "incident",
            "open",
            "--type",
            "model_compromise",
            "--asset",
            "model-a",
            env=env,
            cwd=home,
            timeout=240,
        )
        assert first.returncode == 0, first.stderr
        assert "starting a local Prefect server in the background" in first.stderr
        assert "temporary" not in first.stderr
        record = json.loads(published.read_text())
        server_pid = int(record["server_pid"])
        assert record["pid"] == server_pid  # the record follows the server's own life
        assert _alive(server_pid)  # it outlived the command that started it

        second = run_cli(
            "incident",
            "open",
            "--type",
            "model_compromise",
            "--asset",
            "model-b",
            env=env,
            cwd=home,
            timeout=240,
        )
        assert second.returncode == 0, second.stderr
        assert "starting a local Prefect server" not in second.stderr
        assert "temporary" not in second.stderr
        assert json.loads(published.read_text()) == record
        assert _alive(server_pid)

        # Both playbooks ran as flow runs of that one server.
        names = sorted(f"incident-{incident.id}" for incident in incidents(runtime))
        runs = httpx.post(
            f"{record['api_url']}/flow_runs/filter",
            json={"flow_runs": {"name": {"any_": names}}},
            timeout=10,
        ).json()
        assert sorted((r["name"], r["state_type"]) for r in runs) == [
            (name, "COMPLETED") for name in names
        ]
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
