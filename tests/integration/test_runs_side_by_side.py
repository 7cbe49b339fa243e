"""A drill and an incident's playbook in one process at the same time, each on its own runtime.

The drill runs the real model_compromise playbook on a sandbox of model-a in a thread, and is
held at the start of its rollback (a reporter on the sandbox's runtime waits there) while an
incident on model-b runs its own model_compromise playbook to the end in the test's thread, under
the same Prefect server. The incident must not wait for the drill, must work on the
application's database and registry, and the drill, released afterwards, must pass on its
sandbox: every step of each run sees its own runtime, never the other's.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from scenarios import build_scenario, production_in_db, production_on_disk, weekly_drill

from rearguard.flows.drills.run import run_drill
from rearguard.flows.opening import open_and_record
from rearguard.flows.run_playbook import run_playbook
from rearguard.models.audit.chain import events_for_incident, verify_stored_chain
from rearguard.models.db.tables import DrillRun, Incident
from rearguard.models.enums import Severity
from rearguard.models.incidents.service import list_incidents
from rearguard.models.runtime import Runtime, bound

HELD_AT = "rollback"
WAIT_S = 300  # a bound on a wait for a condition, so that a broken run fails the test


@pytest.fixture(autouse=True)
def _prefect(prefect_api_url: str) -> None:
    """Both playbooks run under the session's Prefect server."""


@dataclass
class HeldDrill:
    """Runs a drill's playbook on its sandbox, held at the start of ``HELD_AT`` until released;
    records which runtime each of its steps found bound."""

    held: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    sandbox_home: Path | None = None
    steps_on_sandbox: list[tuple[str, bool]] = field(default_factory=list)
    sandbox_assets: set[str | None] = field(default_factory=set)

    def run(self, sandbox: Runtime, incident_id: int) -> Incident:
        """The drill's playbook runner (``run_drill(run=...)``)."""
        self.sandbox_home = sandbox.settings.home

        def hold(step: str, phase: str, _message: str) -> None:
            found = bound()
            self.steps_on_sandbox.append((step, found is not None and found.db is sandbox.db))
            if step == HELD_AT and phase == "start":
                self.held.set()
                self.released.wait(WAIT_S)

        sandbox.reporters.append(hold)
        ended = run_playbook(runtime=sandbox, incident_id=incident_id)
        with sandbox.db.read_session() as session:
            self.sandbox_assets = {
                i.asset_name for i in list_incidents(session=session, include_drills=True)
            }
        return ended


def test_a_drill_and_an_incident_run_side_by_side_each_on_its_own_runtime(
    runtime: Runtime, tmp_path: Path
) -> None:
    build_scenario(runtime, tmp_path / "a", asset="model-a")
    build_scenario(runtime, tmp_path / "b", asset="model-b", tampered=True)
    with runtime.db.session() as session:
        # No objective: the drill is held for as long as the incident takes, on purpose.
        weekly_drill(session, rto_s=None)
    incident_steps: list[tuple[str, bool]] = []
    runtime.reporters.append(
        lambda step, _phase, _message: incident_steps.append(
            (step, (found := bound()) is not None and found.db is runtime.db)
        )
    )
    drill = HeldDrill()
    finished: list[DrillRun] = []
    drilling = threading.Thread(
        target=lambda: finished.append(run_drill(runtime=runtime, name="weekly", run=drill.run)),
        name="drill",
    )
    drilling.start()
    try:
        assert drill.held.wait(WAIT_S), "the drill never reached its rollback"

        incident_id = open_and_record(
            runtime=runtime,
            type="model_compromise",
            asset="model-b",
            severity=Severity.SEV1,
            since=None,
            summary="output distribution shifted",
            actor="oncall",
        )
        ended = run_playbook(runtime=runtime, incident_id=incident_id)

        # The incident ended while the drill was still held mid-playbook: it did not wait.
        assert drilling.is_alive() and not drill.released.is_set()
    finally:
        drill.released.set()
        drilling.join(WAIT_S)
    assert not drilling.is_alive()

    # The incident recovered on the application's database and registry.
    assert str(ended.status) == "recovered", ended.reason
    assert ended.state == {"compromised": "v3", "selected": "v2"}
    assert production_in_db(runtime, "model-b") == "v2"
    assert production_on_disk(runtime, "model-b") == "v2"
    with runtime.db.read_session() as session:
        events = events_for_incident(session=session, incident_id=incident_id)
        assert verify_stored_chain(session).ok
    assert {e.asset for e in events} == {"model-b"}
    assert "alias.moved" in [e.action for e in events]
    assert incident_steps and all(on_app for _step, on_app in incident_steps), incident_steps

    # The drill passed on its sandbox, which never saw model-b's incident; production's model-a
    # was not touched.
    (run,) = finished
    assert run.status == "pass", run.reason
    assert drill.sandbox_assets == {"model-a"}
    assert drill.steps_on_sandbox and all(mine for _step, mine in drill.steps_on_sandbox)
    assert HELD_AT in {step for step, _mine in drill.steps_on_sandbox}
    assert production_in_db(runtime, "model-a") == "v3"
    assert production_on_disk(runtime, "model-a") == "v3"
    assert drill.sandbox_home is not None and runtime.settings.home in drill.sandbox_home.parents
