"""The drill scheduler: APScheduler with its jobs in the application database.

A real BackgroundScheduler fires a drill every second; a scheduler stopped and started again
on the same database finds its jobs; a drill whose fire times passed while no scheduler ran
is recorded as missed, never skipped in silence.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from scenarios import build_scenario, production_in_db
from sqlalchemy import text
from sqlmodel import select

from rearguard.flows.drills.scheduler import JOBS_TABLE, DrillScheduler
from rearguard.models.config.drills import SchedulerSettings
from rearguard.models.db.tables import TimelineEvent
from rearguard.models.drills.service import add_drill, get_drill, list_runs, remove_drill
from rearguard.models.incidents.service import list_incidents
from rearguard.models.runtime import Runtime


def schedule(runtime: Runtime, cron: str, name: str = "drill-a") -> None:
    with runtime.db.session() as session:
        add_drill(
            session=session,
            name=name,
            playbook="model_compromise",
            asset="model-a",
            cron=cron,
            timezone="UTC",
            rto_s=None,
            actor="test",
        )


def with_grace(runtime: Runtime, seconds: float) -> Runtime:
    settings = replace(runtime.settings, scheduler=SchedulerSettings(misfire_grace_s=seconds))
    return Runtime(settings=settings, db=runtime.db, registry=runtime.registry)


def stored_jobs(runtime: Runtime) -> dict[str, dict]:
    with runtime.db.transaction() as connection:
        rows = connection.execute(text(f"SELECT id, job_state FROM {JOBS_TABLE}")).all()
    return {row.id: json.loads(row.job_state) for row in rows}


def test_a_drill_fires_from_the_running_scheduler(
    runtime: Runtime, tmp_path: Path, prefect_api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The scheduler's threads read Prefect's settings from the environment, as the CLI does.
    monkeypatch.setenv("PREFECT_API_URL", prefect_api_url)
    build_scenario(runtime, tmp_path)
    schedule(runtime, "* * * * * *")  # every second (a seconds field first)
    scheduler = DrillScheduler(runtime)
    scheduler.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with runtime.db.read_session() as session:
                done = [r for r in list_runs(session=session) if r.status in ("pass", "fail")]
            if done:
                break
            time.sleep(0.2)
    finally:
        scheduler.shutdown(wait=True)
    assert done, "no drill ran within 60 s"
    assert done[0].trigger == "schedule"
    assert done[0].status == "pass", done[0].reason


def test_jobs_survive_a_restart_of_the_scheduler(runtime: Runtime, tmp_path: Path) -> None:
    build_scenario(runtime, tmp_path)
    schedule(runtime, "0 9 * * MON")
    first = DrillScheduler(runtime)
    first.start()
    first.shutdown()
    (job,) = stored_jobs(runtime).values()
    assert job["func"] == "rearguard.flows.drills.scheduler:run_scheduled_drill"
    assert job["args"] == ["drill-a"]
    fields = job["trigger"]["fields"]
    assert (fields["minute"], fields["hour"], fields["day_of_week"]) == ("0", "9", "mon")
    assert job["trigger"]["timezone"] == "UTC"
    assert datetime.fromisoformat(job["next_run_time"]).weekday() == 0

    second = DrillScheduler(runtime)
    second.start()
    try:
        (restored,) = second.scheduler.get_jobs(jobstore="default")
        assert restored.id == "drill:drill-a"
        assert restored.next_run_time == datetime.fromisoformat(job["next_run_time"])
        # Drills added or removed while it runs reach it at its next sync.
        schedule(runtime, "30 6 * * *", name="drill-b")
        with runtime.db.session() as session:
            remove_drill(session=session, name="drill-a", actor="test")
        second.sync()
        assert [j.id for j in second.scheduler.get_jobs(jobstore="default")] == ["drill:drill-b"]
    finally:
        second.shutdown()
    assert list(stored_jobs(runtime)) == ["drill:drill-b"]


def test_runs_missed_while_no_scheduler_ran_are_recorded(runtime: Runtime, tmp_path: Path) -> None:
    build_scenario(runtime, tmp_path)
    schedule(runtime, "0 0 * * *")  # daily at midnight UTC
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    with runtime.db.session() as session:
        drill = get_drill(session=session, name="drill-a")
        drill.created_at = midnight - timedelta(days=3)  # three midnights ago, then 3 more
        session.add(drill)
    scheduler = DrillScheduler(with_grace(runtime, 60))
    found = scheduler.start()
    scheduler.shutdown()

    assert found["missed"] == 1
    with runtime.db.read_session() as session:
        (missed,) = list_runs(session=session)
        (event,) = session.exec(
            select(TimelineEvent).where(TimelineEvent.action == "drill.missed")
        ).all()
    assert missed.status == "missed"
    assert missed.reason and missed.reason.startswith("missed 3 scheduled run(s) between")
    assert missed.reason.endswith("no scheduler was running")
    assert json.loads(event.data)["count"] == 3
    # Accounted for: a second start finds nothing more missed.
    again = DrillScheduler(runtime)
    assert again.start()["missed"] == 0
    again.shutdown()


def test_the_scheduler_runs_the_sweep_and_its_playbook(
    runtime: Runtime, tmp_path: Path, prefect_api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", prefect_api_url)
    build_scenario(runtime, tmp_path, tampered=True)
    settings = replace(
        runtime.settings, scheduler=SchedulerSettings(sweep_cron="* * * * * *", poll_s=60)
    )
    scheduler = DrillScheduler(Runtime(settings=settings, db=runtime.db, registry=runtime.registry))
    scheduler.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with runtime.db.read_session() as session:
                found = list_incidents(session=session)
            if found and str(found[0].status) in ("recovered", "failed"):
                break
            time.sleep(0.2)
    finally:
        scheduler.shutdown(wait=True)
    (incident,) = found
    assert (str(incident.source), str(incident.status)) == ("sweep", "recovered")
    assert production_in_db(runtime, "model-a") == "v2"
