"""Hooks that are Prefect deployments, run by a real worker against the session's server."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REARGUARD_BIN
from hook_flows import rotate_test_credentials
from scenarios import build_scenario, configure

from rearguard.flows.opening import open_and_record
from rearguard.flows.run_playbook import run_playbook
from rearguard.models.audit.chain import events_for_incident
from rearguard.models.enums import IncidentStatus, Severity
from rearguard.models.incidents.service import get_incident
from rearguard.models.runtime import Runtime

pytestmark = pytest.mark.one_database

ROOT = Path(__file__).resolve().parents[2]
_HOOK = """
[hooks.rotate_credentials]
deployment = "rotate-test-credentials/hook"
timeout_s = {timeout}
env = ["HOOK_OUT", "HOOK_HANG"]
credentials = ["serving-api-key"]
"""


@pytest.fixture
def hook_worker(
    tmp_path: Path, cli_env: dict[str, str], prefect_api_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """The test flow deployed on a pool of its own, and a process worker on that pool."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.deployments.runner import EntrypointType

    monkeypatch.setenv("PREFECT_API_URL", prefect_api_url)
    monkeypatch.chdir(ROOT)  # the entrypoint is tests/hook_flows.py, from here
    pool = f"hooks-{tmp_path.name}"
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    rotate_test_credentials.to_deployment(
        name="hook",
        entrypoint_type=EntrypointType.FILE_PATH,
        job_variables={"working_dir": str(ROOT)},
    ).apply(work_pool_name=pool)
    worker = subprocess.Popen(
        [str(REARGUARD_BIN), "worker", "--pool", pool],
        env=cli_env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        worker.send_signal(signal.SIGINT)
        worker.wait(timeout=60)


def _theft(runtime: Runtime) -> int:
    incident_id = open_and_record(
        runtime=runtime,
        type="model_theft",
        asset="model-a",
        severity=Severity.SEV1,
        since=None,
        summary="weights seen for sale",
        actor="test",
    )
    run_playbook(runtime=runtime, incident_id=incident_id)
    return incident_id


def _hook_events(runtime: Runtime, incident_id: int) -> list[dict]:
    with runtime.db.read_session() as session:
        events = events_for_incident(session, incident_id=incident_id)
        return [json.loads(e.data) for e in events if e.action == "hook.rotate_credentials"]


@pytest.mark.usefixtures("hook_worker")
def test_a_deployment_hook_runs_as_a_flow_run_with_the_hook_environment(
    runtime: Runtime, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "hook-out.txt"
    monkeypatch.setenv("HOOK_OUT", str(out))
    configure(runtime, home, _HOOK.format(timeout=120))
    build_scenario(runtime, tmp_path)

    incident_id = _theft(runtime)

    (event,) = _hook_events(runtime, incident_id)
    assert event["ok"] is True, event
    assert event["command"] == "deployment:rotate-test-credentials/hook"
    assert event["output_tail"] == "Completed"
    assert event["credentials"] == ["serving-api-key"]
    assert out.read_text() == f"{incident_id} rotate_credentials"
    with runtime.db.read_session() as session:
        assert get_incident(session=session, incident_id=incident_id).status == (
            IncidentStatus.CONTAINED
        )


@pytest.mark.usefixtures("hook_worker")
def test_a_deployment_hook_that_hangs_is_cancelled_at_its_timeout_and_fails_the_step(
    runtime: Runtime, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_OUT", str(tmp_path / "hook-out.txt"))
    monkeypatch.setenv("HOOK_HANG", "1")
    configure(runtime, home, _HOOK.format(timeout=15))
    build_scenario(runtime, tmp_path)

    incident_id = _theft(runtime)

    (event,) = _hook_events(runtime, incident_id)
    assert event["ok"] is False
    assert event["reason"].startswith("timed out after 15s")
    assert event["reason"].endswith("and its flow run was cancelled")
    assert event["credentials"] == []
    with runtime.db.read_session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
    assert incident.status == IncidentStatus.FAILED
    assert "timed out" in (incident.reason or "")
