"""Helpers of the intake tests: the intake on a real uvicorn on loopback, ``rearguard serve``
as a user runs it, the servers that talk to it (Alertmanager, Prometheus) run from their
binaries, payload builders."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from conftest import REARGUARD_BIN

from rearguard.flows.intake.app import create_app
from rearguard.models.audit.chain import events_for_incident
from rearguard.models.config.intake import IntakeSettings
from rearguard.models.incidents.service import list_incidents
from rearguard.models.runtime import Runtime
from rearguard.notifications.channels.webhook import SHARED_CLIENT_LIMITS

TOKEN = "intake-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def intake_settings(**changes: Any) -> IntakeSettings:
    """Intake settings with the test token (and any changes)."""
    return IntakeSettings(tokens=[TOKEN], **changes)


def storm_client() -> httpx.Client:
    """One client for a storm's sending threads, with the test token (limits: see
    :data:`rearguard.notifications.channels.webhook.SHARED_CLIENT_LIMITS`)."""
    return httpx.Client(headers=AUTH, limits=SHARED_CLIENT_LIMITS)


@contextmanager
def live_intake(
    runtime: Runtime,
    *,
    intake: IntakeSettings | None = None,
    run_playbooks: bool = True,
    port: int = 0,
) -> Iterator[str]:
    """Serve the intake with uvicorn on 127.0.0.1, ``port`` (0: a free one); yield its base
    URL."""
    config = uvicorn.Config(
        create_app(runtime, intake=intake or intake_settings(), run_playbooks=run_playbooks),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(60)


@contextmanager
def running_server(
    command: list[str], *, ready_url: str, log: Path, what: str
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server binary in a process group of its own, its stderr to ``log``; yield once
    ``ready_url`` answers 200, and stop the whole group afterwards (SIGKILL when SIGTERM was
    not enough within 10 s)."""
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
        )

    def ready() -> bool:
        assert process.poll() is None, f"{what} exited: {log.read_text()}"
        try:
            return httpx.get(ready_url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, timeout=90, what=f"{what} to be ready")
        yield process
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def native(asset: str, **fields: Any) -> dict[str, Any]:
    """A native event for the model-compromise playbook on an asset."""
    return {"type": "model_compromise", "asset": asset, "severity": "sev2", **fields}


def am_alert(asset: str, *, status: str = "firing", fingerprint: str = "", **labels: str) -> dict:
    """One alert of an Alertmanager webhook, with the default mapping's labels."""
    return {
        "status": status,
        "labels": {
            "alertname": "ModelHashMismatch",
            "rearguard_type": "model_compromise",
            "asset": asset,
            "severity": "critical",
            **labels,
        },
        "annotations": {"summary": f"{asset} hash mismatch"},
        "startsAt": "2026-01-01T00:00:00Z",
        "fingerprint": fingerprint,
    }


def am_webhook(*alerts: dict[str, Any]) -> dict[str, Any]:
    """An Alertmanager webhook body (version 4)."""
    return {
        "version": "4",
        "groupKey": "{}:{}",
        "status": alerts[0]["status"],
        "receiver": "rearguard",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.invalid",
        "alerts": list(alerts),
    }


def incidents(runtime: Runtime) -> list[Any]:
    """Every incident, oldest first."""
    with runtime.db.read_session() as session:
        return list(reversed(list_incidents(session=session, limit=10_000)))


def timeline_actions(runtime: Runtime, incident_id: int) -> list[str]:
    """The actions of an incident's timeline, in order."""
    with runtime.db.read_session() as session:
        return [e.action for e in events_for_incident(session, incident_id=incident_id)]


def alert_events(runtime: Runtime) -> list[dict[str, Any]]:
    """Every ``alert.*`` event of the chain (with or without an incident)."""
    from sqlalchemy import text

    with runtime.db.read_session() as session:
        rows = session.connection().execute(
            text("SELECT action, incident_id, data FROM timeline_event WHERE kind = 'alert'")
        )
        return [
            {"action": a, "incident_id": i, "data": json.loads(d)} for a, i, d in rows.fetchall()
        ]


def wait_for(check: Callable[[], Any], *, timeout: float = 90, what: str = "") -> Any:
    """Poll until ``check()`` is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        time.sleep(0.1)


def post(url: str, body: Any, **kwargs: Any) -> httpx.Response:
    """POST JSON with the test token."""
    return httpx.post(url, json=body, headers={**AUTH, **kwargs.pop("headers", {})}, **kwargs)


class Serving:
    """A running ``rearguard serve`` and the lines it has printed on stderr so far."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr
        for line in self.process.stderr:
            self.lines.append(line)

    def ctrl_c(self) -> None:
        """SIGINT to its whole process group, as a terminal's Ctrl+C."""
        os.killpg(self.process.pid, signal.SIGINT)

    def stop(self, *, ctrl_c: bool = False) -> str:
        """SIGTERM, as a service manager stops it (or, with ``ctrl_c``, Ctrl+C); wait until
        it has exited; all it printed on stderr."""
        if ctrl_c:
            self.ctrl_c()
        else:
            self.process.send_signal(signal.SIGTERM)
        return self.wait()

    def wait(self) -> str:
        """Wait until it has exited; all it printed on stderr."""
        self.process.wait(timeout=60)
        self._reader.join(timeout=10)
        return "".join(self.lines)


@contextmanager
def running_serve(
    *args: str, env: dict[str, str], home: Path, port: int, timeout: float
) -> Iterator[Serving]:
    """``rearguard serve`` on ``port``, once it says it listens; killed if the block fails
    (else leaving it would wait for serve forever).

    What a script that starts serve relies on: once the "listening on" line is out,
    ``/healthz`` answers at the first try.
    """
    with subprocess.Popen(
        [str(REARGUARD_BIN), "serve", *args],
        env=env,
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a process group of its own, as in a terminal
    ) as process:
        serving = Serving(process)

        def listening() -> bool:
            assert process.poll() is None, "".join(serving.lines)
            return any("listening on" in line for line in serving.lines)

        try:
            wait_for(listening, timeout=timeout, what="rearguard serve to listen")
            health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            assert health.status_code == 200, health.text
            yield serving
        except BaseException:
            os.killpg(process.pid, signal.SIGKILL)  # and its playbook process, which holds stderr
            raise
