"""The intake end to end: events open incidents and run playbooks once, whatever the storm."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from intake_helpers import (
    AUTH,
    alert_events,
    am_alert,
    am_webhook,
    incidents,
    intake_settings,
    live_intake,
    native,
    post,
    storm_client,
    timeline_actions,
    wait_for,
)
from scenarios import build_scenario, production_in_db

from rearguard.models.config.settings import load_settings
from rearguard.models.enums import IncidentStatus
from rearguard.models.incidents.resolution import resolve_incident
from rearguard.models.incidents.service import get_incident, set_incident_status
from rearguard.models.runtime import Runtime


def _ended(runtime: Runtime, incident_id: int) -> bool:
    with runtime.db.read_session() as session:
        status = get_incident(session=session, incident_id=incident_id).status
    return status in (IncidentStatus.RECOVERED, IncidentStatus.FAILED)


def test_native_event_opens_an_incident_runs_its_playbook_and_emits_prefect_events(
    runtime: Runtime, tmp_path: Path, prefect_api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", prefect_api_url)
    # Incident ids restart with every test's database; the session's Prefect server keeps
    # the events of earlier tests' incidents of the same id.
    started = datetime.now(UTC).isoformat()
    build_scenario(runtime, tmp_path, tampered=True)
    with live_intake(runtime) as url:
        answer = post(f"{url}/v1/incidents", native("model-a", summary="hash mismatch"))
        assert answer.status_code == 202, answer.text
        assert answer.json()["action"] == "opened"
        incident_id = answer.json()["incident_id"]
        again = post(f"{url}/v1/incidents", native("model-a", dedup_key="other"))
        assert again.json() == {"incident_id": incident_id, "action": "attached", "results": []}
        wait_for(lambda: _ended(runtime, incident_id), what="the playbook to end")
        shown = httpx.get(f"{url}/v1/incidents/{incident_id}", headers=AUTH).json()
    assert shown["status"] == "recovered"
    assert production_in_db(runtime, "model-a") == "v2"
    actions = [e["action"] for e in shown["timeline"]]
    assert actions[:3] == ["incident.opened", "alert.opened", "alert.attached"]
    assert actions.count("quarantine") == 2  # one intent, one outcome: one playbook run
    assert shown["source"] == "alert"

    def emitted() -> list[str]:
        found = httpx.post(
            f"{prefect_api_url}/events/filter",
            json={
                "filter": {
                    "event": {"prefix": ["rearguard.incident."]},
                    "related": {"id": [f"rearguard.incident.{incident_id}"]},
                    "occurred": {"since": started},
                }
            },
        ).json()
        names = {e["event"] for e in found.get("events", [])}
        return sorted(names) if len(names) >= 3 else []

    names = wait_for(emitted, timeout=30, what="the Prefect events")
    assert names == [
        "rearguard.incident.contained",
        "rearguard.incident.opened",
        "rearguard.incident.recovered",
    ]


def test_the_intake_answers_once_its_playbook_process_has_run_a_warm_up_flow(
    runtime: Runtime, prefect_api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first alert's playbook must not pay for the first flow run's set-up: the intake
    starts answering only once the playbook process has run its no-op flow on Prefect."""
    monkeypatch.setenv("PREFECT_API_URL", prefect_api_url)
    started = datetime.now(UTC).isoformat()
    with live_intake(runtime) as url:
        assert httpx.get(f"{url}/healthz").status_code == 200
        runs = httpx.post(
            f"{prefect_api_url}/flow_runs/filter",
            json={
                "flows": {"name": {"any_": ["rearguard-warm-up"]}},
                "flow_runs": {"expected_start_time": {"after_": started}},
            },
        ).json()
    assert [run["state"]["type"] for run in runs] == ["COMPLETED"]


def test_alert_storm_over_five_assets_opens_five_incidents_and_runs_five_playbooks(
    runtime: Runtime, tmp_path: Path, prefect_api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", prefect_api_url)
    assets = [f"model-{i}" for i in range(5)]
    for asset in assets:
        build_scenario(runtime, tmp_path, asset=asset, tampered=True)
    with live_intake(runtime) as url, storm_client() as client:

        def send(i: int) -> httpx.Response:
            asset = assets[i % 5]
            if i % 2:
                body = am_webhook(am_alert(asset, fingerprint=f"fp-{i}", instance=str(i)))
                return client.post(f"{url}/v1/alerts/alertmanager", json=body)
            return client.post(f"{url}/v1/incidents", json=native(asset, dedup_key=f"k{i}"))

        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(pool.map(send, range(500)))
        assert {a.status_code for a in answers} == {202}
        found = incidents(runtime)
        assert sorted(i.asset_name for i in found) == assets
        for incident in found:
            wait_for(lambda i=incident: _ended(runtime, int(i.id)), what="playbooks")
        health = httpx.get(f"{url}/healthz").json()
    assert health["alerts"]["opened"] == 5
    assert health["alerts"]["attached"] == 495
    assert health["requests"]["accepted"] == 500
    for incident in incidents(runtime):
        actions = timeline_actions(runtime, int(incident.id))
        assert actions.count("alert.opened") == 1
        assert actions.count("alert.attached") == 99
        assert actions.count("quarantine") == 2  # one playbook run per asset
        assert incident.status == IncidentStatus.RECOVERED
    assert len(alert_events(runtime)) == 500


def test_two_intakes_on_one_database_open_one_incident_per_asset(
    runtime: Runtime, tmp_path: Path, database_url: str
) -> None:
    assets = [f"model-{i}" for i in range(4)]
    for asset in assets:
        build_scenario(runtime, tmp_path, asset=asset)
    # A second runtime: its own engine and connections, as a second process would have.
    other = Runtime.from_settings(
        load_settings(home=runtime.settings.home, database_url=database_url)
    )
    try:
        with (
            live_intake(runtime, run_playbooks=False) as first,
            live_intake(other, run_playbooks=False) as second,
            storm_client() as client,
        ):

            def send(i: int) -> int:
                url = (first, second)[i % 2]
                body = native(assets[(i // 2) % 4], dedup_key=f"k{i % 7}")
                return client.post(f"{url}/v1/incidents", json=body).status_code

            with ThreadPoolExecutor(max_workers=16) as pool:
                codes = list(pool.map(send, range(400)))
    finally:
        other.db.dispose()
    assert set(codes) == {202}
    found = incidents(runtime)
    assert sorted(i.asset_name for i in found) == assets
    events = alert_events(runtime)
    assert len(events) == 400
    assert sum(e["action"] == "alert.opened" for e in events) == 4


def test_a_resolved_incident_takes_new_alerts_only_within_the_window(
    runtime: Runtime, tmp_path: Path
) -> None:
    build_scenario(runtime, tmp_path)

    def resolve(incident_id: int) -> None:
        with runtime.db.session() as session:
            incident = get_incident(session=session, incident_id=incident_id)
            set_incident_status(
                session=session, incident=incident, status=IncidentStatus.FAILED, actor="t"
            )
            resolve_incident(session=session, incident_id=incident_id, actor="t", note="by hand")

    with live_intake(runtime, run_playbooks=False) as url:
        first = post(f"{url}/v1/incidents", native("model-a")).json()["incident_id"]
        resolve(first)
        reopened = post(f"{url}/v1/incidents", native("model-a")).json()
    assert reopened["action"] == "opened" and reopened["incident_id"] != first
    resolve(reopened["incident_id"])
    with live_intake(
        runtime, intake=intake_settings(dedup_window_s=3600), run_playbooks=False
    ) as url:
        late = post(f"{url}/v1/incidents", native("model-a")).json()
    assert late == {"incident_id": reopened["incident_id"], "action": "attached", "results": []}


def test_secrets_in_alerts_never_reach_the_timeline(runtime: Runtime, tmp_path: Path) -> None:
    build_scenario(runtime, tmp_path)
    secret = "xoxb-1234567890-abcdefghijklmnop"
    with live_intake(runtime, run_playbooks=False) as url:
        post(
            f"{url}/v1/incidents",
            native("model-a", summary=f"token {secret}", labels={"t": secret}),
        )
    with runtime.db.read_session() as session:
        from sqlalchemy import text

        stored = session.connection().execute(text("SELECT data FROM timeline_event")).fetchall()
    assert secret not in json.dumps([row[0] for row in stored])


def test_a_playbook_process_killed_mid_rollback_is_replaced_and_the_playbook_resumes(
    runtime: Runtime, tmp_path: Path, prefect_api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", prefect_api_url)
    build_scenario(runtime, tmp_path, tampered=True)
    # The playbook process inherits this environment: it stalls right after recording the
    # rollback's intent, and is killed there. Its replacement starts without the failpoint.
    monkeypatch.setenv("REARGUARD_FAILPOINTS", "rollback.after_intent=sleep:60")
    with live_intake(runtime) as url:
        answer = post(f"{url}/v1/incidents", native("model-a"))
        incident_id = answer.json()["incident_id"]
        wait_for(
            lambda: "rollback" in timeline_actions(runtime, incident_id),
            what="the rollback's intent",
        )
        monkeypatch.delenv("REARGUARD_FAILPOINTS")
        (child,) = [p for p in multiprocessing.active_children() if p.name == "rearguard-playbooks"]
        os.kill(child.pid, signal.SIGKILL)

        def finished() -> dict[str, int] | None:
            playbooks = httpx.get(f"{url}/healthz", timeout=30).json()["playbooks"]
            return playbooks if playbooks["finished"] + playbooks["errors"] else None

        playbooks = wait_for(finished, timeout=120, what="the resumed playbook")
    assert playbooks == {"started": 2, "finished": 1, "errors": 0, "restarts": 1}
    with runtime.db.read_session() as session:
        assert get_incident(session=session, incident_id=incident_id).status == "recovered"
    assert production_in_db(runtime, "model-a") == "v2"
    # The killed run's intent has no outcome; the resumed run's has one: one rollback.
    assert timeline_actions(runtime, incident_id).count("rollback") == 3
