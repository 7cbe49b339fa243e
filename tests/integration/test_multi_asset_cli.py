"""``rearguard incident open`` end to end for supply_chain, data_poisoning and model_theft.

Versions are seeded in-process (the same home and database as the subprocess); only what the
CLI adds (options, exit codes, one-line errors) runs through ``rearguard``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from scenarios import add_version, approve, production_in_db, promote

from rearguard.models.errors import EXIT_INTEGRITY, EXIT_USAGE
from rearguard.models.runtime import Runtime

EVIL = b"backdoored vendor library" * 8


def test_supply_chain_from_a_file_and_the_denylist(cli, runtime: Runtime, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    evil = tmp_path / "advisory.so"
    evil.write_bytes(EVIL)
    add_version(runtime, tmp_path, "m", "v1")
    add_version(runtime, tmp_path, "m", "v2", files={"w.bin": b"2", "libvendor.so": EVIL})
    approve(runtime, "m", "v1")
    promote(runtime, "m", "v2")

    done = cli("incident", "open", "--type", "supply_chain", "--file", str(evil), "--json")

    assert done.returncode == 0, done.stderr
    incident = json.loads(done.stdout)
    assert incident["status"] == "recovered"
    assert incident["state"]["digest"] == hashlib.sha256(EVIL).hexdigest()
    assert incident["state"]["production_tainted"] == {"m": "v2"}
    assert production_in_db(runtime, "m") == "v1"
    again = tmp_path / "v3"
    again.mkdir()
    (again / "libvendor.so").write_bytes(EVIL)
    refused = cli("assets", "register", "m", str(again), "--version", "v3")
    assert refused.returncode == EXIT_INTEGRITY
    assert "denylisted digest" in refused.stderr and "Traceback" not in refused.stderr
    bad = cli("incident", "open", "--type", "supply_chain", "--digest", "xyz")
    assert bad.returncode == EXIT_USAGE and "invalid --digest" in bad.stderr


def test_data_poisoning_through_the_cli(cli, runtime: Runtime, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    add_version(runtime, tmp_path, "corpus", "v1", kind="dataset")
    since = datetime.now(UTC).isoformat()
    add_version(runtime, tmp_path, "corpus", "v2", kind="dataset")
    for label in ("v1", "v2"):
        add_version(runtime, tmp_path, "m", label, trained_on=f"corpus@{label}")
        approve(runtime, "m", label)
    promote(runtime, "m", "v2")
    missing = cli("incident", "open", "--type", "data_poisoning", "--dataset", "corpus")
    assert missing.returncode == EXIT_USAGE and "--since" in missing.stderr

    done = cli(
        "incident", "open", "--type", "data_poisoning", "--dataset", "corpus", "--since", since
    )

    assert done.returncode == 0, done.stderr
    assert "recovered" in done.stdout
    assert production_in_db(runtime, "m") == "v1"


def test_model_theft_through_the_cli(cli, runtime: Runtime, home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    add_version(runtime, tmp_path, "m", "v1")
    approve(runtime, "m", "v1")
    promote(runtime, "m", "v1")
    argv = json.dumps([sys.executable, "-c", "print('rotated')"])
    (home / "rearguard.toml").write_text(
        f'[hooks.rotate_credentials]\nargv = {argv}\ncredentials = ["api-key"]\n'
        "[assets.m]\npersonal_data = true\n"
    )

    done = cli("incident", "open", "--type", "model_theft", "--asset", "m")

    assert done.returncode == 0, done.stderr
    assert "contained" in done.stdout
    assert "UK GDPR Art. 33" in done.stderr  # the console channel's copy
    listed = {p["type"]: p for p in json.loads(cli("playbook", "list", "--json").stdout)}
    assert listed["model_theft"]["atlas_ids"] == ["AML.T0024", "AML.T0025"]
    assert listed["data_poisoning"]["inputs"] == ["dataset", "since"]
    assert "run_hook:rotate_credentials" in listed["model_theft"]["steps"]
