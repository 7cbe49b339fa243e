"""The known-good selection rule and the containment steps, driven through real incidents.

The steps are called as plain functions (``runtime=``, ``incident_id=``), exactly as the Prefect
tasks call them, against a real store and database.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import stat
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from scenarios import tamper
from sqlalchemy import func
from sqlmodel import select

from rearguard.models.assets.versions import (
    approve_version,
    get_asset,
    get_version,
    promote_version,
    register_version,
)
from rearguard.models.audit.chain import events_for_incident, verify_stored_chain
from rearguard.models.db.tables import AssetVersion, TimelineEvent
from rearguard.models.enums import AssetKind, IncidentStatus, VersionStatus
from rearguard.models.errors import OperationFailed
from rearguard.models.incidents.service import get_incident, open_incident
from rearguard.models.recovery.containment import quarantine
from rearguard.models.recovery.results import Quarantined, Rejection, Selection
from rearguard.models.recovery.selection import select_known_good, verify_integrity
from rearguard.models.runtime import Runtime

ASSET = "classifier"

# Fails for a version whose weights.bin starts with "reject", passes any other.
_VALIDATOR = (
    "import os, sys; "
    "p = os.path.join(os.environ['REARGUARD_ASSET_PATH'], 'weights.bin'); "
    "sys.exit(1 if open(p, 'rb').read().startswith(b'reject') else 0)"
)
CONTENT_VALIDATOR = f"{shlex.quote(sys.executable)} -c {shlex.quote(_VALIDATOR)}"
ALWAYS_FAILS = f"{shlex.quote(sys.executable)} -c {shlex.quote('import sys; sys.exit(1)')}"


def add_version(
    runtime: Runtime,
    make_version,  # type: ignore[no-untyped-def]
    label: str,
    *,
    approve: bool = True,
    content: bytes | None = None,
    validate_command: str | None = None,
) -> Path:
    """Register ``label`` of the asset (approved by alice unless told not to); return its files."""
    source = make_version(label, {"weights.bin": content or f"weights of {label}".encode()})
    register_version(
        db=runtime.db,
        registry=runtime.registry,
        name=ASSET,
        source=source,
        label=label,
        kind=AssetKind.MODEL,
        actor="tester",
        validate_command=validate_command,
    )
    if approve:
        approve_version(
            db=runtime.db, registry=runtime.registry, name=ASSET, label=label, by="alice"
        )
    return runtime.registry.version_location(asset=ASSET, label=label)


def promote(runtime: Runtime, label: str) -> None:
    """Put a version in production."""
    promote_version(
        db=runtime.db,
        registry=runtime.registry,
        name=ASSET,
        label=label,
        alias="production",
        actor="tester",
    )


def open_case(
    runtime: Runtime, *, since: datetime | None = None, compromised: str | None = None
) -> int:
    """Open a model_compromise incident on the asset and return its id."""
    with runtime.db.session() as session:
        incident = open_incident(
            session=session,
            type="model_compromise",
            actor="oncall",
            asset_name=ASSET,
            since=since,
            state={"compromised": compromised} if compromised else None,
        )
        assert incident.id is not None
        return incident.id


def status_of(runtime: Runtime, label: str) -> AssetVersion:
    """The stored row of one version."""
    with runtime.db.read_session() as session:
        return get_version(
            session=session, asset=get_asset(session=session, name=ASSET), label=label
        )


def selected_state(runtime: Runtime, incident_id: int) -> str | None:
    """What the incident records as the selected version."""
    with runtime.db.read_session() as session:
        return get_incident(session=session, incident_id=incident_id).state.get("selected")


def test_newest_known_good_wins(runtime: Runtime, make_version) -> None:
    add_version(runtime, make_version, "v1")
    add_version(runtime, make_version, "v2")
    add_version(runtime, make_version, "v3", approve=False)
    promote(runtime, "v3")
    incident_id = open_case(runtime, compromised="v3")

    result = select_known_good(runtime=runtime, incident_id=incident_id)

    assert result == Selection(selected="v2")
    assert selected_state(runtime, incident_id) == "v2"


def test_candidate_is_never_selected_even_if_newer(runtime: Runtime, make_version) -> None:
    add_version(runtime, make_version, "v1")
    add_version(runtime, make_version, "v2", approve=False)
    incident_id = open_case(runtime)

    result = select_known_good(runtime=runtime, incident_id=incident_id)

    assert result.selected == "v1"
    assert status_of(runtime, "v2").status == VersionStatus.CANDIDATE


def test_known_good_registered_after_since_is_skipped(runtime: Runtime, make_version) -> None:
    add_version(runtime, make_version, "v1")
    since = datetime.now(UTC)
    add_version(runtime, make_version, "v2")
    incident_id = open_case(runtime, since=since)

    result = select_known_good(runtime=runtime, incident_id=incident_id)

    assert result.selected == "v1"
    ((rejected, reason),) = [(r.version, r.reason) for r in result.rejected]
    # Both times, so a --since that excludes every version says why.
    stated = since.isoformat(timespec="seconds").replace("+00:00", "Z")
    assert rejected == "v2" and reason.startswith(f"registered {stated[:10]}T")
    assert reason.endswith(f", at or after --since {stated}")


def test_known_good_registered_exactly_at_since_is_skipped(runtime: Runtime, make_version) -> None:
    add_version(runtime, make_version, "v1")
    add_version(runtime, make_version, "v2")
    since = status_of(runtime, "v2").registered_at
    assert since > status_of(runtime, "v1").registered_at
    incident_id = open_case(runtime, since=since)

    result = select_known_good(runtime=runtime, incident_id=incident_id)

    assert result.selected == "v1"
    assert [r.version for r in result.rejected] == ["v2"]


def test_tampered_known_good_is_skipped_and_marked_suspect(runtime: Runtime, make_version) -> None:
    add_version(runtime, make_version, "v1")
    v2 = add_version(runtime, make_version, "v2")
    tamper(v2 / "weights.bin")
    incident_id = open_case(runtime)

    result = select_known_good(runtime=runtime, incident_id=incident_id)

    assert result.selected == "v1"
    (rejection,) = result.rejected
    assert rejection.version == "v2"
    assert rejection.reason.startswith("fails verification: weights.bin: sha256 mismatch")
    row = status_of(runtime, "v2")
    assert row.status == VersionStatus.SUSPECT
    assert row.status_reason and "sha256 mismatch" in row.status_reason
    with runtime.db.read_session() as session:
        events = events_for_incident(session, incident_id=incident_id)
        chain = verify_stored_chain(session)
    suspect = [e for e in events if e.action == "version.suspect"]
    assert [(e.asset, e.version) for e in suspect] == [(ASSET, "v2")]
    data = json.loads(suspect[0].data)
    assert (data["from"], data["to"]) == ("known_good", "suspect")
    assert "sha256 mismatch" in data["reason"]
    assert chain.ok


def test_verify_integrity_marks_failures_suspect_before_selection(
    runtime: Runtime, make_version
) -> None:
    add_version(runtime, make_version, "v1")
    add_version(runtime, make_version, "v2")
    v3 = add_version(runtime, make_version, "v3")
    (v3 / "extra.py").write_text("print('injected')\n")
    incident_id = open_case(runtime)

    verified = verify_integrity(runtime=runtime, incident_id=incident_id)
    result = select_known_good(runtime=runtime, incident_id=incident_id, checks=verified.checks)

    assert verified.failed == ("v3",)
    assert sorted(verified.checks) == ["v1", "v2", "v3"]
    assert verified.checks["v3"].ok is False
    assert status_of(runtime, "v3").status == VersionStatus.SUSPECT
    assert result.selected == "v2"
    with runtime.db.read_session() as session:
        events = events_for_incident(session, incident_id=incident_id)
    assert [(e.action, e.version) for e in events if e.action.startswith("version.")] == [
        ("version.suspect", "v3")
    ]


def test_version_failing_validation_is_skipped(runtime: Runtime, make_version) -> None:
    add_version(runtime, make_version, "v1", validate_command=CONTENT_VALIDATOR)
    add_version(runtime, make_version, "v2", content=b"reject me")
    incident_id = open_case(runtime)

    result = select_known_good(runtime=runtime, incident_id=incident_id)

    assert result == Selection(
        selected="v1", rejected=(Rejection(version="v2", reason="validation exited 1"),)
    )
    # A validation failure is not an integrity failure: the version keeps its status.
    assert status_of(runtime, "v2").status == VersionStatus.KNOWN_GOOD


def test_none_qualifies_names_each_rejected_version(runtime: Runtime, make_version) -> None:
    tampered = add_version(
        runtime, make_version, "old-tampered", validate_command=CONTENT_VALIDATOR
    )
    add_version(runtime, make_version, "fails-check", content=b"reject: bad outputs")
    since = datetime.now(UTC)
    add_version(runtime, make_version, "after-since")
    add_version(runtime, make_version, "never-approved", approve=False)
    tamper(tampered / "weights.bin")
    incident_id = open_case(runtime, since=since)

    with pytest.raises(OperationFailed) as raised:
        select_known_good(runtime=runtime, incident_id=incident_id)

    message = raised.value.message
    assert message.startswith(f"no known-good version of {ASSET} qualifies: ")
    assert "after-since registered " in message and ", at or after --since " in message
    assert "fails-check validation exited 1" in message
    assert "old-tampered fails verification: weights.bin: sha256 mismatch" in message
    assert "never-approved" not in message
    assert selected_state(runtime, incident_id) is None
    assert status_of(runtime, "old-tampered").status == VersionStatus.SUSPECT


def test_every_version_failing_validation_fails_selection(runtime: Runtime, make_version) -> None:
    add_version(runtime, make_version, "v1", validate_command=ALWAYS_FAILS)
    add_version(runtime, make_version, "v2")
    incident_id = open_case(runtime)

    with pytest.raises(OperationFailed) as raised:
        select_known_good(runtime=runtime, incident_id=incident_id)

    assert "v2 validation exited 1" in raised.value.message
    assert "v1 validation exited 1" in raised.value.message


def test_no_known_good_version_at_all(runtime: Runtime, make_version) -> None:
    add_version(runtime, make_version, "v1", approve=False)
    incident_id = open_case(runtime)

    with pytest.raises(OperationFailed, match="the asset has no known-good version"):
        select_known_good(runtime=runtime, incident_id=incident_id)


def test_quarantine_keeps_evidence_as_found(runtime: Runtime, make_version) -> None:
    add_version(runtime, make_version, "v1")
    v2 = add_version(runtime, make_version, "v2")
    promote(runtime, "v2")
    recorded = hashlib.sha256(b"weights of v2").hexdigest()
    tamper(v2 / "weights.bin")
    as_found = hashlib.sha256((v2 / "weights.bin").read_bytes()).hexdigest()
    incident_id = open_case(runtime, compromised="v2")

    result = quarantine(runtime=runtime, incident_id=incident_id)

    evidence = runtime.settings.home / "evidence" / f"incident-{incident_id}" / ASSET / "v2"
    assert result == Quarantined(
        quarantined="v2", evidence=str(evidence), altered_files=("weights.bin",)
    )
    record = json.loads((evidence / "evidence.json").read_text())
    (entry,) = record["files"]
    assert entry["path"] == "weights.bin"
    assert entry["sha256_recorded"] == recorded
    assert entry["sha256_as_found"] == as_found != recorded
    assert entry["matches"] is False
    copy = evidence / "files" / "weights.bin"
    assert copy.read_bytes() == (v2 / "weights.bin").read_bytes()
    assert stat.S_IMODE(copy.stat().st_mode) & 0o222 == 0
    # The store keeps the content: quarantine copies, it never deletes.
    assert (v2 / "weights.bin").is_file()
    assert runtime.registry.object_path(recorded).is_file()
    assert status_of(runtime, "v2").status == VersionStatus.QUARANTINED
    with runtime.db.read_session() as session:
        assert (
            get_incident(session=session, incident_id=incident_id).status
            == IncidentStatus.CONTAINED
        )
        events_after_first = session.exec(select(func.count()).select_from(TimelineEvent)).one()

    again = quarantine(runtime=runtime, incident_id=incident_id)

    assert again == result
    assert json.loads((evidence / "evidence.json").read_text()) == record
    with runtime.db.read_session() as session:
        assert session.exec(select(func.count()).select_from(TimelineEvent)).one() == (
            events_after_first
        )
    verified = verify_integrity(runtime=runtime, incident_id=incident_id)
    assert sorted(verified.checks) == ["v1"]
    assert select_known_good(runtime=runtime, incident_id=incident_id).selected == "v1"


def test_a_secret_pasted_into_the_summary_never_reaches_the_timeline(runtime: Runtime) -> None:
    from rearguard.models.audit.chain import events_for_incident
    from rearguard.models.incidents.service import open_incident

    token = "xoxb-123456789012-123456789012-abcdefghijklmnopqrstuvwx"
    with runtime.db.session() as session:
        incident = open_incident(
            session=session,
            type="model_compromise",
            actor="oncall",
            summary=f"bot token leaked in the prompt: {token}",
        )
        incident_id = incident.id
    with runtime.db.read_session() as session:
        events = events_for_incident(session=session, incident_id=incident_id)
        stored = session.get(type(incident), incident_id)
    assert token not in stored.summary
    assert "bot token leaked in the prompt" in stored.summary
    assert all(token not in event.data for event in events)
