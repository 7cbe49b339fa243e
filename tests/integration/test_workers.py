"""Playbooks as Prefect deployments, run by `rearguard worker` processes on a work pool."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from conftest import REARGUARD_BIN
from intake_helpers import timeline_actions, wait_for
from scenarios import build_scenario, configure, production_in_db

from rearguard.flows.dispatch import dispatch_playbook
from rearguard.models.enums import IncidentStatus
from rearguard.models.incidents import get_incident, open_incident
from rearguard.models.runtime import Runtime


def _status(runtime: Runtime, incident_id: int) -> IncidentStatus:
    with runtime.db.read_session() as session:
        return get_incident(session=session, incident_id=incident_id).status


def _flow_runs(pool: str) -> list[object]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import WorkPoolFilter, WorkPoolFilterName

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool]))
        )


def test_two_workers_share_a_pool_and_an_incident_dispatched_twice_runs_once(
    runtime: Runtime,
    home: Path,
    tmp_path: Path,
    cli,  # type: ignore[no-untyped-def]
    cli_env: dict[str, str],
    prefect_api_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", prefect_api_url)
    pool = f"rearguard-{tmp_path.name}"  # the session's Prefect server outlives this test
    configure(runtime, home, f'[intake]\ndispatch = "deployment"\nwork_pool = "{pool}"\n')
    build_scenario(runtime, tmp_path, tampered=True)
    with runtime.db.session() as session:
        incident_id = int(
            open_incident(
                session=session, type="model_compromise", actor="test", asset_name="model-a"
            ).id
        )

    deployed = cli("deploy", "--json")
    assert deployed.returncode == 0, deployed.stderr
    assert "model_compromise/model_compromise" in deployed.stdout
    assert pool in deployed.stdout

    first = dispatch_playbook(runtime=runtime, incident_id=incident_id)
    second = dispatch_playbook(runtime=runtime, incident_id=incident_id)
    assert first == second  # the same flow run, queued once
    assert _status(runtime, incident_id) == IncidentStatus.OPEN  # queued, not run here

    worker_env = {**cli_env, "PREFECT_WORKER_QUERY_SECONDS": "1"}
    workers = [
        subprocess.Popen(
            [str(REARGUARD_BIN), "worker"],
            env=worker_env,
            cwd=home,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    try:
        wait_for(
            lambda: _status(runtime, incident_id) == IncidentStatus.RECOVERED,
            timeout=120,
            what="a worker to run the playbook",
        )
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGINT)
        for worker in workers:
            worker.wait(timeout=60)
    assert production_in_db(runtime, "model-a") == "v2"
    assert timeline_actions(runtime, incident_id).count("rollback") == 2  # intent + outcome
    assert len(_flow_runs(pool)) == 1
