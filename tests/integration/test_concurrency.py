"""Two incidents on two assets, run at the same time by two ``rearguard`` processes.

Both processes share the home, the database and the Prefect server. Each asset must end on its
own known-good version, and the one audit chain must stay linear: gapless, every hash intact.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from cli_helpers import open_compromise
from conftest import REARGUARD_BIN
from scenarios import build_scenario

from rearguard.models.assets.versions import (
    alias_version,
    get_asset,
    get_version,
)
from rearguard.models.audit.chain import iter_stored_events, verify_stored_chain
from rearguard.models.db.tables import ChainHead
from rearguard.models.runtime import Runtime

ASSETS = ("model-a", "model-b")


def seed(runtime: Runtime, root: Path, asset: str) -> None:
    """v1 and v2 approved, v3 in production and tampered."""
    build_scenario(runtime, root, asset=asset, tampered=True)


def test_two_incidents_at_once_each_roll_back_their_own_asset(  # type: ignore[no-untyped-def]
    cli, runtime: Runtime, cli_env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    for asset in ASSETS:
        seed(runtime, tmp_path, asset)
    # Both runs pause inside their first step, so their playbooks overlap for certain.
    env = {**cli_env, "REARGUARD_FAILPOINTS": "quarantine.after_intent=sleep:1"}

    processes = [
        subprocess.Popen(
            [str(REARGUARD_BIN), *open_compromise(asset), "--json"],
            env=env,
            cwd=home,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for asset in ASSETS
    ]
    outputs = [process.communicate(timeout=180) for process in processes]

    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, (stdout, stderr)
        assert "Traceback" not in stdout + stderr
    results = {json.loads(stdout)["asset"]: json.loads(stdout) for stdout, _ in outputs}
    assert sorted(results) == list(ASSETS)
    assert len({r["id"] for r in results.values()}) == 2
    with runtime.db.read_session() as session:
        for asset in ASSETS:
            assert results[asset]["status"] == "recovered"
            assert results[asset]["state"] == {"compromised": "v3", "selected": "v2"}
            found = get_asset(session=session, name=asset)
            current = alias_version(session=session, asset=found, alias="production")
            assert current is not None and current.label == "v2"
            assert runtime.registry.read_alias(asset=asset, alias="production") == "v2"
            v3 = get_version(session=session, asset=found, label="v3")
            assert str(v3.status) == "quarantined"
        events = list(iter_stored_events(session))
        report = verify_stored_chain(session)
        head = session.get(ChainHead, 1)
    assert report.ok, report.problem
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1))
    assert head is not None and head.seq == seqs[-1]
    for asset, result in results.items():
        mine = [e for e in events if e["incident_id"] == result["id"]]
        assert {e["asset"] for e in mine} == {asset}
        assert [e["action"] for e in mine if e["action"] == "alias.moved"] == ["alias.moved"]
    audit = cli("audit", "verify")
    assert audit.returncode == 0, audit.stderr
