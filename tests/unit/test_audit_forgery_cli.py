"""``rearguard audit verify`` against a database forged by someone who can write it.

Each attack is raw SQL on the tables (never rearguard's own code), then the real command in a
subprocess: exit 3, naming the first bad record.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from typing import Any

import pytest
from conftest import REARGUARD_BIN
from sqlalchemy import text

from rearguard.models.audit.chain import append_event
from rearguard.models.enums import EventKind
from rearguard.models.runtime import Runtime


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def rearguard(runtime: Runtime, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed command on the test's home and database (no Prefect needed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REARGUARD_")}
    env.update(
        REARGUARD_HOME=str(runtime.settings.home),
        REARGUARD_DATABASE_URL=runtime.db.url,
        COLUMNS="200",
    )
    return subprocess.run(
        [str(REARGUARD_BIN), *args],
        env=env,
        cwd=runtime.settings.home,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


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
