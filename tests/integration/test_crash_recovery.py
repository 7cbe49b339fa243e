"""Kill ``rearguard incident open`` at exact points of the playbook, then resume it.

``REARGUARD_FAILPOINTS`` makes the real CLI process SIGKILL itself between two side effects.
After the kill the timeline must show the interrupted step's intent without its outcome, and
production must point at the compromised version or at the rollback target, never elsewhere.
``rearguard playbook run --incident`` then converges: recovered, production on v2 in the
database and on disk, v3 quarantined once, the alias moved once, evidence kept, the audit chain
intact, and further reruns change nothing.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
from scenarios import build_scenario, default_files, production_in_db, production_on_disk

from rearguard.flows.run_playbook import run_playbook
from rearguard.models.assets.versions import (
    get_asset,
    get_version,
)
from rearguard.models.audit.chain import (
    events_for_incident,
    iter_stored_events,
    verify_stored_chain,
)
from rearguard.models.runtime import Runtime

ASSET = "model-a"

# failpoint -> (interrupted step, where production points after the kill: (database, disk))
FAILPOINTS = {
    "quarantine.before_outcome": ("quarantine", ("v3", "v3")),
    "select_known_good.before_outcome": ("select_known_good", ("v3", "v3")),
    "rollback.after_intent": ("rollback", ("v3", "v3")),
    "alias.after_move": ("rollback", ("v3", "v2")),
    "validate.after_intent": ("validate", ("v2", "v2")),
}


def seed(runtime: Runtime, root: Path) -> None:
    """v1 and v2 approved, v3 in production and tampered, a validation command on the asset."""
    checker = root / "check.py"
    checker.write_text(
        "import os, pathlib, sys\n"
        "data = pathlib.Path(os.environ['REARGUARD_ASSET_PATH'], 'weights.bin').read_bytes()\n"
        "sys.exit(0 if data.startswith(b'weights') else 1)\n"
    )
    build_scenario(
        runtime,
        root,
        asset=ASSET,
        tampered=True,
        validate=f"{shlex.quote(sys.executable)} {shlex.quote(str(checker))}",
        validate_all=True,
    )


def production(runtime: Runtime) -> tuple[str | None, str | None]:
    """Where production points: (per the database, per the on-disk symlink)."""
    return production_in_db(runtime, ASSET), production_on_disk(runtime, ASSET)


def status_of(runtime: Runtime, label: str) -> str:
    """A version's status."""
    with runtime.db.read_session() as session:
        asset = get_asset(session=session, name=ASSET)
        return str(get_version(session=session, asset=asset, label=label).status)


def all_events(runtime: Runtime) -> list[dict[str, Any]]:
    """Every event of the chain, data parsed."""
    with runtime.db.read_session() as session:
        return [{**e, "data": json.loads(e["data"])} for e in iter_stored_events(session)]


def alias_moves_to(runtime: Runtime, label: str) -> list[dict[str, Any]]:
    """Every alias.moved event that pointed production at ``label``."""
    events = all_events(runtime)
    return [e for e in events if e["action"] == "alias.moved" and e["version"] == label]


def unmatched_intents(timeline: list[dict[str, Any]]) -> list[str]:
    """Steps whose latest intent has no outcome after it."""
    open_steps: list[str] = []
    for event in timeline:
        if event["kind"] == "intent":
            open_steps.append(event["action"])
        elif event["kind"] == "outcome" and event["action"] in open_steps:
            open_steps.remove(event["action"])
    return open_steps


def check_converged(runtime: Runtime, home: Path, incident_id: int) -> None:
    """What must hold after every completed rerun."""
    assert production(runtime) == ("v2", "v2")
    served = runtime.registry.alias_location(asset=ASSET, alias="production") / "weights.bin"
    assert served.read_bytes() == default_files("model", ASSET, "v2")["weights.bin"]
    assert status_of(runtime, "v3") == "quarantined"
    assert status_of(runtime, "v2") == "known_good"
    events = all_events(runtime)
    assert [e["version"] for e in events if e["action"] == "version.quarantined"] == ["v3"]
    assert len(alias_moves_to(runtime, "v2")) == 1
    evidence_root = home / "evidence" / f"incident-{incident_id}" / ASSET
    assert sorted(p.name for p in evidence_root.iterdir()) == ["v3"], "partial copies left"
    record = json.loads((evidence_root / "v3" / "evidence.json").read_text())
    assert [(f["path"], f["matches"]) for f in record["files"]] == [("weights.bin", False)]
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1))
    with runtime.db.read_session() as session:
        report = verify_stored_chain(session)
    assert report.ok, report.problem


@pytest.mark.parametrize("point", list(FAILPOINTS))
def test_killed_playbook_resumes_and_converges(  # type: ignore[no-untyped-def]
    cli, runtime: Runtime, home: Path, tmp_path: Path, point: str
) -> None:
    step, after_kill = FAILPOINTS[point]
    seed(runtime, tmp_path)

    killed = cli(
        "incident",
        "open",
        "--type",
        "model_compromise",
        "--asset",
        ASSET,
        env={"REARGUARD_FAILPOINTS": f"{point}=kill"},
    )

    assert killed.returncode in (-9, 137), (killed.returncode, killed.stdout, killed.stderr)
    found = re.search(r"incident (\d+) opened", killed.stderr)
    assert found, killed.stderr
    incident_id = int(found.group(1))
    shown = cli("incident", "show", str(incident_id), "--json")
    assert shown.returncode == 0, shown.stderr
    incident = json.loads(shown.stdout)
    assert incident["status"] not in ("recovered", "failed")
    assert unmatched_intents(incident["timeline"]) == [step]
    last_step_event = [e for e in incident["timeline"] if e["kind"] in ("intent", "outcome")][-1]
    assert (last_step_event["kind"], last_step_event["action"]) == ("intent", step)
    # Production is on the compromised version or on the verified target, nothing else.
    assert production(runtime) == after_kill
    assert incident["production"] == after_kill[0]
    assert len(alias_moves_to(runtime, "v2")) == (1 if after_kill[0] == "v2" else 0)

    resumed = cli("playbook", "run", "--incident", str(incident_id), "--json")

    assert resumed.returncode == 0, (resumed.stdout, resumed.stderr)
    assert "Traceback" not in resumed.stdout + resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["status"] == "recovered"
    assert result["production"] == "v2"
    assert result["state"] == {"compromised": "v3", "selected": "v2"}
    check_converged(runtime, home, incident_id)
    audit = cli("audit", "verify")
    assert audit.returncode == 0, audit.stderr
    assert "audit chain intact" in audit.stdout
    with runtime.db.read_session() as session:
        timeline = [
            {"kind": e.kind, "action": e.action}
            for e in events_for_incident(session=session, incident_id=incident_id)
        ]
    assert unmatched_intents(timeline) == [step], "the crash must stay on record"

    # `playbook run` is run_playbook behind a progress display; rerun it in-process, faster.
    for _ in range(2):
        again = run_playbook(runtime=runtime, incident_id=incident_id)
        assert str(again.status) == "recovered"
        check_converged(runtime, home, incident_id)
