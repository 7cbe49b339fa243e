"""Playbooks as Prefect deployments, run by `rearguard worker` processes on a work pool."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from conftest import REARGUARD_BIN
from intake_helpers import timeline_actions, wait_for
from scenarios import build_scenario, configure

from rearguard.flows.run_playbook import dispatch_playbook
from rearguard.models.audit.chain import events_for_incident
from rearguard.models.enums import IncidentStatus
from rearguard.models.incidents.approvals import list_requests
from rearguard.models.incidents.service import get_incident, open_incident
from rearguard.models.runtime import Runtime

# model_theft waits for an approval before rotating credentials, and gives up after 10 s.
_SETTINGS = """
[intake]
dispatch = "deployment"
work_pool = "{pool}"

[approvals]
allow_self_asserted = true

[[approvals.rules]]
playbook = "model_theft"
steps = ["rotate_credentials"]
approvers = ["alice"]
timeout_s = 10
on_timeout = "abort"
"""


def _status(runtime: Runtime, incident_id: int) -> IncidentStatus:
    with runtime.db.read_session() as session:
        return get_incident(session=session, incident_id=incident_id).status


def _open(runtime: Runtime, incident_type: str) -> int:
    with runtime.db.session() as session:
        incident = open_incident(
            session=session, type=incident_type, actor="test", asset_name="model-a"
        )
        return int(incident.id)


def _run_span(runtime: Runtime, incident_id: int) -> tuple[int, int]:
    """The first and last position in the audit chain of what the incident's playbook wrote."""
    with runtime.db.read_session() as session:
        seqs = [
            int(e.seq)
            for e in events_for_incident(session, incident_id=incident_id)
            if e.action != "incident.opened"
        ]
    return min(seqs), max(seqs)


def _flow_runs(pool: str) -> list[object]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import WorkPoolFilter, WorkPoolFilterName

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool]))
        )


def test_workers_run_an_incident_dispatched_twice_once_and_one_playbook_per_asset(
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
    configure(runtime, home, _SETTINGS.format(pool=pool))
    build_scenario(runtime, tmp_path, tampered=True)
    theft_id = _open(runtime, "model_theft")
    compromise_id = _open(runtime, "model_compromise")

    deployed = cli("deploy", "--json")
    assert deployed.returncode == 0, deployed.stderr
    assert "model_compromise/model_compromise" in deployed.stdout
    assert pool in deployed.stdout

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
        dispatch_playbook(runtime=runtime, incident_id=theft_id)

        def theft_waits() -> bool:
            with runtime.db.read_session() as session:
                return bool(list_requests(session=session, incident_id=theft_id))

        wait_for(theft_waits, timeout=120, what="model_theft to wait for its approval")
        # The other worker is free, but the asset is taken until model_theft ends.
        first = dispatch_playbook(runtime=runtime, incident_id=compromise_id)
        second = dispatch_playbook(runtime=runtime, incident_id=compromise_id)
        assert first == second  # the same flow run, queued once
        wait_for(
            lambda: _status(runtime, compromise_id) == IncidentStatus.RECOVERED,
            timeout=120,
            what="the workers to run both playbooks",
        )
        # A run holds the asset's slot until its flow ends (notifications are delivered in the
        # guard): stopping a worker earlier would leave the slot leased to a dead run.
        wait_for(
            lambda: all(run.state and run.state.is_final() for run in _flow_runs(pool)),  # type: ignore[attr-defined]
            timeout=60,
            what="both flow runs to end",
        )
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGINT)
        for worker in workers:
            worker.wait(timeout=60)
    assert _status(runtime, theft_id) == IncidentStatus.FAILED  # nobody approved
    assert timeline_actions(runtime, compromise_id).count("rollback") == 2  # intent + outcome
    assert len(_flow_runs(pool)) == 2  # one per incident
    theft, compromise = _run_span(runtime, theft_id), _run_span(runtime, compromise_id)
    assert theft[1] < compromise[0]  # one playbook on the asset at a time
