"""The supply_chain, data_poisoning and model_theft playbooks, in-process, and hooks.

Each test builds several assets through the scenario builders, opens an incident the way the
CLI does and runs the real flow through ``run_playbook`` under the session's Prefect server.
Asserted is what an operator sees: where each production alias points (database and disk),
version statuses, the bytes served, the incident's status and reason, the hook evidence.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from scenarios import (
    ALIAS,
    add_version,
    approve,
    catalog_steps,
    configure,
    production_on_disk,
    promote,
)

from rearguard.flows.opening import open_and_record
from rearguard.flows.run_playbook import run_playbook
from rearguard.models.assets.denylist import deny_digest
from rearguard.models.assets.versions import get_asset, list_versions
from rearguard.models.audit.chain import events_for_incident, verify_stored_chain
from rearguard.models.db.tables import DeniedDigest, Incident, TimelineEvent
from rearguard.models.enums import Severity
from rearguard.models.errors import IntegrityViolation
from rearguard.models.runtime import Runtime
from rearguard.playbooks.catalog import CATALOG

# A backdoored third-party library (not a pickle: the opcode scan would refuse that anyway).
EVIL = b"\x7fELF backdoored vendor library" * 16
EVIL_SHA = hashlib.sha256(EVIL).hexdigest()
PY = shlex.quote(sys.executable)


def recorder(tmp_path: Path, name: str) -> tuple[str, Path]:
    """A hook command (TOML argv) that appends its REARGUARD_* environment to a JSON-lines file."""
    out = tmp_path / f"{name}.jsonl"
    script = tmp_path / f"{name}.py"
    script.write_text(
        "import json, os, sys\n"
        f"with open({str(out)!r}, 'a') as f:\n"
        "    ours = ('REARGUARD_', 'ALLOWED')\n"
        "    env = {k: v for k, v in os.environ.items() if k.startswith(ours)}\n"
        "    f.write(json.dumps(env) + '\\n')\n"
        "print('rotated; token=abcd1234secret')\n"
    )
    return json.dumps([sys.executable, str(script)]), out


def snapshot(runtime: Runtime, asset: str) -> dict[str, Any]:
    """Everything about an asset an operator would notice: alias, statuses, bytes served."""
    with runtime.db.read_session() as session:
        found = get_asset(session=session, name=asset)
        statuses = {v.label: str(v.status) for v in list_versions(session=session, asset=found)}
    served = None
    if production_on_disk(runtime, asset):
        location = runtime.registry.alias_location(asset=asset, alias=ALIAS)
        served = {p.name: p.read_bytes() for p in sorted(location.iterdir())}
    return {"alias": production_on_disk(runtime, asset), "statuses": statuses, "served": served}


def timeline(runtime: Runtime, incident_id: int) -> list[TimelineEvent]:
    """The incident's events, in order."""
    with runtime.db.read_session() as session:
        return events_for_incident(session=session, incident_id=incident_id)


def open_run(runtime: Runtime, type: str, **inputs: Any) -> Incident:
    """Open an incident as the CLI does and run its playbook."""
    incident_id = open_and_record(
        runtime=runtime,
        type=type,
        asset=inputs.pop("asset", None),
        severity=Severity.SEV1,
        since=inputs.pop("since", None),
        summary="",
        actor="oncall",
        **inputs,
    )
    return run_playbook(runtime=runtime, incident_id=incident_id)


def alias_moves(runtime: Runtime, incident_id: int) -> list[tuple[str | None, str]]:
    """(asset, to) of every alias move the incident made."""
    return [
        (e.asset, json.loads(e.data)["to"])
        for e in timeline(runtime, incident_id)
        if e.action == "alias.moved"
    ]


def chain_ok(runtime: Runtime) -> bool:
    """The whole audit chain recomputes."""
    with runtime.db.read_session() as session:
        return verify_stored_chain(session).ok


# -- data_poisoning ---------------------------------------------------------------------------


def seed_poisoning(runtime: Runtime, root: Path) -> str:
    """corpus v1 clean, v2 poisoned (after ``since``); three models, two trained on corpus.

    model-a: v1 (corpus@v1) and v2 (corpus@v2) known-good, v2 in production: reached.
    model-b: v1 (corpus@v1) in production, v2 (corpus@v2) a candidate: tainted, not served.
    model-c: no lineage, v1 in production: untouched.
    """
    add_version(runtime, root, "corpus", "v1", kind="dataset")
    time.sleep(0.01)
    since = datetime.now(UTC).isoformat()
    add_version(runtime, root, "corpus", "v2", kind="dataset")
    for label, data in (("v1", "corpus@v1"), ("v2", "corpus@v2")):
        add_version(runtime, root, "model-a", label, trained_on=data)
        approve(runtime, "model-a", label)
        add_version(runtime, root, "model-b", label, trained_on=data)
    approve(runtime, "model-b", "v1")
    promote(runtime, "model-a", "v2")
    promote(runtime, "model-b", "v1")
    add_version(runtime, root, "model-c", "v1")
    approve(runtime, "model-c", "v1")
    promote(runtime, "model-c", "v1")
    return since


@pytest.mark.usefixtures("prefect_api_url")
def test_poisoned_dataset_shared_by_two_models(
    runtime: Runtime, tmp_path: Path, home: Path
) -> None:
    since = seed_poisoning(runtime, tmp_path)
    retrain, retrain_log = recorder(tmp_path, "retrain")
    freeze, freeze_log = recorder(tmp_path, "freeze")
    configure(
        runtime,
        home,
        f"[hooks.retrain]\nargv = {retrain}\n[hooks.freeze_ingestion]\nargv = {freeze}\n",
    )
    model_b, model_c = snapshot(runtime, "model-b"), snapshot(runtime, "model-c")

    incident = open_run(runtime, "data_poisoning", dataset="corpus", since=since)

    assert str(incident.status) == "recovered", incident.reason
    assert snapshot(runtime, "corpus")["statuses"] == {"v2": "suspect", "v1": "candidate"}
    a = snapshot(runtime, "model-a")
    assert a["alias"] == "v1" and a["statuses"] == {"v2": "quarantined", "v1": "known_good"}
    b = snapshot(runtime, "model-b")
    # model-b's production never served poisoned weights: it still serves the same bytes.
    assert b["alias"] == model_b["alias"] == "v1" and b["served"] == model_b["served"]
    assert b["statuses"] == {"v2": "quarantined", "v1": "known_good"}
    assert snapshot(runtime, "model-c") == model_c
    assert alias_moves(runtime, incident.id) == [("model-a", "v1")]
    assert incident.state["tainted"] == [
        {"asset": "model-a", "label": "v2", "dataset_version": "v2"},
        {"asset": "model-b", "label": "v2", "dataset_version": "v2"},
    ]
    retrained = [json.loads(line) for line in retrain_log.read_text().splitlines()]
    assert [(r["REARGUARD_ASSET"], r["REARGUARD_DATASET_VERSION"]) for r in retrained] == [
        ("model-a", "v1"),
        ("model-b", "v1"),
    ]
    assert all(r["REARGUARD_DATASET"] == "corpus" for r in retrained)
    (frozen,) = [json.loads(line) for line in freeze_log.read_text().splitlines()]
    assert frozen["REARGUARD_INCIDENT_ID"] == str(incident.id)
    hook_events = [e for e in timeline(runtime, incident.id) if e.action.startswith("hook.")]
    assert len(hook_events) == 3
    # The hook printed a token: the tail in the timeline is redacted.
    assert all("abcd1234secret" not in e.data for e in hook_events)
    assert catalog_steps(runtime, incident.id) == list(CATALOG["data_poisoning"].steps)

    # A rerun after completion converges: no second rollback, no hook run twice.
    again = run_playbook(runtime=runtime, incident_id=incident.id)
    assert str(again.status) == "recovered"
    assert alias_moves(runtime, incident.id) == [("model-a", "v1")]
    assert len(retrain_log.read_text().splitlines()) == 2
    assert snapshot(runtime, "model-c") == model_c
    assert chain_ok(runtime)


@pytest.mark.usefixtures("prefect_api_url")
def test_dataset_without_lineage_fails_with_a_clear_reason(
    runtime: Runtime, tmp_path: Path
) -> None:
    add_version(runtime, tmp_path, "corpus", "v1", kind="dataset")
    since = datetime.now(UTC).isoformat()
    add_version(runtime, tmp_path, "corpus", "v2", kind="dataset")
    add_version(runtime, tmp_path, "model-c", "v1")

    incident = open_run(runtime, "data_poisoning", dataset="corpus", since=since)

    assert str(incident.status) == "failed"
    assert "no model version records lineage to a suspect version of corpus (v2)" in (
        incident.reason or ""
    )
    assert snapshot(runtime, "model-c")["statuses"] == {"v1": "candidate"}


# -- supply_chain -----------------------------------------------------------------------------


def seed_supply_chain(runtime: Runtime, root: Path) -> None:
    """The malicious file inside model-a v2 and v3 (v3 in production) and prompt-b v1 (not served).

    model-c never holds it.
    """
    for label in ("v1", "v2", "v3"):
        extra = {"libvendor.so": EVIL} if label != "v1" else {}
        add_version(runtime, root, "model-a", label, files={"w.bin": label.encode(), **extra})
    for label in ("v1", "v2"):
        approve(runtime, "model-a", label)
    promote(runtime, "model-a", "v3")
    add_version(runtime, root, "prompt-b", "v1", kind="prompt", files={"s.txt": b"1", "x": EVIL})
    add_version(runtime, root, "prompt-b", "v2", kind="prompt")
    approve(runtime, "prompt-b", "v2")
    promote(runtime, "prompt-b", "v2")
    add_version(runtime, root, "model-c", "v1")
    approve(runtime, "model-c", "v1")
    promote(runtime, "model-c", "v1")


@pytest.mark.usefixtures("prefect_api_url")
def test_malicious_file_in_several_versions_of_several_assets(
    runtime: Runtime, tmp_path: Path
) -> None:
    seed_supply_chain(runtime, tmp_path)
    prompt_b, model_c = snapshot(runtime, "prompt-b"), snapshot(runtime, "model-c")

    incident = open_run(runtime, "supply_chain", digest=EVIL_SHA.upper())

    assert str(incident.status) == "recovered", incident.reason
    a = snapshot(runtime, "model-a")
    # v2 is known-good but holds the file: rolled back past it, to v1.
    assert a["alias"] == "v1"
    assert a["statuses"] == {"v3": "quarantined", "v2": "quarantined", "v1": "known_good"}
    b = snapshot(runtime, "prompt-b")
    assert b["alias"] == "v2" and b["served"] == prompt_b["served"]
    assert b["statuses"] == {"v2": "known_good", "v1": "quarantined"}
    assert snapshot(runtime, "model-c") == model_c
    assert alias_moves(runtime, incident.id) == [("model-a", "v1")]
    assert incident.state["production_tainted"] == {"model-a": "v3"}
    assert catalog_steps(runtime, incident.id) == list(CATALOG["supply_chain"].steps)
    for asset, label in (("model-a", "v2"), ("model-a", "v3"), ("prompt-b", "v1")):
        kept = runtime.settings.home / "evidence" / f"incident-{incident.id}" / asset / label
        assert (kept / "evidence.json").is_file()

    again = run_playbook(runtime=runtime, incident_id=incident.id)
    assert str(again.status) == "recovered"
    assert alias_moves(runtime, incident.id) == [("model-a", "v1")]
    assert chain_ok(runtime)

    # From now on the digest is refused at registration, and nothing is stored.
    with pytest.raises(IntegrityViolation, match=EVIL_SHA):
        add_version(runtime, tmp_path, "model-c", "v2", files={"again.so": EVIL})
    assert set(snapshot(runtime, "model-c")["statuses"]) == {"v1"}


def test_promote_refuses_a_denylisted_digest(runtime: Runtime, tmp_path: Path) -> None:
    add_version(runtime, tmp_path, "model-a", "v1", files={"w.bin": b"1", "libvendor.so": EVIL})
    with runtime.db.session() as session:
        deny_digest(session=session, digest=EVIL_SHA, reason="vendor advisory", actor="alice")
    with pytest.raises(IntegrityViolation, match="denylisted digest"):
        promote(runtime, "model-a", "v1")
    assert production_on_disk(runtime, "model-a") is None


@pytest.mark.usefixtures("prefect_api_url")
def test_digest_matching_nothing_is_denylisted_and_said(runtime: Runtime, tmp_path: Path) -> None:
    add_version(runtime, tmp_path, "model-c", "v1")
    digest = "ab" * 32

    incident = open_run(runtime, "supply_chain", digest=digest)

    assert str(incident.status) == "failed"
    assert f"no stored file has digest {digest}" in (incident.reason or "")
    with runtime.db.read_session() as session:
        assert session.get(DeniedDigest, digest) is not None


# -- model_theft and hooks --------------------------------------------------------------------


@pytest.mark.usefixtures("prefect_api_url")
def test_model_theft_rotates_credentials_and_states_the_72_hour_deadline(
    runtime: Runtime, tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_version(runtime, tmp_path, "model-a", "v1")
    approve(runtime, "model-a", "v1")
    promote(runtime, "model-a", "v1")
    first, log = recorder(tmp_path, "rotate")
    monkeypatch.setenv("ALLOWED_VAR", "passed")
    monkeypatch.setenv("NOT_ALLOWED_VAR", "kept out")
    configure(
        runtime,
        home,
        "[[hooks.rotate_credentials]]\n"
        f'argv = {first}\nenv = ["ALLOWED_VAR", "NOT_SET_VAR"]\ncredentials = ["s3-key"]\n'
        "[[hooks.rotate_credentials]]\n"
        f'argv = {first}\ncredentials = ["serving-token", "registry-token"]\n'
        "[assets.model-a]\npersonal_data = true\n",
    )

    incident = open_run(runtime, "model_theft", asset="model-a")

    assert str(incident.status) == "contained", incident.reason
    assert snapshot(runtime, "model-a")["alias"] == "v1"
    assert alias_moves(runtime, incident.id) == []
    events = timeline(runtime, incident.id)
    (hook_outcome,) = [
        json.loads(e.data) for e in events if e.kind == "outcome" and e.action == "run_hook"
    ]
    assert hook_outcome["result"]["credentials"] == ["s3-key", "serving-token", "registry-token"]
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    assert runs[0]["ALLOWED_VAR"] == "passed" and "ALLOWED_VAR" not in runs[1]
    assert "NOT_ALLOWED_VAR" not in runs[0]
    (legal,) = [
        json.loads(e.data) for e in events if e.kind == "outcome" and e.action == "notify_legal"
    ]
    assert legal["result"]["personal_data"] is True
    sent = [
        json.loads(line) for line in runtime.settings.notification_file.read_text().splitlines()
    ]
    bodies = " ".join(m["body"] for m in sent if m["incident_id"] == incident.id)
    assert "within 72 hours" in bodies and "UK GDPR Art. 33" in bodies
    assert legal["result"]["regulator_deadline"] in bodies
    assert catalog_steps(runtime, incident.id) == list(CATALOG["model_theft"].steps)


@pytest.mark.usefixtures("prefect_api_url")
def test_a_hanging_hook_is_killed_and_fails_its_step(
    runtime: Runtime, tmp_path: Path, home: Path
) -> None:
    add_version(runtime, tmp_path, "model-a", "v1")
    approve(runtime, "model-a", "v1")
    promote(runtime, "model-a", "v1")
    pid_file = tmp_path / "hook.pid"
    hang = tmp_path / "hang.py"
    hang.write_text(
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "print('rotating...', flush=True)\n"
        "time.sleep(60)\n"
    )
    configure(
        runtime,
        home,
        f"[hooks.rotate_credentials]\nargv = {json.dumps([sys.executable, str(hang)])}\n"
        "timeout_s = 1.5\n",
    )

    incident = open_run(runtime, "model_theft", asset="model-a")

    assert str(incident.status) == "failed"
    assert "timed out after 1.5s and was killed" in (incident.reason or "")
    assert "rotating..." in (incident.reason or "")
    (event,) = [e for e in timeline(runtime, incident.id) if e.action == "hook.rotate_credentials"]
    data = json.loads(event.data)
    assert data["ok"] is False and data["exit_code"] is None and data["credentials"] == []
    # The whole process group was killed, the hook's own child too.
    child = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        for _ in range(50):
            os.kill(child, 0)
            time.sleep(0.1)
    assert snapshot(runtime, "model-a")["alias"] == "v1"
