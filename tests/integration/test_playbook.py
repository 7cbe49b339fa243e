"""The model-compromise playbook, run in-process under the session's real Prefect server.

Each test builds an asset with versions v1, v2 (approved known-good) and v3 (in production),
tampers with what the scenario needs, opens an incident the way the CLI does and runs the real
async flow through ``run_playbook``. What is asserted is what an operator would see: where
production points (in the database and on disk), version statuses, the evidence kept, the
incident's status and reason, and the timeline.
"""

from __future__ import annotations

import json
import os
import pickle
import shlex
import stat
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from scenarios import (
    ALIAS,
    add_version,
    approve,
    build_scenario,
    catalog_steps,
    default_files,
    production_in_db,
    promote,
    stored_file,
    tamper,
    tamper_version,
)
from scenarios import (
    MODEL_COMPROMISE_STEPS as STEPS,
)

from rearguard.flows.opening import open_and_record
from rearguard.flows.run_playbook import run_playbook
from rearguard.models.assets.versions import (
    get_asset,
    get_version,
)
from rearguard.models.audit.chain import events_for_incident, verify_stored_chain
from rearguard.models.db.tables import Incident, TimelineEvent
from rearguard.models.enums import Severity
from rearguard.models.runtime import Runtime
from rearguard.playbooks.catalog import CATALOG

# -- scenario helpers -------------------------------------------------------------------------


def replace_stored(path: Path, content: bytes) -> None:
    """Replace a stored file's whole content."""
    path.chmod(0o644)
    path.write_bytes(content)
    path.chmod(0o444)


def open_compromise(runtime: Runtime, asset: str, *, since: str | None = None) -> int:
    """Open a model_compromise incident the way ``rearguard incident open`` does."""
    return open_and_record(
        runtime=runtime,
        type="model_compromise",
        asset=asset,
        severity=Severity.SEV1,
        since=since,
        summary="output distribution shifted",
        actor="oncall",
    )


def respond(runtime: Runtime, asset: str = "model-a", *, since: str | None = None) -> Incident:
    """Open an incident and run its playbook to the end."""
    return run_playbook(runtime=runtime, incident_id=open_compromise(runtime, asset, since=since))


def alias_version_label(runtime: Runtime, asset: str) -> str | None:
    """Where the production alias points: the database and the symlink must agree."""
    in_db = production_in_db(runtime, asset)
    assert runtime.registry.read_alias(asset=asset, alias=ALIAS) == in_db
    return in_db


def statuses(runtime: Runtime, asset: str) -> dict[str, str]:
    """Each version's status."""
    with runtime.db.read_session() as session:
        found = get_asset(session=session, name=asset)
        return {
            label: str(get_version(session=session, asset=found, label=label).status)
            for label in ("v1", "v2", "v3")
        }


def status_reason(runtime: Runtime, asset: str, label: str) -> str:
    """Why a version has its status."""
    with runtime.db.read_session() as session:
        found = get_asset(session=session, name=asset)
        return get_version(session=session, asset=found, label=label).status_reason or ""


def timeline(runtime: Runtime, incident_id: int) -> list[TimelineEvent]:
    """The incident's events, in order."""
    with runtime.db.read_session() as session:
        return events_for_incident(session=session, incident_id=incident_id)


def step_events(events: list[TimelineEvent]) -> list[tuple[str, str]]:
    """(kind, step) of every intent and outcome event, in order."""
    return [(e.kind, e.action) for e in events if e.kind in ("intent", "outcome")]


def outcome(events: list[TimelineEvent], step: str) -> dict[str, Any]:
    """The data of a step's (only) outcome event."""
    (found,) = [e for e in events if e.kind == "outcome" and e.action == step]
    return json.loads(found.data)


def assert_chain_verifies(runtime: Runtime) -> None:
    """The whole audit chain recomputes."""
    with runtime.db.read_session() as session:
        report = verify_stored_chain(session)
    assert report.ok, report.problem
    assert report.events > 0


# -- tests ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("prefect_api_url")
@pytest.mark.parametrize("kind", ["model", "prompt", "config"])
def test_tampered_production_is_quarantined_and_rolled_back(
    runtime: Runtime, tmp_path: Path, kind: str
) -> None:
    build_scenario(runtime, tmp_path, kind=kind)
    (relative,) = default_files(kind, "model-a", "v3")
    tampered = stored_file(runtime, "model-a", "v3", relative)
    tamper(tampered)
    as_found = tampered.read_bytes()

    incident = respond(runtime)

    assert str(incident.status) == "recovered"
    assert incident.reason is None
    assert incident.state == {"compromised": "v3", "selected": "v2"}
    assert alias_version_label(runtime, "model-a") == "v2"
    served = runtime.registry.alias_location(asset="model-a", alias=ALIAS) / relative
    assert served.read_bytes() == default_files(kind, "model-a", "v2")[relative]
    assert statuses(runtime, "model-a") == {
        "v1": "known_good",
        "v2": "known_good",
        "v3": "quarantined",
    }

    evidence = tmp_path / "home" / "evidence" / f"incident-{incident.id}" / "model-a" / "v3"
    record = json.loads((evidence / "evidence.json").read_text())
    assert record["asset"] == "model-a" and record["version"] == "v3"
    (entry,) = record["files"]
    assert entry["path"] == relative and entry["matches"] is False
    assert entry["sha256_as_found"] != entry["sha256_recorded"]
    kept = evidence / "files" / relative
    assert kept.read_bytes() == as_found
    assert not kept.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    # Quarantine keeps the content: the stored v3 is still there, as found.
    assert tampered.read_bytes() == as_found

    events = timeline(runtime, incident.id)
    assert step_events(events) == [
        (kind_, step) for step in STEPS for kind_ in ("intent", "outcome")
    ]
    assert all(json.loads(e.data)["ok"] for e in events if e.kind == "outcome")
    actions = [e.action for e in events]
    assert actions[0] == "incident.opened"
    rollback_intent = actions.index("rollback")
    assert actions[rollback_intent + 1] == "alias.moved"
    moved = [json.loads(e.data) for e in events if e.action == "alias.moved"]
    assert moved == [{"alias": ALIAS, "from": "v3", "to": "v2"}]
    quarantined = [e for e in events if e.action == "version.quarantined"]
    assert [e.version for e in quarantined] == ["v3"]
    assert "incident.recovered" in actions
    assert outcome(events, "quarantine")["result"]["altered_files"] == [relative]
    assert catalog_steps(runtime, incident.id) == list(CATALOG["model_compromise"].steps)
    assert_chain_verifies(runtime)


@pytest.mark.usefixtures("prefect_api_url")
def test_several_tampered_versions_roll_back_to_the_oldest_intact(
    runtime: Runtime, tmp_path: Path
) -> None:
    build_scenario(runtime, tmp_path)
    tamper_version(runtime, "model-a", "v3")
    tamper_version(runtime, "model-a", "v2")

    incident = respond(runtime)

    assert str(incident.status) == "recovered"
    assert alias_version_label(runtime, "model-a") == "v1"
    assert statuses(runtime, "model-a") == {
        "v1": "known_good",
        "v2": "suspect",
        "v3": "quarantined",
    }
    assert "weights.bin: sha256 mismatch" in status_reason(runtime, "model-a", "v2")
    events = timeline(runtime, incident.id)
    assert outcome(events, "verify_integrity")["result"]["failed"] == ["v2"]
    suspect = [e for e in events if e.action == "version.suspect"]
    assert [e.version for e in suspect] == ["v2"]
    assert outcome(events, "rollback")["result"] == {"alias": ALIAS, "from": "v3", "to": "v1"}
    assert_chain_verifies(runtime)


@pytest.mark.usefixtures("prefect_api_url")
def test_known_good_registered_after_since_is_skipped(runtime: Runtime, tmp_path: Path) -> None:
    add_version(runtime, tmp_path, "model-a", "v1")
    approve(runtime, "model-a", "v1")
    since = datetime.now(UTC).isoformat()
    for label in ("v2", "v3"):
        add_version(runtime, tmp_path, "model-a", label)
    approve(runtime, "model-a", "v2")
    promote(runtime, "model-a", "v3")
    tamper_version(runtime, "model-a", "v3")

    incident = respond(runtime, since=since)

    assert str(incident.status) == "recovered"
    assert alias_version_label(runtime, "model-a") == "v1"
    result = outcome(timeline(runtime, incident.id), "select_known_good")["result"]
    assert result["selected"] == "v1"
    ((rejected, reason),) = [(r["version"], r["reason"]) for r in result["rejected"]]
    assert rejected == "v2" and ", at or after --since " in reason
    # v2 verifies: it is skipped for its date, not distrusted.
    assert statuses(runtime, "model-a")["v2"] == "known_good"


@pytest.mark.usefixtures("prefect_api_url")
def test_malicious_pickle_in_known_good_is_never_loaded_and_skipped(
    runtime: Runtime, tmp_path: Path
) -> None:
    files = {
        label: {
            "weights.bin": f"weights {label}".encode(),
            "tokenizer.pkl": pickle.dumps({"release": label, "vocab": ["a", "b"]}, protocol=4),
        }
        for label in ("v1", "v2", "v3")
    }
    build_scenario(runtime, tmp_path, files=files)
    sentinel = tmp_path / "PWNED"
    replace_stored(
        stored_file(runtime, "model-a", "v2", "tokenizer.pkl"), _malicious_pickle(sentinel)
    )
    tamper_version(runtime, "model-a", "v3")

    incident = respond(runtime)

    assert str(incident.status) == "recovered"
    assert alias_version_label(runtime, "model-a") == "v1"
    assert statuses(runtime, "model-a")["v2"] == "suspect"
    reason = status_reason(runtime, "model-a", "v2")
    assert "tokenizer.pkl @" in reason and "dangerous posix.system" in reason
    assert not sentinel.exists(), "the pickle was loaded"
    assert_chain_verifies(runtime)


@pytest.mark.usefixtures("prefect_api_url")
def test_no_known_good_version_fails_and_leaves_production_alone(
    runtime: Runtime, tmp_path: Path
) -> None:
    build_scenario(runtime, tmp_path, approved=())
    tamper_version(runtime, "model-a", "v3")

    incident = respond(runtime)

    assert str(incident.status) == "failed"
    assert incident.reason == (
        "no known-good version of model-a qualifies: the asset has no known-good version"
    )
    assert alias_version_label(runtime, "model-a") == "v3"
    events = timeline(runtime, incident.id)
    assert step_events(events) == [
        ("intent", "notify"),
        ("outcome", "notify"),
        ("intent", "quarantine"),
        ("outcome", "quarantine"),
        ("intent", "notify"),
        ("outcome", "notify"),
        ("intent", "verify_integrity"),
        ("outcome", "verify_integrity"),
        ("intent", "select_known_good"),
        ("outcome", "select_known_good"),
        ("intent", "notify"),
        ("outcome", "notify"),
    ]
    failed = outcome(events, "select_known_good")
    assert failed["ok"] is False and failed["error"] == incident.reason
    assert not [e for e in events if e.action == "alias.moved"]
    notified = [e.action for e in events if e.action.startswith("notify.")]
    assert notified == ["notify.opened", "notify.contained", "notify.failed"]
    assert_chain_verifies(runtime)


@pytest.mark.usefixtures("prefect_api_url")
def test_every_known_good_tampered_fails_naming_each(runtime: Runtime, tmp_path: Path) -> None:
    build_scenario(runtime, tmp_path)
    for label in ("v1", "v2", "v3"):
        tamper_version(runtime, "model-a", label)

    incident = respond(runtime)

    assert str(incident.status) == "failed"
    assert incident.reason is not None
    assert incident.reason.startswith("no known-good version of model-a qualifies")
    for label in ("v1", "v2"):
        assert f"{label} is suspect (failed re-verification" in incident.reason
    assert "sha256 mismatch" in incident.reason
    assert alias_version_label(runtime, "model-a") == "v3"
    events = timeline(runtime, incident.id)
    assert sorted(outcome(events, "verify_integrity")["result"]["failed"]) == ["v1", "v2"]
    assert not [e for e in events if e.action == "alias.moved"]
    assert statuses(runtime, "model-a") == {
        "v1": "suspect",
        "v2": "suspect",
        "v3": "quarantined",
    }


@pytest.mark.usefixtures("prefect_api_url")
def test_validation_failure_on_newest_known_good_selects_an_older_one(
    runtime: Runtime, tmp_path: Path
) -> None:
    checker = tmp_path / "check.py"
    checker.write_text(
        "import os, pathlib, sys\n"
        "data = pathlib.Path(os.environ['REARGUARD_ASSET_PATH'], 'weights.bin').read_bytes()\n"
        "sys.exit(3 if b'BROKEN' in data else 0)\n"
    )
    command = f"{shlex.quote(sys.executable)} {shlex.quote(str(checker))}"
    files = {"v2": {"weights.bin": b"weights v2 BROKEN on load"}}
    build_scenario(runtime, tmp_path, validate=command, files=files)
    tamper_version(runtime, "model-a", "v3")

    incident = respond(runtime)

    assert str(incident.status) == "recovered"
    assert alias_version_label(runtime, "model-a") == "v1"
    events = timeline(runtime, incident.id)
    selected = outcome(events, "select_known_good")["result"]
    assert selected == {
        "selected": "v1",
        "rejected": [{"version": "v2", "reason": "validation exited 3"}],
    }
    validated = outcome(events, "validate")["result"]
    assert validated["version"] == "v1" and validated["ok"] is True


@pytest.mark.usefixtures("prefect_api_url")
def test_production_never_set_is_pointed_at_the_known_good(
    runtime: Runtime, tmp_path: Path
) -> None:
    build_scenario(runtime, tmp_path, production=None)
    assert alias_version_label(runtime, "model-a") is None

    incident = respond(runtime)

    assert str(incident.status) == "recovered"
    assert incident.state == {"compromised": None, "selected": "v2"}
    assert alias_version_label(runtime, "model-a") == "v2"
    assert statuses(runtime, "model-a") == {
        "v1": "known_good",
        "v2": "known_good",
        "v3": "candidate",
    }
    events = timeline(runtime, incident.id)
    assert outcome(events, "quarantine")["result"] == {
        "skipped": "no version was in production when the incident opened"
    }
    assert outcome(events, "rollback")["result"] == {"alias": ALIAS, "from": None, "to": "v2"}
    assert not (tmp_path / "home" / "evidence").exists()
    assert_chain_verifies(runtime)


def _malicious_pickle(sentinel: Path) -> bytes:
    """A pickle that would create ``sentinel`` if anything ever loaded it."""

    class Payload:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return (os.system, (f"touch {shlex.quote(str(sentinel))}",))

    return pickle.dumps({"vocab": ["a", "b"], "hook": Payload()}, protocol=4)


@pytest.mark.usefixtures("prefect_api_url")
def test_rerun_of_a_recovered_incident_changes_nothing_and_notifies_once(
    runtime: Runtime, tmp_path: Path
) -> None:
    build_scenario(runtime, tmp_path)
    tamper_version(runtime, "model-a", "v3")
    incident = respond(runtime)
    assert str(incident.status) == "recovered"
    before = timeline(runtime, incident.id)

    rerun = run_playbook(runtime=runtime, incident_id=incident.id)

    assert str(rerun.status) == "recovered"
    after = timeline(runtime, incident.id)
    new_actions = [e.action for e in after[len(before) :]]
    assert "incident.contained" not in new_actions
    assert "incident.recovered" not in new_actions
    assert "alias.moved" not in new_actions
    notified = [e.action for e in after if e.action.startswith("notify.")]
    assert notified == ["notify.opened", "notify.contained", "notify.recovered"]
    lines = runtime.settings.notification_file.read_text().splitlines()
    assert len(lines) == 3
