"""Recovery drills: the real playbooks on a sandbox, production untouched.

Each test builds v1, v2 (known-good) and v3 (production) through the scenarios module (and,
for the drill of each playbook type, a store holding every kind of asset), schedules a drill
and runs it in-process under the session's Prefect server. What is asserted
is what an operator would check: the drill's result, per step, and why it failed; that every
stored byte, status and alias of production is as it was; that the sandbox shares unaltered
files with the store by hard links but never the tampered ones; what the timeline records.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from scenarios import add_version, approve, build_scenario, configure, promote, tamper_version

from rearguard.flows.drills.run import run_drill
from rearguard.models.assets.versions import describe_asset, list_assets
from rearguard.models.audit.chain import verify_stored_chain
from rearguard.models.config.drills import DrillSettings
from rearguard.models.config.notifications import StakeholderRoles, StakeholderSettings
from rearguard.models.db.tables import TimelineEvent
from rearguard.models.drills.injectors import FAKE_MALICIOUS_SHA256
from rearguard.models.drills.service import add_drill, list_runs, summarise
from rearguard.models.errors import UsageError
from rearguard.models.incidents.service import list_incidents
from rearguard.models.runtime import Runtime

STEPS = ["quarantine", "verify_integrity", "select_known_good", "rollback", "validate", "notify"]


@pytest.fixture(autouse=True)
def _prefect(prefect_api_url: str) -> None:
    """Every drill runs its playbook under the session's Prefect server."""


def production_snapshot(runtime: Runtime) -> dict[str, Any]:
    """Every stored file's sha256, inode and mode; every asset's alias on disk and statuses."""
    files = {}
    for path in sorted((runtime.settings.home / "store").rglob("*")):
        if path.is_file() and not path.is_symlink():
            info = path.stat()
            files[str(path)] = (
                hashlib.sha256(path.read_bytes()).hexdigest(),
                info.st_ino,
                info.st_mode,
            )
    with runtime.db.read_session() as session:
        described = {
            asset.name: describe_asset(session=session, asset=asset, alias="production")
            for asset in list_assets(session=session)
        }
    return {
        "files": files,
        "alias_on_disk": {
            name: runtime.registry.read_alias(asset=name, alias="production") for name in described
        },
        "assets": described,
    }


def schedule(
    runtime: Runtime,
    name: str = "weekly",
    *,
    rto_s: float | None = 300.0,
    playbook: str = "model_compromise",
    asset: str = "model-a",
) -> None:
    with runtime.db.session() as session:
        add_drill(
            session=session,
            name=name,
            playbook=playbook,
            asset=asset,
            cron="0 9 * * MON",
            timezone="Europe/London",
            rto_s=rto_s,
            actor="test",
        )


def keeping_sandboxes(runtime: Runtime) -> Runtime:
    """The same runtime, keeping every drill's sandbox on disk for inspection."""
    settings = replace(runtime.settings, drills=DrillSettings(keep_sandboxes="all"))
    kept = Runtime(settings=settings, db=runtime.db, registry=runtime.registry)
    return kept


def app_events(runtime: Runtime, prefix: str) -> list[TimelineEvent]:
    from sqlmodel import col, select

    with runtime.db.read_session() as session:
        return list(
            session.exec(
                select(TimelineEvent)
                .where(col(TimelineEvent.action).startswith(prefix))
                .order_by(col(TimelineEvent.seq))
            )
        )


def test_a_drill_recovers_in_its_sandbox_and_production_is_untouched(
    runtime: Runtime, tmp_path: Path
) -> None:
    marker = tmp_path / "hook-env.txt"
    hook = (
        f"{shlex.quote(sys.executable)} -c "
        + shlex.quote(
            "import os, sys; open(sys.argv[1], 'a').write(os.environ.get('REARGUARD_DRILL', '-'))"
        )
        + f" {shlex.quote(str(marker))}"
    )
    build_scenario(runtime, tmp_path, validate=hook, validate_all=True)
    schedule(runtime)
    before = production_snapshot(runtime)
    kept = keeping_sandboxes(runtime)

    run = run_drill(runtime=kept, name="weekly")

    assert run.status == "pass", run.reason
    assert [s["step"] for s in run.steps if s["step"] in STEPS[:-1]] == STEPS[:-1]
    assert "notify" in [s["step"] for s in run.steps]
    assert all(s["ok"] for s in run.steps)
    assert run.recovery_s is not None and run.rto_s == 300.0
    assert run.injected["version"] == "v3"
    assert production_snapshot(runtime) == before
    # Hooks ran in drill mode, against the sandbox.
    assert set(marker.read_text()) == {"1"}
    # The sandbox shares untouched files with the store, and holds the tampered one apart.
    sandbox = Path(run.sandbox or "")
    stored = runtime.settings.home / "store" / "assets" / "model-a" / "versions"
    sandboxed = sandbox / "store" / "assets" / "model-a" / "versions"
    inode = {
        (where, label): (root / label / "weights.bin").stat().st_ino
        for where, root in (("store", stored), ("sandbox", sandboxed))
        for label in ("v1", "v3")
    }
    assert inode["store", "v1"] == inode["sandbox", "v1"]
    assert inode["store", "v3"] != inode["sandbox", "v3"]
    assert os.readlink(sandbox / "store" / "assets" / "model-a" / "production") == "versions/v2"
    # The application records the run; its drill incident stays out of the incident list.
    with runtime.db.read_session() as session:
        assert list_incidents(session=session) == []
        (drill_incident,) = list_incidents(session=session, include_drills=True)
        assert str(drill_incident.source) == "drill"
        assert str(drill_incident.status) == "recovered"
        assert verify_stored_chain(session).ok
    actions = [e.action for e in app_events(runtime, "drill.")]
    assert actions == ["drill.added", "drill.started", "drill.finished"]
    finished = json.loads(app_events(runtime, "drill.finished")[0].data)
    assert finished["status"] == "pass" and finished["timeline_digest"] == run.timeline_digest
    assert any(e["action"] == "alias.moved" for e in run.timeline)
    # Notifications of the drill say so.
    lines = (runtime.settings.home / "notifications.jsonl").read_text().splitlines()
    titles = [json.loads(line)["title"] for line in lines]
    assert titles and all(t.startswith("[DRILL]") for t in titles)
    assert any("Drill" in t and "passed" in t for t in titles)


def test_a_drill_fails_and_says_why_when_the_only_known_good_version_is_tampered(
    runtime: Runtime, tmp_path: Path
) -> None:
    build_scenario(runtime, tmp_path, approved=("v1",))
    tamper_version(runtime, "model-a", "v1")
    schedule(runtime)
    before = production_snapshot(runtime)
    owned = StakeholderSettings(assets={"model-a": StakeholderRoles(asset_owner=["o@example.org"])})
    notifications = runtime.settings.notifications.model_copy(
        update={
            "channels": ["file", "email"],
            "drill_email": ["drills@example.org"],
            "stakeholders": owned,
            "dispatch_wait_s": 0.0,  # no SMTP server here: queue, do not wait for delivery
        }
    )
    told = Runtime(
        settings=replace(runtime.settings, notifications=notifications),
        db=runtime.db,
        registry=runtime.registry,
    )

    run = run_drill(runtime=told, name="weekly")

    assert run.status == "fail"
    assert "no known-good version of model-a qualifies" in (run.reason or "")
    assert "v1 is suspect (failed re-verification: weights.bin: sha256 mismatch" in (
        run.reason or ""
    )
    steps = {s["step"]: s["ok"] for s in run.steps}
    assert steps["verify_integrity"] and not steps["select_known_good"]
    assert "rollback" not in steps
    assert run.recovery_s is None
    # The sandbox of a failed drill is kept for forensics; production is as it was.
    assert run.sandbox and Path(run.sandbox).is_dir()
    assert production_snapshot(runtime) == before
    with runtime.db.read_session() as session:
        (summary,) = summarise(list_runs(session=session))
    assert summary.runs == 1 and summary.success_rate == 0.0
    # The drill channel hears of it, and so does the asset owner, since it failed.
    (result,) = app_events(runtime, "notify.drill_result")
    told_of = json.loads(result.data)
    assert told_of["drill"] is True
    assert set(told_of["receipts"]) == {"file", "email:drills@example.org", "email:o@example.org"}


def test_a_drill_that_recovers_over_its_rto_fails(runtime: Runtime, tmp_path: Path) -> None:
    build_scenario(runtime, tmp_path)
    schedule(runtime, rto_s=0.001)

    run = run_drill(runtime=runtime, name="weekly")

    assert all(s["ok"] for s in run.steps)
    assert run.status == "fail"
    assert run.recovery_s is not None and run.recovery_s > 0.001
    assert run.reason == f"recovered in {run.recovery_s} s, over the RTO of 0.001 s"
    with runtime.db.read_session() as session:
        (incident,) = list_incidents(session=session, include_drills=True)
    assert str(incident.status) == "failed"


def test_drills_through_the_cli(cli, runtime: Runtime, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    build_scenario(runtime, tmp_path)
    add = ("drills", "add", "weekly", "--playbook", "model_compromise", "--asset", "model-a")
    # Bad input is one line and exit 2 (each kind is covered in tests/unit).
    failed = cli(*add, "--cron", "0 9 * * MON", "--timezone", "Mars/Olympus")
    assert failed.returncode == 2
    assert "unknown timezone 'Mars/Olympus'" in failed.stderr and "Traceback" not in failed.stderr
    created = cli(*add, "--cron", "0 9 * * MON", "--rto", "5m", "--timezone", "Europe/London")
    assert created.returncode == 0, created.stderr
    (listed,) = json.loads(cli("drills", "list", "--json").stdout)
    assert (listed["name"], listed["rto_s"], listed["timezone"]) == (
        "weekly",
        300.0,
        "Europe/London",
    )

    ran = cli("drills", "run", "weekly")
    assert ran.returncode == 0, ran.stderr
    assert "✓ rollback" in ran.stderr  # the step progress of `incident open`
    assert "drill weekly run 1: pass" in ran.stdout

    history = json.loads(cli("drills", "history", "weekly", "--json").stdout)
    assert history["summary"][0]["success_rate"] == 1.0
    steps = {s["step"]: s for s in history["runs"][0]["steps"]}
    assert steps["rollback"]["detail"] == "production: v3 -> v2"
    assert json.loads(cli("incident", "list", "--json").stdout) == []
    (drill_incident,) = json.loads(cli("incident", "list", "--drills", "--json").stdout)
    assert drill_incident["source"] == "drill"
    assert cli("drills", "remove", "weekly").returncode == 0


# -- every drillable playbook type ------------------------------------------------------------

# The asset each type is drilled on, in the store drill_store builds.
DRILLED = {
    "prompt_tampering": "prompt-p",
    "config_tampering": "config-c",
    "degradation": "model-a",
    "supply_chain": "model-a",
    "data_poisoning": "corpus",
    "model_theft": "model-a",
}


def drill_store(runtime: Runtime, home: Path, tmp_path: Path) -> Path:
    """Every kind of asset with a known-good version behind production; approvals and hooks.

    model-a's validation command fails content whose first byte was overwritten; it and the
    ``rotate_credentials`` hook append their ``REARGUARD_DRILL`` to the returned file. Every
    rollback and credential rotation needs alice's approval.
    """
    marker = tmp_path / "drill-env.txt"
    script = tmp_path / "drill_env.py"
    script.write_text(
        "import os, pathlib, sys\n"
        f"with open({str(marker)!r}, 'a') as out:\n"
        "    out.write(os.environ.get('REARGUARD_DRILL', '-'))\n"
        "if sys.argv[1:] == ['check']:\n"
        "    weights = pathlib.Path(os.environ['REARGUARD_ASSET_PATH'], 'weights.bin')\n"
        "    sys.exit(4 if weights.read_bytes().startswith(b'\\x00') else 0)\n"
    )
    check = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} check"
    build_scenario(runtime, tmp_path, validate=check, validate_all=True)
    build_scenario(runtime, tmp_path, asset="prompt-p", kind="prompt")
    build_scenario(runtime, tmp_path, asset="config-c", kind="config")
    add_version(runtime, tmp_path, "corpus", "v1", kind="dataset")
    add_version(runtime, tmp_path, "model-d", "v1", trained_on="corpus@v1")
    approve(runtime, "model-d", "v1")
    promote(runtime, "model-d", "v1")
    configure(
        runtime,
        home,
        f"[hooks.rotate_credentials]\nargv = {json.dumps([sys.executable, str(script)])}\n"
        "[approvals]\nallow_self_asserted = true\n"
        '[[approvals.rules]]\nsteps = ["rollback", "rotate_credentials"]\napprovers = ["alice"]\n',
    )
    marker.unlink(missing_ok=True)
    return marker


@pytest.mark.parametrize("playbook", sorted(DRILLED))
def test_a_drill_of_each_type_passes_and_production_is_untouched(
    playbook: str, runtime: Runtime, home: Path, tmp_path: Path
) -> None:
    marker = drill_store(runtime, home, tmp_path)
    schedule(runtime, playbook=playbook, asset=DRILLED[playbook])
    before = production_snapshot(runtime)

    run = run_drill(runtime=runtime, name="weekly")

    assert run.status == "pass", run.reason
    assert run.steps and all(s["ok"] for s in run.steps), run.steps
    assert run.recovery_s is not None  # to recovered; to contained for model_theft
    assert production_snapshot(runtime) == before
    # Nobody is asked at 3 a.m.: the gate is skipped, and the timeline says what it would ask.
    gates = [s["detail"] for s in run.steps if s["step"] == "await_approval"]
    assert gates and all(
        "skipped in drill (policy would require approval by alice within 15m)" in g for g in gates
    )
    moved = [e["detail"] for e in run.timeline if e["action"] == "alias.moved"]
    assert bool(moved) == (playbook != "model_theft")
    # model-a's validation command and the hooks ran, and ran in drill mode.
    ran = marker.read_text() if marker.exists() else ""
    assert set(ran) <= {"1"}
    assert bool(ran) == (DRILLED[playbook] == "model-a")
    if playbook == "supply_chain":
        assert run.injected["incident"] == {"digest": FAKE_MALICIOUS_SHA256}
    with runtime.db.read_session() as session:
        (drill_incident,) = list_incidents(session=session, include_drills=True)
    assert str(drill_incident.status) == ("contained" if playbook == "model_theft" else "recovered")


def test_a_degradation_drill_needs_the_assets_validation_command(
    runtime: Runtime, tmp_path: Path
) -> None:
    build_scenario(runtime, tmp_path)
    with pytest.raises(UsageError, match="degradation drills need the asset's validation command"):
        schedule(runtime, playbook="degradation")


def test_a_drill_exercising_approvals_waits_for_a_real_decision(
    runtime: Runtime, home: Path, tmp_path: Path
) -> None:
    build_scenario(runtime, tmp_path)
    configure(
        runtime,
        home,
        "[drills]\nexercise_approvals = true\n[approvals]\nallow_self_asserted = true\n"
        '[[approvals.rules]]\nsteps = ["rollback"]\napprovers = ["alice"]\n'
        'timeout_s = 1\non_timeout = "abort"\n',
    )
    schedule(runtime)
    before = production_snapshot(runtime)

    run = run_drill(runtime=runtime, name="weekly")

    assert run.status == "fail"
    assert "rollback not approved within 1s; aborted per policy" in (run.reason or "")
    assert production_snapshot(runtime) == before
