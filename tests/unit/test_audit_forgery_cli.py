"""``rearguard audit verify`` against a database forged by someone who can write it.

Each attack is raw SQL on the tables (never rearguard's own code), then the real command in a
subprocess: exit 3, naming the first bad record.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import rearguard
from sqlalchemy import text

from rearguard.models.audit.chain import append_event
from rearguard.models.enums import EventKind
from rearguard.models.runtime import Runtime


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def append(runtime: Runtime, count: int, *, incident_id: int | None = None) -> None:
    for i in range(count):
        with runtime.db.session() as session:
            append_event(
                session,
                kind=EventKind.DECISION,
                action="triage.note",
                actor="oncall",
                incident_id=incident_id,
                data={"i": i, "note": "looked"},
            )


def sql(runtime: Runtime, statement: str, **params: Any) -> None:
    with runtime.db.session() as session:
        session.execute(text(statement), params)


def forged_approval(seq: int, prev_hash: str) -> dict[str, Any]:
    """A forged ``approval.approved`` event, its hash computed the documented way."""
    row: dict[str, Any] = {
        "seq": seq,
        "ts": "2026-01-01T00:00:00.000000Z",
        "incident_id": 1,
        "kind": "decision",
        "action": "approval.approved",
        "actor": "alice",
        "asset": "model",
        "version": "backdoored",
        "data": {"note": "approved"},
        "prev_hash": prev_hash,
    }
    row["hash"] = hashlib.sha256(canonical(row).encode()).hexdigest()
    return {**row, "data": canonical(row["data"])}


def insert(runtime: Runtime, row: dict[str, Any]) -> None:
    columns = ", ".join(row)
    values = ", ".join(f":{name}" for name in row)
    sql(runtime, f"INSERT INTO timeline_event ({columns}) VALUES ({values})", **row)


def broken(result: subprocess.CompletedProcess[str], seq: int, words: list[str]) -> None:
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert f"event {seq}" in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def test_a_forged_event_at_seq_zero_is_named(runtime: Runtime) -> None:
    append(runtime, 3, incident_id=1)
    assert rearguard(runtime, "audit", "verify").returncode == 0
    insert(runtime, forged_approval(0, "0" * 64))

    result = rearguard(runtime, "audit", "verify")

    broken(result, 0, ["before the chain's first"])
    as_json = json.loads(rearguard(runtime, "audit", "verify", "--json").stdout)
    assert as_json["ok"] is False and as_json["first_bad"]["seq"] == 0


def test_a_duplicate_key_in_stored_data_is_named(runtime: Runtime) -> None:
    append(runtime, 3)
    # Both values parse: json.loads keeps the last ("i": 1), SQLite's json_extract the first.
    sql(
        runtime,
        "UPDATE timeline_event SET data = :prefix || substr(data, 2) WHERE seq = 2",
        prefix='{"i":666,',
    )

    result = rearguard(runtime, "audit", "verify")

    broken(result, 2, ["canonical"])


@pytest.mark.parametrize("seq", [-1])
def test_a_forged_event_below_zero_is_named(runtime: Runtime, seq: int) -> None:
    append(runtime, 2)
    insert(runtime, forged_approval(seq, "0" * 64))

    broken(rearguard(runtime, "audit", "verify"), seq, ["before the chain's first"])


# -- exported timelines: gaps and redacted records ----------------------------------------------

SLACK_TOKEN = "xoxb-123456789012-123456789012-abcdefghijklmnopqrstuvwx"


def two_incidents(runtime: Runtime, root: Path) -> tuple[int, int]:
    """Two interleaved incidents; the first holds a pasted secret (a redacted record)."""
    from scenarios import build_scenario, chain_secret_as_an_older_rearguard_did

    from rearguard.models.enums import Severity
    from rearguard.models.incidents.service import open_incident

    build_scenario(runtime, root, asset="model-a")
    ids = []
    for summary in ("first", "second"):
        with runtime.db.session() as session:
            incident = open_incident(
                session=session,
                type="model_compromise",
                actor="oncall",
                asset_name="model-a",
                severity=Severity.SEV2,
                summary=summary,
                state={"compromised": "v3"},
            )
            ids.append(int(incident.id or 0))
    first, second = ids
    for incident_id, note in [
        (first, "looked at it"),
        (second, "other incident"),
        (first, f"token {SLACK_TOKEN}"),
        (second, "other again"),
        (first, "rolled back"),
    ]:
        if SLACK_TOKEN in note:
            # Today's chain redacts what it appends; an older rearguard's did not.
            chain_secret_as_an_older_rearguard_did(
                runtime, incident_id, action="triage.note", data={"note": note}
            )
            continue
        with runtime.db.session() as session:
            append_event(
                session,
                kind=EventKind.DECISION,
                action="triage.note",
                actor="oncall",
                incident_id=incident_id,
                data={"note": note},
            )
    return first, second


def exported(runtime: Runtime, incident_id: int, path: Path) -> list[dict[str, Any]]:
    from rearguard.flows.exports.export import write_export
    from rearguard.flows.exports.formats import ExportFormat

    with path.open("w", encoding="utf-8", newline="") as out:
        write_export(
            db=runtime.db, incident_id=incident_id, export_format=ExportFormat.JSONL, out=out
        )
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def rewrite(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(canonical(r) + "\n" for r in records), encoding="utf-8")


def test_gaps_name_the_incidents_they_withhold_and_the_database_confirms_them(
    runtime: Runtime, tmp_path: Path
) -> None:
    first, second = two_incidents(runtime, tmp_path)
    path = tmp_path / "first.jsonl"
    records = exported(runtime, first, path)

    gaps = [r for r in records if r["record"] == "gap"]
    assert gaps and all(r["incidents"] == [second] for r in gaps)
    result = rearguard(runtime, "audit", "verify", "--file", str(path), "--against-database")
    assert result.returncode == 0, result.stderr
    assert "agrees with this database" in result.stdout


def forged_gap(records: list[dict[str, Any]], first: int) -> tuple[list[dict[str, Any]], int]:
    """The incident's 'rolled back' event replaced by a gap that links (prev_hash, hash)."""
    index = next(i for i, r in enumerate(records) if r.get("data", {}).get("note") == "rolled back")
    event = records[index]
    gap = {
        "record": "gap",
        "from_seq": event["seq"],
        "to_seq": event["seq"],
        "incidents": [first + 1],
        "prev_hash": event["prev_hash"],
        "hash": event["hash"],
    }
    forged = [*records[:index], gap, *records[index + 1 :]]
    # Two gaps in a row link as well as one.
    end = forged[-1]
    end.update(events=end["events"] - 1, gaps=end["gaps"] + 1)
    return forged, index + 1


def test_a_gap_hiding_the_incidents_own_event_passes_alone_but_not_against_the_database(
    runtime: Runtime, tmp_path: Path
) -> None:
    first, _ = two_incidents(runtime, tmp_path)
    path = tmp_path / "forged.jsonl"
    forged, line = forged_gap(exported(runtime, first, path), first)
    rewrite(path, forged)
    # The file alone links: a gap is the exporter's word (the README says so).
    assert rearguard(runtime, "audit", "verify", "--file", str(path)).returncode == 0

    result = rearguard(runtime, "audit", "verify", "--file", str(path), "--against-database")

    assert result.returncode == 3, result.stderr
    assert f"line {line}" in result.stderr
    assert f"withholds events of incident {first} itself" in result.stderr


def test_a_gap_naming_the_wrong_incidents_is_named(runtime: Runtime, tmp_path: Path) -> None:
    first, second = two_incidents(runtime, tmp_path)
    path = tmp_path / "renamed.jsonl"
    records = exported(runtime, first, path)
    line = next(i for i, r in enumerate(records, start=1) if r["record"] == "gap")
    records[line - 1]["incidents"] = [None]
    rewrite(path, records)

    result = rearguard(runtime, "audit", "verify", "--file", str(path), "--against-database")

    assert result.returncode == 3 and f"line {line}" in result.stderr, result.stderr
    assert f"the database [{second}]" in result.stderr


def test_a_rewritten_event_relabelled_redacted_is_named_against_the_database(
    runtime: Runtime, tmp_path: Path
) -> None:
    first, _ = two_incidents(runtime, tmp_path)
    path = tmp_path / "relabelled.jsonl"
    records = exported(runtime, first, path)
    line, event = next(
        (i, r)
        for i, r in enumerate(records, start=1)
        if r.get("data", {}).get("note") == "rolled back"
    )
    records[line - 1] = {**event, "record": "redacted", "data": {"note": "nothing to see"}}
    end = records[-1]
    end.update(redacted=end["redacted"] + 1)
    rewrite(path, records)
    assert rearguard(runtime, "audit", "verify", "--file", str(path)).returncode == 0

    result = rearguard(runtime, "audit", "verify", "--file", str(path), "--against-database")

    assert result.returncode == 3 and f"line {line}" in result.stderr, result.stderr
    assert "rewritten" in result.stderr


def test_an_honest_redacted_record_agrees_with_the_database(
    runtime: Runtime, tmp_path: Path
) -> None:
    first, _ = two_incidents(runtime, tmp_path)
    path = tmp_path / "honest.jsonl"
    records = exported(runtime, first, path)
    assert any(r["record"] == "redacted" for r in records)
    assert SLACK_TOKEN not in path.read_text(encoding="utf-8")

    from rearguard.flows.exports.timeline_jsonl import verify_file

    report = verify_file(path, db=runtime.db)
    assert report.ok, report.problem


def test_a_duplicate_key_in_an_exported_line_is_named(runtime: Runtime, tmp_path: Path) -> None:
    first, _ = two_incidents(runtime, tmp_path)
    path = tmp_path / "dup.jsonl"
    exported(runtime, first, path)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    # The second line is the first event: a reader keeping the first "actor" sees mallory.
    lines[1] = lines[1].replace('"actor":', '"actor":"mallory","actor":', 1)
    path.write_text("".join(lines), encoding="utf-8")

    result = rearguard(runtime, "audit", "verify", "--file", str(path))

    assert result.returncode == 3 and "line 2" in result.stderr, result.stderr
    assert "canonical" in result.stderr
