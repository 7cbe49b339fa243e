"""Signed checkpoints around a real playbook run, as an operator sees them.

The real ``incident open`` runs the model-compromise playbook on the session's Prefect server;
its end signs a checkpoint to a file sink (and tries an unreachable webhook, which must not hold
it up); the published file then vouches for the database and for the incident's export.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from key_helpers import write_key_pair
from scenarios import build_scenario

from rearguard.models.runtime import Runtime

ASSET = "model-a"


def keys(directory: Path) -> tuple[Path, Path]:
    key = Ed25519PrivateKey.generate()
    return write_key_pair(key, directory / "cp.pem", directory / "cp.pub.pem")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_playbook_run_ends_with_a_published_checkpoint_that_vouches_for_its_export(
    cli: Any, runtime: Runtime, home: Path, tmp_path: Path
) -> None:
    private, public = keys(tmp_path)
    sink = tmp_path / "checkpoints.jsonl"
    unreachable = f"http://127.0.0.1:{closed_port()}/checkpoints"
    (home / "rearguard.toml").write_text(
        f'[audit]\nsigning_key = "{private}"\n'
        f'checkpoint_sinks = ["file://{sink}", "{unreachable}"]\n'
    )
    env = {"REARGUARD_AUDIT_WEBHOOK_SECRET": "whsec-test"}
    build_scenario(runtime, tmp_path / "assets", asset=ASSET, tampered=True)

    opened = cli(
        "incident", "open", "--type", "model_compromise", "--asset", ASSET, "--json", env=env
    )

    assert opened.returncode == 0, opened.stderr
    incident = json.loads(opened.stdout)
    assert incident["status"] == "recovered"
    lines = [json.loads(line) for line in sink.read_text().splitlines()]
    ended = lines[-1]
    assert ended["reason"] == f"incident {incident['id']} run ended"
    assert str(incident["id"]) in ended["incidents"]
    verified = cli("audit", "verify", "--checkpoints", str(sink), "--public-key", str(public))
    assert verified.returncode == 0, verified.stderr
    export = tmp_path / "timeline.jsonl"
    exported = cli("export", str(incident["id"]), "--format", "jsonl", "-o", str(export))
    assert exported.returncode == 0, exported.stderr
    offline = cli("audit", "verify", "--file", str(export), "--public-key", str(public))
    assert offline.returncode == 0, offline.stderr
    assert f"signed checkpoint {ended['number']}" in offline.stdout
    # The webhook was unreachable: its checkpoints are kept, and a manual pass says so.
    again = cli("audit", "checkpoint", "--json", env=env)
    assert again.returncode == 1
    assert unreachable in json.loads(again.stdout)["failing"]
