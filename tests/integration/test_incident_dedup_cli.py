"""One incident per asset and type: a second `incident open` attaches, it never reruns the playbook.

The scenario is the README's: v1 and v2 approved, v3 in production and tampered. The first
open rolls production back to v2; every later open of the same type on the same asset, in a
row or at the same moment, must leave v2 trusted and in production.
"""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from scenarios import build_scenario, production_on_disk

from rearguard.models.assets.versions import get_asset, get_version
from rearguard.models.audit.chain import events_for_incident
from rearguard.models.runtime import Runtime

Result = subprocess.CompletedProcess[str]
OPEN = ("incident", "open", "--type", "model_compromise", "--asset", "model-a")


def status_of(runtime: Runtime, label: str) -> str:
    with runtime.db.read_session() as session:
        asset = get_asset(session=session, name="model-a")
        return str(get_version(session=session, asset=asset, label=label).status)


def actions(runtime: Runtime, incident_id: int) -> list[str]:
    with runtime.db.read_session() as session:
        return [e.action for e in events_for_incident(session=session, incident_id=incident_id)]


def incidents(cli) -> list[dict]:  # type: ignore[no-untyped-def]
    return json.loads(cli("incident", "list", "--json").stdout)


def test_a_second_open_attaches_to_the_first_and_trust_is_kept(
    cli, runtime: Runtime, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    build_scenario(runtime, tmp_path, tampered=True)

    first = cli(*OPEN, "--summary", "drift alarm")
    assert first.returncode == 0, first.stderr
    second = cli(*OPEN, "--summary", "second responder")

    assert second.returncode == 0, second.stderr
    assert "incident 1 (model_compromise on model-a) is already recovered" in second.stdout
    assert "rearguard incident show 1" in second.stdout
    assert "running its playbook" not in second.stderr
    assert [i["id"] for i in incidents(cli)] == [1]
    assert actions(runtime, 1).count("rollback") == 2  # one intent, one outcome: one run
    assert actions(runtime, 1)[-1] == "incident.attached"
    assert production_on_disk(runtime, "model-a") == "v2"
    assert (status_of(runtime, "v2"), status_of(runtime, "v3")) == ("known_good", "quarantined")
    attached = json.loads(cli(*OPEN, "--json").stdout)
    assert attached == {"attached": True, "id": 1, "status": "recovered"}


def test_new_opens_another_which_leaves_the_version_just_restored_alone(
    cli, runtime: Runtime, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    build_scenario(runtime, tmp_path, tampered=True)
    assert cli(*OPEN).returncode == 0

    again = cli(*OPEN, "--new")

    assert again.returncode == 0, again.stdout + again.stderr
    assert "incident 2: recovered; model-a production -> v2" in again.stdout
    assert production_on_disk(runtime, "model-a") == "v2"
    assert [status_of(runtime, v) for v in ("v1", "v2")] == ["known_good", "known_good"]
    shown = json.loads(cli("incident", "show", "2", "--json").stdout)
    (quarantined,) = [
        e["data"]["result"]
        for e in shown["timeline"]
        if e["action"] == "quarantine" and e["kind"] == "outcome"
    ]
    assert "v2 (approved by alice) was restored by incident 1" in quarantined["skipped"]


def test_new_still_quarantines_a_restored_version_whose_bytes_changed(
    cli, runtime: Runtime, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from scenarios import tamper_version

    build_scenario(runtime, tmp_path, tampered=True)
    assert cli(*OPEN).returncode == 0
    tamper_version(runtime, "model-a", "v2")

    again = cli(*OPEN, "--new")

    assert again.returncode == 0, again.stdout + again.stderr
    assert status_of(runtime, "v2") == "quarantined"
    assert production_on_disk(runtime, "model-a") == "v1"


def test_two_responders_at_once_get_one_incident_and_one_run(
    cli, runtime: Runtime, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    build_scenario(runtime, tmp_path, tampered=True)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results: list[Result] = list(pool.map(lambda who: cli(*OPEN, "--by", who), ["ann", "bo"]))

    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert sum("already" in r.stdout and "attached" in r.stdout for r in results) == 1
    assert [i["id"] for i in incidents(cli)] == [1]
    timeline = actions(runtime, 1)
    assert timeline.count("quarantine") == 2 and timeline.count("rollback") == 2
    assert timeline.count("incident.attached") == 1
    assert production_on_disk(runtime, "model-a") == "v2"
    assert (status_of(runtime, "v2"), status_of(runtime, "v3")) == ("known_good", "quarantined")
