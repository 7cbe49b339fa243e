"""``assets sweep``: verify everything, open one incident of the right type per failing asset.

The core runs in-process (as a scheduler would call it); one CLI test covers exit codes,
``--json`` and ``--run`` end to end.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shlex
from pathlib import Path
from typing import Any

import pytest
from scenarios import add_version, build_scenario, production_in_db, tamper_version
from sqlmodel import col, select

from rearguard.flows.run_playbook import run_playbook
from rearguard.models.assets.versions import get_asset, get_version
from rearguard.models.audit.chain import events_for_incident
from rearguard.models.db.tables import Incident
from rearguard.models.integrity.scan.policy import ScanPolicy
from rearguard.models.integrity.sweep import plan_sweep, run_sweep
from rearguard.models.runtime import Runtime


def malicious_pickle(sentinel: Path) -> bytes:
    """A pickle that would create ``sentinel`` if anything ever loaded it."""

    class Payload:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return (os.system, (f"touch {shlex.quote(str(sentinel))}",))

    return pickle.dumps({"vocab": ["a"], "hook": Payload()}, protocol=4)


def sweep(runtime: Runtime, *, open_incidents: bool = True):  # type: ignore[no-untyped-def]
    return run_sweep(
        runtime=runtime,
        plan=plan_sweep(runtime=runtime),
        open_incidents=open_incidents,
        actor="scheduler",
    )


def incidents(runtime: Runtime) -> list[Incident]:
    with runtime.db.read_session() as session:
        return list(session.exec(select(Incident).order_by(col(Incident.id))))


@pytest.mark.usefixtures("prefect_api_url")
def test_sweep_opens_one_incident_of_the_right_type_per_asset_and_attaches_later(
    runtime: Runtime, tmp_path: Path
) -> None:
    build_scenario(runtime, tmp_path, asset="support-prompt", kind="prompt", tampered=True)
    build_scenario(runtime, tmp_path, asset="clean-model")
    sentinel = tmp_path / "PWNED"
    evil = malicious_pickle(sentinel)
    build_scenario(runtime, tmp_path, asset="tokenizer", approved=("v1",), production="v1")
    # Registered before the scanner knew this construct: nothing blocked it then.
    unaware = ScanPolicy(block=frozenset())
    add_version(runtime, tmp_path, "tokenizer", "v4", files={"tok.pkl": evil}, policy=unaware)

    first = sweep(runtime)

    assert not first.ok
    assert len(first.checks) == 10
    by_asset = {f.asset: f for f in first.findings}
    assert sorted(by_asset) == ["support-prompt", "tokenizer"]
    prompt = by_asset["support-prompt"]
    assert (prompt.incident_type, prompt.action, prompt.production_affected) == (
        "prompt_tampering",
        "opened",
        True,
    )
    assert prompt.runnable
    assert [v["version"] for v in prompt.versions] == ["v3"]
    pickled = by_asset["tokenizer"]
    assert pickled.incident_type == "supply_chain"
    assert pickled.production_affected is False
    (version,) = pickled.versions
    assert version["version"] == "v4" and version["dangerous_pickle"] is True
    digest = hashlib.sha256(evil).hexdigest()
    assert version["dangerous_files"] == [{"path": "tok.pkl", "sha256": digest}]
    assert pickled.action == "opened" and pickled.runnable
    assert not sentinel.exists(), "the pickle was loaded"

    opened = incidents(runtime)
    (prompt_incident,) = [i for i in opened if i.asset_name == "support-prompt"]
    assert prompt_incident.type == "prompt_tampering"
    assert str(prompt_incident.source) == "sweep"
    assert prompt_incident.dedup_key == "sweep:support-prompt"
    assert prompt_incident.state == {"compromised": "v3"}
    assert str(prompt_incident.severity) == "sev1"
    assert "system.txt: sha256 mismatch" in prompt_incident.summary
    (supply,) = [i for i in opened if i.asset_name == "tokenizer"]
    assert supply.type == "supply_chain" and supply.state["digest"] == digest
    assert str(supply.severity) == "sev2"  # production (v1) does not hold the file

    second = sweep(runtime)

    assert {f.asset: f.action for f in second.findings}["support-prompt"] == "attached"
    assert [i.id for i in incidents(runtime)] == [i.id for i in opened]
    with runtime.db.read_session() as session:
        events = events_for_incident(session=session, incident_id=prompt_incident.id or 0)
    found = [json.loads(e.data) for e in events if e.action == "sweep.found"]
    assert len(found) == 2
    assert found[1]["versions"][0]["version"] == "v3"
    assert production_in_db(runtime, "support-prompt") == "v3"  # a sweep alone moves nothing

    # Its playbook quarantines every version holding the file; production never held it.
    ran = run_playbook(runtime=runtime, incident_id=supply.id or 0)
    assert str(ran.status) == "recovered", ran.reason
    assert production_in_db(runtime, "tokenizer") == "v1"
    with runtime.db.read_session() as session:
        tokenizer = get_asset(session=session, name="tokenizer")
        assert str(get_version(session=session, asset=tokenizer, label="v4").status) == (
            "quarantined"
        )
    assert "tokenizer" not in {f.asset for f in sweep(runtime).findings}  # now known-bad
    assert not sentinel.exists(), "the pickle was loaded"


def test_sweep_without_open_incidents_only_reports(runtime: Runtime, tmp_path: Path) -> None:
    build_scenario(runtime, tmp_path, asset="model-b", tampered=True)

    report = sweep(runtime, open_incidents=False)

    (finding,) = report.findings
    assert (finding.incident_type, finding.action, finding.incident_id) == (
        "model_compromise",
        "reported",
        None,
    )
    assert incidents(runtime) == []


def test_cli_sweep_exit_codes_json_and_run(  # type: ignore[no-untyped-def]
    cli, runtime: Runtime, tmp_path: Path
) -> None:
    build_scenario(runtime, tmp_path, asset="guard-config", kind="config")

    clean = cli("assets", "sweep", "--open-incidents")
    assert clean.returncode == 0, clean.stderr
    assert "ok 3 version(s) verified" in clean.stdout

    target = runtime.registry.version_location(asset="guard-config", label="v3") / "serving.json"
    target.chmod(0o644)
    target.write_text('{"asset": "guard-config", "release": "v3", "moderation": false}')
    target.chmod(0o444)

    ran = cli("assets", "sweep", "--run", "--json")
    assert ran.returncode == 3, ran.stderr
    assert "Traceback" not in ran.stderr
    report = json.loads(ran.stdout)
    assert report["ok"] is False and report["versions_failed"] == 1
    (finding,) = report["findings"]
    assert finding["incident_type"] == "config_tampering" and finding["action"] == "opened"
    assert report["runs"] == [{"incident": finding["incident"], "status": "recovered", "ran": True}]
    assert production_in_db(runtime, "guard-config") == "v2"

    # The tampered version is now quarantined: known, not a new failure.
    after = cli("assets", "sweep", "--json")
    assert after.returncode == 0, after.stderr
    report = json.loads(after.stdout)
    assert report["ok"] is True
    assert [(k["asset"], k["version"], k["status"]) for k in report["known"]] == [
        ("guard-config", "v3", "quarantined")
    ]
    human = cli("incident", "show", str(finding["incident"]))
    assert "what the tampering changed (v2 restored, v3 as found):" in human.stdout
    assert "sweep.found" in human.stdout
    shown = json.loads(cli("incident", "show", str(finding["incident"]), "--json").stdout)
    diff = [e for e in shown["timeline"] if e["action"] == "record_diff" and e["kind"] == "outcome"]
    assert (
        '+{"asset": "guard-config", "release": "v3", "moderation": false}'
        in (diff[0]["data"]["result"]["diff"])
    )


def test_sweep_run_after_open_incidents_runs_the_open_incident(  # type: ignore[no-untyped-def]
    cli, runtime: Runtime, tmp_path: Path
) -> None:
    """The README's order: `sweep --open-incidents`, then `sweep --run`."""
    build_scenario(runtime, tmp_path, tampered=True)

    opened = cli("assets", "sweep", "--open-incidents", "--json")
    assert opened.returncode == 3
    (finding,) = json.loads(opened.stdout)["findings"]
    assert finding["action"] == "opened"
    assert production_in_db(runtime, "model-a") == "v3"

    ran = cli("assets", "sweep", "--run")

    assert ran.returncode == 3, ran.stderr
    assert f"running the model_compromise playbook of incident {finding['incident']}" in ran.stderr
    assert f"incident {finding['incident']}: recovered" in ran.stdout
    assert production_in_db(runtime, "model-a") == "v2"
    # The same incident, now recovered: a third sweep finds v3 quarantined, nothing to run.
    again = cli("assets", "sweep", "--run", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["runs"] == []
    listed = json.loads(cli("incident", "list", "--json").stdout)
    assert [i["id"] for i in listed] == [finding["incident"]]


def test_sweep_run_reruns_a_recovered_incident_whose_production_fails_again(  # type: ignore[no-untyped-def]
    cli, runtime: Runtime, tmp_path: Path
) -> None:
    build_scenario(runtime, tmp_path, tampered=True)
    first = cli("incident", "open", "--type", "model_compromise", "--asset", "model-a")
    assert first.returncode == 0, first.stderr
    # v2, restored, is tampered with too: the sweep attaches to the recovered incident.
    tamper_version(runtime, "model-a", "v2")

    ran = cli("assets", "sweep", "--run", "--json")

    assert ran.returncode == 3
    report = json.loads(ran.stdout)
    (finding,) = report["findings"]
    assert (finding["action"], finding["incident"]) == ("attached", 1)
    assert report["runs"] == [{"incident": 1, "status": "recovered", "ran": True}]
    assert production_in_db(runtime, "model-a") == "v1"
    assert [i["id"] for i in json.loads(cli("incident", "list", "--json").stdout)] == [1]
