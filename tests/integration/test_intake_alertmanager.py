"""The real Prometheus Alertmanager posting to the intake: incidents open and deduplicate."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from intake_helpers import (
    TOKEN,
    alert_events,
    incidents,
    live_intake,
    running_server,
    wait_for,
)
from scenarios import build_scenario

from rearguard.flows.prefect_infra.server import free_loopback_port
from rearguard.models.runtime import Runtime

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
pytestmark = pytest.mark.skipif(
    ALERTMANAGER is None,
    reason="the Alertmanager binary is not installed (apt-get install prometheus-alertmanager)",
)


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Yield (Alertmanager's URL, its config file); the test writes the config before use."""
    port = free_loopback_port()
    config = tmp_path / "alertmanager.yml"
    yield f"http://127.0.0.1:{port}", config


def _running(url: str, config: Path, tmp_path: Path) -> AbstractContextManager[object]:
    assert ALERTMANAGER
    command = [
        ALERTMANAGER,
        f"--config.file={config}",
        f"--storage.path={tmp_path / 'am-data'}",
        f"--web.listen-address={url.removeprefix('http://')}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    return running_server(
        command, ready_url=f"{url}/-/ready", log=tmp_path / "alertmanager.log", what="Alertmanager"
    )


def _alerts(assets: list[str], count: int, *, ends: datetime | None = None) -> list[dict]:
    starts = datetime.now(UTC) - timedelta(minutes=1)
    return [
        {
            "labels": {
                "alertname": "ModelHashMismatch",
                "rearguard_type": "model_compromise",
                "asset": assets[i % len(assets)],
                "severity": "critical",
                "instance": f"server-{i}",
            },
            "annotations": {"summary": "stored weights do not match their manifest"},
            "startsAt": starts.isoformat(),
            **({"endsAt": ends.isoformat()} if ends else {}),
        }
        for i in range(count)
    ]


def test_alertmanager_storm_opens_one_incident_per_asset_and_records_resolution(
    runtime: Runtime, tmp_path: Path, alertmanager: tuple[str, Path]
) -> None:
    assets = ["model-a", "model-b"]
    for asset in assets:
        build_scenario(runtime, tmp_path, asset=asset)
    am_url, config = alertmanager
    with live_intake(runtime, run_playbooks=False) as intake_url:
        config.write_text(
            f"""
route:
  receiver: rearguard
  group_by: [asset]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: rearguard
    webhook_configs:
      - url: {intake_url}/v1/alerts/alertmanager
        send_resolved: true
        http_config:
          authorization:
            credentials: {TOKEN}
"""
        )
        with _running(am_url, config, tmp_path):
            fired = _alerts(assets, 40)
            assert httpx.post(f"{am_url}/api/v2/alerts", json=fired).status_code == 200

            def all_fired() -> bool:
                seen = {e["data"]["labels"]["instance"] for e in alert_events(runtime)}
                return len(seen) == 40

            wait_for(all_fired, timeout=30, what="every alert to reach the intake")
            found = incidents(runtime)
            assert sorted(i.asset_name for i in found) == assets
            assert all(i.source == "alert" and i.severity == "sev1" for i in found)

            ended = _alerts(assets, 40, ends=datetime.now(UTC) - timedelta(seconds=1))
            assert httpx.post(f"{am_url}/api/v2/alerts", json=ended).status_code == 200

            def all_resolved() -> list[dict]:
                done = [e for e in alert_events(runtime) if e["action"] == "alert.resolved"]
                return done if len({e["data"]["labels"]["instance"] for e in done}) == 40 else []

            resolved = wait_for(all_resolved, timeout=30, what="the resolved alerts")
    by_asset = {i.asset_name: i.id for i in incidents(runtime)}
    assert len(by_asset) == 2  # resolved alerts opened nothing
    assert {e["incident_id"] for e in resolved} == set(by_asset.values())
    opened = [e for e in alert_events(runtime) if e["action"] == "alert.opened"]
    assert len(opened) == 2
