"""Scan records and ``assets rescan``: every scan of a version's bytes leaves a record of the
scanner and rules it was judged by; a rescan re-judges exactly the versions whose record is out
of date, and takes trust away from what now fails."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_helpers import rearguard_in_process
from scenarios import add_version, approve, configure, tamper_version
from sqlmodel import col, select

from rearguard.models.assets.versions import (
    approve_version,
    get_asset,
    get_version,
    promote_version,
)
from rearguard.models.db.tables import Incident, TimelineEvent, VersionScan
from rearguard.models.errors import IntegrityViolation
from rearguard.models.incidents.service import open_incident
from rearguard.models.integrity.rescan import plan_rescan, run_rescan
from rearguard.models.integrity.scan.policy import ScanPolicy, policy_for
from rearguard.models.integrity.scan.record import SCANNER_VERSION, allow_fingerprint
from rearguard.models.recovery.containment import verify_production
from rearguard.models.recovery.selection import select_known_good, verify_integrity
from rearguard.models.runtime import Runtime

# A protocol 2 pickle calling os.system (as posix.system): what loading it would run.
GADGET = b"\x80\x02cposix\nsystem\nX\x02\x00\x00\x00id\x85R."
CLEAN = b"\x80\x02}q\x00X\x01\x00\x00\x00wq\x01]q\x02(K\x01K\x02es."
# What an older rearguard's scanner let through: it judged nothing as blocking.
UNAWARE = ScanPolicy(block=frozenset())


def status(runtime: Runtime, asset: str, label: str) -> str:
    with runtime.db.read_session() as session:
        found = get_asset(session=session, name=asset)
        return str(get_version(session=session, asset=found, label=label).status)


def record(runtime: Runtime, asset: str, label: str) -> VersionScan | None:
    with runtime.db.read_session() as session:
        found = get_asset(session=session, name=asset)
        version = get_version(session=session, asset=found, label=label)
        return session.get(VersionScan, version.id)


def as_an_older_scanner_recorded(runtime: Runtime, asset: str, label: str) -> None:
    """Rewrite a version's record as an older scanner (one that missed its gadget) wrote it:
    clean, under today's allow-list."""
    with runtime.db.session() as session:
        found = get_asset(session=session, name=asset)
        version = get_version(session=session, asset=found, label=label)
        row = session.get(VersionScan, version.id)
        assert row is not None
        row.scanner_version = SCANNER_VERSION - 1
        row.allow_fingerprint = allow_fingerprint(policy_for(runtime.settings, asset))
        row.verdict, row.counts = "clean", {}
        session.add(row)


def a_gadget_approved_and_promoted_by_an_older_scanner(runtime: Runtime, tmp_path: Path) -> None:
    """v1 clean and known_good; v2 known_good too and in production, its gadget let through by
    a scanner that judged nothing as blocking, with the clean record that scanner wrote."""
    add_version(runtime, tmp_path, "model", "v1")
    approve(runtime, "model", "v1")
    add_version(runtime, tmp_path, "model", "v2", files={"tok.pkl": GADGET}, policy=UNAWARE)
    approve_version(
        db=runtime.db, registry=runtime.registry, name="model", label="v2", by="a", policy=UNAWARE
    )
    promote_version(
        db=runtime.db,
        registry=runtime.registry,
        name="model",
        label="v2",
        alias="production",
        actor="bob",
        policy=UNAWARE,
    )
    as_an_older_scanner_recorded(runtime, "model", "v2")


def events(runtime: Runtime, action: str) -> list[TimelineEvent]:
    with runtime.db.read_session() as session:
        return list(
            session.exec(
                select(TimelineEvent)
                .where(TimelineEvent.action == action)
                .order_by(col(TimelineEvent.seq))
            )
        )


def incidents(runtime: Runtime) -> list[Incident]:
    with runtime.db.read_session() as session:
        return list(session.exec(select(Incident).order_by(col(Incident.id))))


def test_registration_records_the_scan_and_assets_show_prints_it(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    add_version(runtime, tmp_path, "model", "v1", files={"tok.pkl": CLEAN})

    shown = rearguard_in_process(
        runtime, "assets", "show", "model", "--json", monkeypatch=monkeypatch, capsys=capsys
    )
    table = rearguard_in_process(
        runtime, "assets", "show", "model", monkeypatch=monkeypatch, capsys=capsys
    )

    assert shown.returncode == 0, shown.stderr
    (version,) = json.loads(shown.stdout)["versions"]
    scan = version["scan"]
    fingerprint = allow_fingerprint(policy_for(runtime.settings, "model"))
    assert scan["scanner_version"] == SCANNER_VERSION
    assert scan["allow_fingerprint"] == fingerprint
    assert (scan["verdict"], scan["counts"], scan["engines"]) == ("clean", {}, [])
    assert scan["scanned_during"] == "registration"
    assert table.returncode == 0, table.stderr
    assert f"v1: clean; scanner {SCANNER_VERSION}; allow-list {fingerprint[:12]}" in table.stdout
    # The timeline's registration event carries the same record.
    (registered,) = events(runtime, "asset.registered")
    data = json.loads(registered.data)["scan"]["record"]
    assert (data["scanner_version"], data["allow_fingerprint"], data["verdict"]) == (
        SCANNER_VERSION,
        fingerprint,
        "clean",
    )


def test_rescan_reads_nothing_of_current_versions_and_rescans_outdated_ones(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    for label in ("v1", "v2"):
        add_version(runtime, tmp_path, "model", label)
        approve(runtime, "model", label)
    # Altered bytes that a rescan would see, were it to read them: it must not.
    tamper_version(runtime, "model", "v2")

    current = rearguard_in_process(
        runtime, "assets", "rescan", "--all", monkeypatch=monkeypatch, capsys=capsys
    )

    assert current.returncode == 0, current.stderr
    assert "0 version(s) rescanned, 0 now block trust, 2 current" in current.stdout
    assert status(runtime, "model", "v2") == "known_good"

    as_an_older_scanner_recorded(runtime, "model", "v1")
    older = rearguard_in_process(
        runtime, "assets", "rescan", "model", "--json", monkeypatch=monkeypatch, capsys=capsys
    )

    assert older.returncode == 0, older.stderr
    result = json.loads(older.stdout)
    assert [(v["version"], v["why"]) for v in result["rescanned"]] == [
        ("v1", f"scanner {SCANNER_VERSION - 1} -> {SCANNER_VERSION}")
    ]
    assert result["current"] == 1
    row = record(runtime, "model", "v1")
    assert row is not None and (row.scanner_version, row.scanned_during) == (
        SCANNER_VERSION,
        "rescan",
    )

    # A person's allowance for the asset changes its allow-list: every version is out of date.
    configure(
        runtime,
        runtime.settings.home,
        '[assets.model.scanning]\nallow = ["mypkg.Model"]\nallowed_by = "Dana"\nreason = "ours"\n',
    )
    plan = plan_rescan(runtime=runtime, asset_name="model")

    assert sorted(plan.why.items()) == [
        (("model", "v1"), "allow-list changed"),
        (("model", "v2"), "allow-list changed"),
    ]


def test_a_known_good_version_whose_gadget_an_older_scan_missed_becomes_suspect_with_an_incident(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    a_gadget_approved_and_promoted_by_an_older_scanner(runtime, tmp_path)

    ran = rearguard_in_process(
        runtime, "assets", "rescan", "model", monkeypatch=monkeypatch, capsys=capsys
    )

    assert ran.returncode == 3, ran.stderr
    (opened,) = incidents(runtime)
    assert f"model@v2: clean -> blocked, known_good -> suspect, incident {opened.id}" in ran.stdout
    assert "dangerous posix.system" in ran.stdout
    assert "1 version(s) rescanned, 1 now block trust, 1 current" in ran.stderr
    assert status(runtime, "model", "v2") == "suspect"
    # The incident a sweep would open: the file it was registered with, production affected.
    assert (opened.type, str(opened.source), opened.dedup_key) == (
        "supply_chain",
        "sweep",
        "sweep:model",
    )
    assert str(opened.severity) == "sev1"
    assert opened.state["file"] == "tok.pkl" and opened.state["compromised"] == "v2"
    (suspect,) = events(runtime, "version.suspect")
    assert suspect.incident_id == opened.id
    data = json.loads(suspect.data)
    assert data["from"] == "known_good" and "posix.system" in data["reason"]
    assert [f["construct"] for f in data["findings"]] == ["posix.system"]
    (recorded,) = events(runtime, "scan.recorded")
    assert json.loads(recorded.data)["verdict"] == "blocked"
    row = record(runtime, "model", "v2")
    assert row is not None and (row.verdict, row.counts) == ("blocked", {"dangerous": 1})

    again = rearguard_in_process(
        runtime, "assets", "rescan", "model", monkeypatch=monkeypatch, capsys=capsys
    )

    assert again.returncode == 0, again.stderr
    assert "0 version(s) rescanned" in again.stdout
    assert len(incidents(runtime)) == 1


def test_a_candidate_that_now_fails_is_refused_at_approval_and_opens_no_incident(
    runtime: Runtime, tmp_path: Path
) -> None:
    add_version(runtime, tmp_path, "model", "v1", files={"tok.pkl": GADGET}, policy=UNAWARE)
    as_an_older_scanner_recorded(runtime, "model", "v1")

    result = run_rescan(
        runtime=runtime, plan=plan_rescan(runtime=runtime, asset_name="model"), actor="ops"
    )

    (version,) = result.rescanned
    assert (version.status_before, version.status_after, version.blocks) == (
        "candidate",
        "suspect",
        True,
    )
    assert not result.ok and result.incidents == [] and incidents(runtime) == []
    with pytest.raises(IntegrityViolation, match=r"posix\.system"):
        approve_version(
            db=runtime.db, registry=runtime.registry, name="model", label="v1", by="alice"
        )


def test_rescan_refuses_an_unknown_asset_and_a_missing_choice(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    unknown = rearguard_in_process(
        runtime, "assets", "rescan", "nope", monkeypatch=monkeypatch, capsys=capsys
    )
    neither = rearguard_in_process(
        runtime, "assets", "rescan", monkeypatch=monkeypatch, capsys=capsys
    )

    assert unknown.returncode == 2
    assert "unknown asset 'nope'" in unknown.stderr and "Traceback" not in unknown.stderr
    assert neither.returncode == 2
    assert "name an asset or give --all" in neither.stderr


def test_a_missing_engine_is_recorded_as_not_installed_never_clean(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no modelaudit command anywhere
    configure(runtime, runtime.settings.home, '[scanning]\nengines = ["modelaudit"]\n')
    policy = policy_for(runtime.settings, "model")

    add_version(runtime, tmp_path, "model", "v1", files={"tok.pkl": GADGET}, policy=policy)

    (registered,) = events(runtime, "asset.registered")
    scan = json.loads(registered.data)["scan"]
    assert scan["record"]["engines"] == [
        {"engine": "modelaudit", "version": None, "verdict": "not installed"}
    ]
    (opinion,) = scan["opinions"]
    assert opinion["verdict"] == "not installed"
    assert opinion["detail"].startswith("not scanned by modelaudit: install")


@pytest.mark.skipif(
    shutil.which("modelaudit") is None,
    reason="modelaudit is not installed (pipx install modelaudit puts its command on PATH)",
)
def test_modelaudit_gives_its_verdict_with_its_version(runtime: Runtime, tmp_path: Path) -> None:
    configure(runtime, runtime.settings.home, '[scanning]\nengines = ["modelaudit"]\n')
    policy = policy_for(runtime.settings, "model")

    add_version(
        runtime,
        tmp_path,
        "model",
        "v1",
        files={"tok.pkl": GADGET, "clean.pkl": CLEAN},
        policy=policy,
    )

    (registered,) = events(runtime, "asset.registered")
    scan = json.loads(registered.data)["scan"]
    verdicts = {o["file"]: o["verdict"] for o in scan["opinions"]}
    assert verdicts == {"tok.pkl": "flagged", "clean.pkl": "clean"}
    (engine,) = scan["record"]["engines"]
    assert engine["engine"] == "modelaudit" and engine["verdict"] == "flagged"
    assert engine["version"]


def test_playbook_steps_scan_with_the_same_engine_a_finding_blocks_selection_and_is_recorded(
    runtime: Runtime, tmp_path: Path
) -> None:
    a_gadget_approved_and_promoted_by_an_older_scanner(runtime, tmp_path)
    with runtime.db.session() as session:
        incident = open_incident(
            session=session, type="model_compromise", actor="oncall", asset_name="model"
        )
        incident_id = incident.id
    assert incident_id is not None

    production = verify_production(runtime=runtime, incident_id=incident_id)
    selection = select_known_good(runtime=runtime, incident_id=incident_id)

    assert not production.ok and "dangerous posix.system" in "; ".join(production.problems)
    assert selection.selected == "v1"
    assert status(runtime, "model", "v2") == "suspect"
    blocked = record(runtime, "model", "v2")
    assert blocked is not None
    assert (blocked.verdict, blocked.counts) == ("blocked", {"dangerous": 1})
    assert blocked.scanned_during == "production check"
    (recorded,) = events(runtime, "scan.recorded")
    assert (recorded.incident_id, recorded.version) == (incident_id, "v2")
    assert recorded.actor == "playbook:model_compromise"
    assert json.loads(recorded.data)["during"] == "production check"
    chosen = record(runtime, "model", "v1")
    assert chosen is not None and chosen.scanned_during == "selection"

    verify_integrity(runtime=runtime, incident_id=incident_id)

    again = record(runtime, "model", "v1")
    assert again is not None and (again.verdict, again.scanned_during) == (
        "clean",
        "verification",
    )
    # The same verdicts as before: nothing new in the timeline.
    assert len(events(runtime, "scan.recorded")) == 1
