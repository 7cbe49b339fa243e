"""Trust from evidence: a row written outside rearguard is not trusted, and is a finding.

Each attack is raw SQL on the state tables, as someone who can write the database but does not
rewrite the audit chain; the checks are the real services and the real ``audit verify``
command, in process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import invoke
from scenarios import ALIAS, add_version, build_scenario, production_in_db
from sqlalchemy import text

from rearguard.models.assets.denylist import deny_digest, lift_digest
from rearguard.models.assets.evidence import find_disagreements
from rearguard.models.assets.lifecycle import release_version, retire_version
from rearguard.models.assets.versions import approve_version, promote_version
from rearguard.models.drills.sandbox import create_sandbox
from rearguard.models.errors import EXIT_INTEGRITY, IntegrityViolation, OperationFailed
from rearguard.models.incidents.service import open_incident
from rearguard.models.recovery.containment import quarantine
from rearguard.models.recovery.rollback import rollback
from rearguard.models.recovery.selection import select_known_good
from rearguard.models.runtime import Runtime

ASSET = "model-a"
DIGEST = "ab" * 32


def sql(runtime: Runtime, statement: str, **params: Any) -> None:
    """What an attacker with write access to the database does."""
    with runtime.db.session() as session:
        session.execute(text(statement), params)


def forge_status(runtime: Runtime, label: str, status: str = "known_good") -> None:
    sql(
        runtime,
        "UPDATE asset_version SET status = :status, approved_by = 'alice' WHERE label = :label",
        status=status,
        label=label,
    )


def incident(runtime: Runtime, *, compromised: str | None = "v3") -> int:
    with runtime.db.session() as session:
        opened = open_incident(
            session=session,
            type="model_compromise",
            actor="oncall",
            asset_name=ASSET,
            state={"compromised": compromised} if compromised else None,
        )
        assert opened.id is not None
        return opened.id


def audit_verify(runtime: Runtime) -> tuple[int, dict[str, Any], str]:
    """``rearguard audit verify``: its exit code, its --json answer, and its text."""
    as_json = invoke(runtime, "audit", "verify", "--json")
    plain = invoke(runtime, "audit", "verify")
    assert plain.exit_code == as_json.exit_code, plain.output
    return plain.exit_code, json.loads(as_json.stdout), plain.stdout + plain.stderr


def findings(runtime: Runtime) -> list[str]:
    with runtime.db.read_session() as session:
        return [row.describe() for row in find_disagreements(session)]


@pytest.fixture
def scenario(runtime: Runtime, tmp_path: Path) -> Runtime:
    """v1 and v2 approved by alice, v3 in production, v4 registered and never approved."""
    build_scenario(runtime, tmp_path, asset=ASSET)
    add_version(runtime, tmp_path, ASSET, "v4")
    return runtime


def test_a_status_set_by_hand_is_not_restored_and_is_a_finding(scenario: Runtime) -> None:
    assert audit_verify(scenario)[0] == 0
    forge_status(scenario, "v4")

    selection = select_known_good(runtime=scenario, incident_id=incident(scenario))

    assert selection.selected == "v2"
    (rejected,) = [r for r in selection.rejected if r.version == "v4"]
    assert "no person's approval" in rejected.reason
    code, as_json, output = audit_verify(scenario)
    assert code == EXIT_INTEGRITY, (output, as_json, findings(scenario))
    assert f"{ASSET}@v4" in output and "no person's approval" in output
    assert "Traceback" not in output
    (row,) = as_json["disagreements"]
    assert (row["asset"], row["version"], as_json["ok"]) == (ASSET, "v4", False)


def test_assets_verify_names_a_row_the_chain_does_not_bear_out(scenario: Runtime) -> None:
    assert invoke(scenario, "assets", "verify", ASSET).exit_code == 0
    forge_status(scenario, "v4")

    result = invoke(scenario, "assets", "verify", ASSET, "--json")

    assert result.exit_code == EXIT_INTEGRITY
    answer = json.loads(result.stdout)
    assert answer["ok"] is False
    (line,) = answer["disagreements"]
    assert line.startswith(f"{ASSET}@v4: its row says known_good")


def test_no_version_qualifies_when_only_forged_ones_say_known_good(scenario: Runtime) -> None:
    sql(scenario, "UPDATE asset_version SET status = 'candidate' WHERE label IN ('v1', 'v2')")
    forge_status(scenario, "v4")

    with pytest.raises(OperationFailed, match="v4 is not trusted: its row says known_good"):
        select_known_good(runtime=scenario, incident_id=incident(scenario))
    # Nor will a rollback step move production to it.
    with pytest.raises(IntegrityViolation, match="v4"):
        rollback(runtime=scenario, incident_id=incident(scenario), label="v4")
    assert production_in_db(scenario, ASSET) == "v3"


@pytest.mark.parametrize(
    ("statement", "label", "words"),
    [
        ("UPDATE asset_version SET approved_by = 'mallory' WHERE label = 'v2'", "v2", "alice"),
        ("UPDATE asset_version SET digest = :digest WHERE label = 'v2'", "v2", "registered"),
        (
            "UPDATE version_file SET sha256 = :digest WHERE version_id ="
            " (SELECT id FROM asset_version WHERE label = 'v2')",
            "v2",
            "manifest is not the one registered",
        ),
        (
            "UPDATE asset_version SET status = 'candidate' WHERE label = 'v1'",
            "v1",
            "says known_good",
        ),
    ],
    ids=["approver", "digest", "manifest", "status-lowered"],
)
def test_a_rewritten_version_row_is_named(
    scenario: Runtime, statement: str, label: str, words: str
) -> None:
    sql(scenario, statement, digest=DIGEST)

    selection = select_known_good(runtime=scenario, incident_id=incident(scenario))

    assert selection.selected == ("v1" if label == "v2" else "v2")
    code, _, output = audit_verify(scenario)
    assert code == EXIT_INTEGRITY
    assert f"{ASSET}@{label}" in output and words in output, output


def test_a_deleted_version_row_is_named(scenario: Runtime) -> None:
    v4 = "(SELECT id FROM asset_version WHERE label = 'v4')"
    sql(scenario, f"DELETE FROM version_file WHERE version_id = {v4}")
    sql(scenario, f"DELETE FROM version_scan WHERE version_id = {v4}")
    sql(scenario, "DELETE FROM asset_version WHERE label = 'v4'")

    (finding,) = findings(scenario)

    assert finding.startswith(f"{ASSET}@v4: registered by audit event ")
    assert finding.endswith(" but its row is gone (deleted)")


def test_approve_and_promote_refuse_a_row_the_chain_does_not_bear_out(scenario: Runtime) -> None:
    forge_status(scenario, "v4")
    with pytest.raises(IntegrityViolation, match="no person's approval") as refused:
        approve_version(
            db=scenario.db, registry=scenario.registry, name=ASSET, label="v4", by="alice"
        )
    assert refused.value.exit_code == EXIT_INTEGRITY
    # A quarantined version set back to candidate by hand is not promoted.
    quarantine(runtime=scenario, incident_id=incident(scenario), label="v3")
    forge_status(scenario, "v3", "candidate")
    with pytest.raises(
        IntegrityViolation, match="its row says candidate, but the audit chain says quarantined"
    ):
        promote_version(
            db=scenario.db,
            registry=scenario.registry,
            name=ASSET,
            label="v3",
            alias=ALIAS,
            actor="bob",
        )


EDITED_APPROVAL = (
    "UPDATE timeline_event SET actor = 'mallory'"
    " WHERE action = 'version.known_good' AND version = 'v2'"
)
# v3's quarantine moved to another version, and v3's row made known_good again.
MOVED_QUARANTINE = (
    "UPDATE timeline_event SET version = 'v4'"
    " WHERE action = 'version.quarantined' AND version = 'v3'"
)


@pytest.mark.parametrize("edit", [EDITED_APPROVAL, MOVED_QUARANTINE], ids=["actor", "version"])
def test_an_evidence_event_edited_in_place_voids_the_assets_evidence(
    scenario: Runtime, edit: str
) -> None:
    quarantine(runtime=scenario, incident_id=incident(scenario), label="v3")
    sql(scenario, edit)
    forge_status(scenario, "v3")

    with pytest.raises(OperationFailed, match="evidence does not verify: event") as failed:
        select_known_good(runtime=scenario, incident_id=incident(scenario))

    assert "hash does not match its content" in str(failed.value)
    assert audit_verify(scenario)[0] == EXIT_INTEGRITY


def test_a_moved_alias_row_is_a_finding(scenario: Runtime) -> None:
    sql(
        scenario,
        "UPDATE alias SET version_id = (SELECT id FROM asset_version WHERE label = 'v4')",
    )

    code, as_json, output = audit_verify(scenario)

    assert code == EXIT_INTEGRITY
    assert f"{ASSET} alias {ALIAS}: points at v4, but the audit chain last moved it to v3" in output
    (row,) = as_json["disagreements"]
    assert (row["asset"], row["alias"]) == (ASSET, ALIAS)
    sql(scenario, "DELETE FROM alias")
    assert findings(scenario) == [
        f"{ASSET} alias {ALIAS}: the audit chain last moved it to v3, but its row is gone (deleted)"
    ]


def test_denylist_rows_must_match_the_chain(runtime: Runtime) -> None:
    with runtime.db.session() as session:
        deny_digest(session=session, digest=DIGEST, reason="malicious", actor="oncall")
    assert findings(runtime) == []

    sql(runtime, "DELETE FROM denied_digest")
    code, as_json, output = audit_verify(runtime)
    assert code == EXIT_INTEGRITY
    assert f"denylist {DIGEST}" in output and "entry is gone" in output
    assert as_json["disagreements"][0]["digest"] == DIGEST

    other = "cd" * 32
    sql(
        runtime,
        "INSERT INTO denied_digest (sha256, reason, added_by, added_at)"
        " VALUES (:d, 'x', 'mallory', CURRENT_TIMESTAMP)",
        d=other,
    )
    assert f"denylist {other}: is on the denylist, but no audit event added it" in findings(runtime)


def test_a_lifted_digest_put_back_by_hand_is_a_finding(runtime: Runtime) -> None:
    with runtime.db.session() as session:
        deny_digest(session=session, digest=DIGEST, reason="malicious", actor="oncall")
    with runtime.db.session() as session:
        lift_digest(session=session, digest=DIGEST, actor="alice", reason="vendor cleared it")
    assert findings(runtime) == []

    sql(
        runtime,
        "INSERT INTO denied_digest (sha256, reason, added_by, added_at)"
        " VALUES (:d, 'x', 'mallory', CURRENT_TIMESTAMP)",
        d=DIGEST,
    )

    (finding,) = findings(runtime)
    assert finding.startswith(f"denylist {DIGEST}: is on the denylist, but audit event ")
    assert finding.endswith(" lifted it")


def test_rearguards_own_changes_agree_with_the_chain(scenario: Runtime) -> None:
    quarantine(runtime=scenario, incident_id=incident(scenario), label="v3")
    release_version(
        db=scenario.db, registry=scenario.registry, name=ASSET, label="v3", by="alice", reason="ok"
    )
    approve_version(db=scenario.db, registry=scenario.registry, name=ASSET, label="v3", by="carol")
    retire_version(
        db=scenario.db,
        registry=scenario.registry,
        name=ASSET,
        label="v1",
        by="alice",
        reason="old",
        alias=ALIAS,
    )
    with scenario.db.session() as session:
        deny_digest(session=session, digest=DIGEST, reason="malicious", actor="oncall")

    code, as_json, output = audit_verify(scenario)

    assert (code, as_json["ok"], as_json["disagreements"]) == (0, True, []), output
    assert "every version, alias and denylist entry agrees" in output
    selection = select_known_good(runtime=scenario, incident_id=incident(scenario))
    assert selection.selected == "v3"


def test_a_drill_sandbox_of_an_asset_whose_evidence_is_void_trusts_nothing(
    scenario: Runtime,
) -> None:
    sql(scenario, EDITED_APPROVAL)

    sandbox = create_sandbox(runtime=scenario, asset=ASSET, name="drill-void")
    try:
        with pytest.raises(OperationFailed, match="production's evidence did not verify"):
            select_known_good(runtime=sandbox.runtime, incident_id=incident(sandbox.runtime))
    finally:
        sandbox.close(remove=True)


def test_a_drill_sandbox_trusts_what_productions_chain_records(
    scenario: Runtime, tmp_path: Path
) -> None:
    forge_status(scenario, "v4")

    sandbox = create_sandbox(runtime=scenario, asset=ASSET, name="drill-evidence")
    try:
        drilled = sandbox.runtime
        with drilled.db.read_session() as session:
            # Only the row forged in production disagrees, in the sandbox as there.
            assert [row.describe() for row in find_disagreements(session)] == findings(scenario)
        selection = select_known_good(runtime=drilled, incident_id=incident(drilled))
    finally:
        sandbox.close(remove=True)

    assert selection.selected == "v2"
    assert [r.version for r in selection.rejected] == ["v4"]
