"""``GET /metrics`` on the intake: behind the token, and saying what happened.

The scrape is parsed with prometheus-client's own parser of the text format, as Prometheus
reads it; the values asserted are what an operator's dashboard would show after an incident
came in through the intake, its playbook recovered it and a person resolved it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient
from intake_helpers import AUTH, TOKEN, intake_settings, native
from prometheus_client.parser import text_string_to_metric_families
from scenarios import build_scenario, ended_run, weekly_drill
from sqlmodel import col, select

from rearguard.flows.cli.serve import check_exposure
from rearguard.flows.intake.app import create_app
from rearguard.flows.run_playbook import run_playbook
from rearguard.models.config.intake import IntakeSettings
from rearguard.models.db.revisions import MIGRATIONS_DIR
from rearguard.models.db.tables import ChainHead, Incident, MetricCounter
from rearguard.models.drills.service import record_missed, start_run
from rearguard.models.enums import IncidentStatus
from rearguard.models.errors import ConfigurationError
from rearguard.models.incidents.resolution import resolve_incident
from rearguard.models.incidents.service import set_incident_status
from rearguard.models.runtime import Runtime
from rearguard.notifications.dispatcher import Dispatcher
from rearguard.notifications.notify import notify

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient) -> Samples:
    """Every sample of a scrape, by name and labels."""
    answer = client.get("/metrics", headers=AUTH)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@pytest.fixture
def client(runtime: Runtime, tmp_path: Path) -> Iterator[TestClient]:
    """The intake in process (no playbook process), on model-a with a tampered production."""
    build_scenario(runtime, tmp_path, tampered=True)
    with TestClient(create_app(runtime, intake=intake_settings(), run_playbooks=False)) as c:
        yield c


def test_a_scrape_needs_a_read_token_unless_the_metrics_are_public(
    runtime: Runtime, client: TestClient
) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 403
    assert client.get("/metrics", headers=AUTH).status_code == 200
    writer = IntakeSettings(tokens=[f"write:{TOKEN}"])
    with TestClient(create_app(runtime, intake=writer, run_playbooks=False)) as only_writes:
        assert only_writes.get("/metrics", headers=AUTH).status_code == 403
    public = intake_settings(metrics_public=True)
    with TestClient(create_app(runtime, intake=public, run_playbooks=False)) as open_client:
        assert open_client.get("/metrics").status_code == 200
        assert open_client.get("/v1/incidents").status_code == 401  # the rest stays guarded
    with pytest.raises(ConfigurationError, match="not loopback"):
        check_exposure(intake_settings(metrics_public=True, host="0.0.0.0"))


@pytest.mark.usefixtures("prefect_api_url")
def test_a_scrape_tells_an_incident_from_alert_to_resolution(
    runtime: Runtime, client: TestClient
) -> None:
    opened = client.post("/v1/incidents", json=native("model-a"), headers=AUTH)
    assert opened.json()["action"] == "opened"
    again = client.post("/v1/incidents", json=native("model-a"), headers=AUTH)
    assert again.json()["action"] == "attached"
    refused = client.post("/v1/incidents", json=native("no-such-model"), headers=AUTH)
    assert refused.status_code == 422
    incident_id = opened.json()["incident_id"]
    before = scrape(client)

    assert run_playbook(runtime=runtime, incident_id=incident_id).status == "recovered"
    after = scrape(client)

    of_it = {"type": "model_compromise", "severity": "sev2", "source": "alert"}
    assert value(before, "rearguard_incidents_opened_total", **of_it) == 1
    assert value(before, "rearguard_incidents_unresolved", status="open") == 1
    for action, result in (("opened", "accepted"), ("attached", "deduplicated")):
        assert value(before, "rearguard_intake_alerts_total", action=action, result=result) == 1
    assert value(before, "rearguard_intake_alerts_total", action="rejected", result="rejected") == 1
    assert value(before, "rearguard_incidents_ended_total", **of_it, outcome="recovered") is None

    assert value(after, "rearguard_incidents_ended_total", **of_it, outcome="recovered") == 1
    assert value(after, "rearguard_incidents_unresolved", status="recovered") == 1
    assert value(after, "rearguard_incidents_unresolved", status="open") == 0
    response = {"type": "model_compromise"}
    for histogram in ("rearguard_time_to_contain_seconds", "rearguard_time_to_recover_seconds"):
        assert value(after, f"{histogram}_count", **response) == 1
        assert value(after, f"{histogram}_bucket", **response, le="+Inf") == 1
        assert (value(after, f"{histogram}_sum", **response) or 0) > 0
    contained = value(after, "rearguard_time_to_contain_seconds_sum", **response) or 0
    assert contained <= (value(after, "rearguard_time_to_recover_seconds_sum", **response) or 0)
    steps = {"type": "model_compromise", "step": "rollback"}
    assert value(after, "rearguard_playbook_step_duration_seconds_count", **steps) == 1
    assert not any(name == "rearguard_playbook_step_failures_total" for name, _ in after)
    # The file channel told of opened, contained and recovered; nothing is waiting.
    assert value(after, "rearguard_outbox_delivered_total", channel="file") == 3
    # A channel's failed series is there, at 0, from its first queued notification: the
    # failing-notifications rule (increase over an hour) can see its first failure.
    assert value(after, "rearguard_outbox_failed_total", channel="file") == 0
    assert not any(name == "rearguard_outbox_pending" for name, _ in after)
    assert value(after, "rearguard_approvals_pending") == 0
    with runtime.db.read_session() as session:
        head = session.exec(select(ChainHead)).one().seq
    assert value(after, "rearguard_audit_chain_head_seq") == head

    with runtime.db.session() as session:
        resolve_incident(session=session, incident_id=incident_id, actor="alice")
    resolved = scrape(client)

    assert value(resolved, "rearguard_incidents_resolved_total", **of_it) == 1
    assert value(resolved, "rearguard_incidents_unresolved", status="recovered") == 0
    assert value(resolved, "rearguard_incidents_opened_total", **of_it) == 1


def test_a_scrape_tells_each_drills_runs_margin_and_last_pass(
    runtime: Runtime, client: TestClient
) -> None:
    with runtime.db.session() as session:
        drill = weekly_drill(session)
        passed_at = ended_run(session, drill, status="pass", recovery_s=12.5).finished_at
        record_missed(
            session=session,
            drill=drill,
            missed=[datetime(2026, 1, 5, 9, tzinfo=UTC)],
            count=1,
            why="the scheduler was down",
        )
        start_run(session=session, drill=drill, trigger="manual", incident_id=None)  # running

    samples = scrape(client)

    assert value(samples, "rearguard_drill_runs_total", drill="weekly", result="pass") == 1
    assert value(samples, "rearguard_drill_runs_total", drill="weekly", result="missed") == 1
    assert value(samples, "rearguard_drill_runs_total", drill="weekly", result="fail") == 0
    assert value(samples, "rearguard_drill_runs_total", drill="weekly", result="running") is None
    assert value(samples, "rearguard_drill_rto_margin_seconds", drill="weekly") == 287.5
    assert passed_at is not None
    assert value(samples, "rearguard_drill_last_pass_timestamp_seconds", drill="weekly") == (
        pytest.approx(passed_at.timestamp())
    )


def test_upgrading_a_database_seeds_the_counters_from_its_rows(
    runtime: Runtime, client: TestClient
) -> None:
    for asset in ("model-a", "model-a", "no-such-model"):
        client.post("/v1/incidents", json=native(asset), headers=AUTH)
    with runtime.db.session() as session:
        incident = session.get(Incident, 1)
        assert incident is not None
        set_incident_status(
            session=session, incident=incident, status=IncidentStatus.FAILED, actor="test"
        )
        resolve_incident(session=session, incident_id=1, actor="alice", note="by hand")
    notify(runtime=runtime, incident_id=1, event="opened")
    with Dispatcher(settings=runtime.settings, db=runtime.db) as dispatcher:
        dispatcher.drain(wait_s=5)
    seeded = ("incidents_opened", "incidents_resolved", "outbox_delivered", "intake_alerts")
    counted = stored_counters(runtime, seeded)
    assert len(counted) == 7  # opened, resolved, console, file, three alert outcomes

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = runtime.db.engine
    command.downgrade(config, "0008_version_scan")
    command.upgrade(config, "head")

    assert stored_counters(runtime, seeded) == counted


def stored_counters(runtime: Runtime, names: tuple[str, ...]) -> dict[tuple[str, str], float]:
    with runtime.db.read_session() as session:
        rows = session.exec(select(MetricCounter).where(col(MetricCounter.name).in_(names)))
        return {(r.name, r.labels): r.value for r in rows}
