"""Signed checkpoints around a real playbook run, as an operator sees them.

The real ``incident open`` runs the model-compromise playbook on the session's Prefect server;
its end signs a checkpoint to a file sink (and tries an unreachable webhook, which must not hold
it up); the published file then vouches for the database and for the incident's export. A
webhook sink that is down when a playbook ends gets the checkpoint from the scheduler (what
``rearguard serve`` runs) once it answers, once.
"""

from __future__ import annotations

import json
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from intake_helpers import wait_for
from key_helpers import write_key_pair
from notification_helpers import WEBHOOK_SECRET, WebhookReceiver
from pydantic import SecretStr
from scenarios import build_scenario
from sqlmodel import col, select

from rearguard.flows.drills.scheduler import DrillScheduler
from rearguard.flows.opening import open_and_record
from rearguard.flows.run_playbook import run_playbook
from rearguard.models.config.audit import AuditSettings
from rearguard.models.config.drills import SchedulerSettings
from rearguard.models.db.tables import CheckpointDelivery
from rearguard.models.enums import Severity
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


def unpublished(runtime: Runtime) -> list[CheckpointDelivery]:
    with runtime.db.read_session() as session:
        query = select(CheckpointDelivery).where(col(CheckpointDelivery.published_at).is_(None))
        return list(session.exec(query))


@pytest.mark.usefixtures("prefect_api_url")
def test_a_sink_down_at_a_playbooks_end_gets_its_checkpoint_once_it_answers(
    runtime: Runtime, tmp_path: Path
) -> None:
    private, _ = keys(tmp_path)
    sink = tmp_path / "checkpoints.jsonl"
    with WebhookReceiver(statuses=[503]) as receiver:
        audit = AuditSettings(
            signing_key=private,
            checkpoint_sinks=[f"file://{sink}", receiver.url],
            webhook_secret=SecretStr(WEBHOOK_SECRET),
            retry_base_s=0.01,
        )
        settings = replace(runtime.settings, audit=audit, scheduler=SchedulerSettings(poll_s=0.05))
        signing = replace(runtime, settings=settings)
        build_scenario(signing, tmp_path / "assets", asset=ASSET, tampered=True)
        incident_id = open_and_record(
            runtime=signing,
            type="model_compromise",
            asset=ASSET,
            severity=Severity.SEV2,
            since=None,
            summary="tampered weights",
            actor="oncall",
        )

        ended = run_playbook(runtime=signing, incident_id=incident_id)

        assert str(ended.status) == "recovered"
        assert signing.checkpoints.flush(timeout=60)  # the pass the end asked for, after it
        [line] = [json.loads(text) for text in sink.read_text().splitlines()]
        assert line["reason"] == f"incident {incident_id} run ended"
        assert receiver.received == []  # it answered 503: the checkpoint is kept for it
        assert [d.sink for d in unpublished(signing)] == [receiver.url]

        scheduler = DrillScheduler(signing)
        scheduler.start()
        try:
            wait_for(lambda: not unpublished(signing), timeout=60, what="the retried sink")
        finally:
            scheduler.shutdown(wait=True)
            signing.checkpoints.close()

    assert receiver.received == [line]
    assert receiver.duplicates == 0
    assert len(sink.read_text().splitlines()) == 1
