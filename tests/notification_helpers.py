"""Helpers of the notification tests: a runtime on a rearguard.toml, loopback receivers.

The receivers are real servers on 127.0.0.1, port 0: a webhook receiver that verifies the
HMAC signature and remembers idempotency keys, a PagerDuty-compatible Events API v2 endpoint
that checks each event against PagerDuty's documented schema, and an SMTP server (aiosmtpd)
with optional STARTTLS and login. The Slack-like server is ``slack_server.py``.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import pytest
from scenarios import build_scenario

from rearguard.models.config.settings import load_settings
from rearguard.models.enums import IncidentSource, Severity
from rearguard.models.incidents.service import open_incident
from rearguard.models.runtime import Runtime
from rearguard.notifications.channels.webhook import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)

WEBHOOK_SECRET = "whsec-test-0123456789"


def make_runtime(
    home: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    *,
    toml: str = "",
    env: dict[str, str] | None = None,
) -> Runtime:
    """A runtime whose settings come from ``toml`` (written to the home) and ``env``."""
    monkeypatch.chdir(home)
    (home / "rearguard.toml").write_text(toml)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    return Runtime.from_settings(load_settings(home=home, database_url=database_url))


def build_asset(
    runtime: Runtime, root: Path, *, asset: str = "model-a", approved: tuple[str, ...] = ("v2",)
) -> None:
    """Versions v1..v3 of an asset, ``approved`` known-good, v3 in production."""
    build_scenario(runtime, root, asset=asset, approved=approved)


def new_incident(
    runtime: Runtime,
    *,
    asset: str | None = "model-a",
    severity: Severity = Severity.SEV2,
    summary: str = "output drift",
    source: IncidentSource = IncidentSource.CLI,
    incident_type: str = "model_compromise",
) -> int:
    """Record an incident (no playbook run)."""
    with runtime.db.session() as session:
        incident = open_incident(
            session=session,
            type=incident_type,
            actor="oncall",
            asset_name=asset,
            severity=severity,
            summary=summary,
            source=source,
            state={"compromised": "v3"},
        )
        return int(incident.id or 0)


# -- webhook receiver -----------------------------------------------------------------------


class LoopbackReceiver:
    """A threaded HTTP server on loopback for a test: started by ``with``, stopped after it.
    A subclass (a dataclass) calls :meth:`_serve` from ``__post_init__`` and gives the path
    of its URL and its request handler."""

    path = "/"

    def _serve(self, port: int = 0) -> None:
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self.path}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError


@dataclass
class WebhookReceiver(LoopbackReceiver):
    """Receives signed webhooks; answers ``statuses`` in turn (then 200)."""

    secret: str = WEBHOOK_SECRET
    statuses: list[int] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    rejected: int = 0
    duplicates: int = 0
    keys: set[str] = field(default_factory=set)

    path = "/hooks/rearguard"

    def __post_init__(self) -> None:
        self._serve()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                ok = verify_signature(
                    receiver.secret,
                    timestamp=self.headers.get(TIMESTAMP_HEADER, ""),
                    body=body,
                    signature=self.headers.get(SIGNATURE_HEADER, ""),
                )
                with receiver._lock:
                    if not ok:
                        receiver.rejected += 1
                        status = 401
                    elif receiver.statuses:
                        status = receiver.statuses.pop(0)
                    else:
                        status = 200
                        key = self.headers.get(IDEMPOTENCY_HEADER, "")
                        if key in receiver.keys:
                            receiver.duplicates += 1
                        else:
                            receiver.keys.add(key)
                            receiver.received.append(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler


# -- PagerDuty Events API v2 ----------------------------------------------------------------

PAGERDUTY_KEY = "R0PDTESTKEY0123456789abcdefABCDE"  # PagerDuty's keys are 32 characters
_PD_TOP = {"routing_key", "event_action", "dedup_key", "payload", "images", "links", "client"}
_PD_TOP |= {"client_url"}
_PD_PAYLOAD = {"summary", "source", "severity", "timestamp", "component", "group", "class"}
_PD_PAYLOAD |= {"custom_details"}


def pagerduty_problems(event: Any) -> list[str]:
    """What PagerDuty's Events API v2 would refuse in an alert event (its documented schema:
    https://developer.pagerduty.com/docs/events-api-v2/trigger-events/)."""
    if not isinstance(event, dict):
        return ["the event is not a JSON object"]
    problems = [f"unknown field {k!r}" for k in sorted(set(event) - _PD_TOP)]
    key = event.get("routing_key")
    if not isinstance(key, str) or len(key) != 32:
        problems.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = event.get("event_action")
    if action not in ("trigger", "acknowledge", "resolve"):
        problems.append("'event_action' is invalid")
    dedup = event.get("dedup_key")
    if action in ("acknowledge", "resolve") and not dedup:
        problems.append("'dedup_key' is required to acknowledge or resolve")
    if dedup is not None and (not isinstance(dedup, str) or len(dedup) > 255):
        problems.append("'dedup_key' must be a string of at most 255 characters")
    for link in event.get("links", []):
        if not isinstance(link, dict) or not isinstance(link.get("href"), str):
            problems.append("a link needs an 'href'")
    if action != "trigger":
        return problems
    payload = event.get("payload")
    if not isinstance(payload, dict):
        return [*problems, "'payload' is missing"]
    problems += [f"unknown payload field {k!r}" for k in sorted(set(payload) - _PD_PAYLOAD)]
    summary = payload.get("summary")
    if not isinstance(summary, str) or not summary or len(summary) > 1024:
        problems.append("'payload.summary' must be 1 to 1024 characters")
    if not isinstance(payload.get("source"), str) or not payload["source"]:
        problems.append("'payload.source' is missing")
    if payload.get("severity") not in ("critical", "error", "warning", "info"):
        problems.append("'payload.severity' is invalid")
    if "custom_details" in payload and not isinstance(payload["custom_details"], dict):
        problems.append("'payload.custom_details' must be an object")
    return problems


@dataclass
class PagerDutyReceiver(LoopbackReceiver):
    """A PagerDuty-compatible ``/v2/enqueue``: 202 for a valid event, 400 with PagerDuty's
    error body for an invalid one; first answers each of ``statuses`` (with its headers) in
    turn, without taking the event. ``port`` 0 picks a free port."""

    statuses: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    port: int = 0
    accepted: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)

    path = "/v2/enqueue"

    def __post_init__(self) -> None:
        self._serve(self.port)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    event = json.loads(raw)
                except ValueError:
                    event = None
                headers: dict[str, str] = {}
                with receiver._lock:
                    receiver.requests.append(event)
                    problems = pagerduty_problems(event)
                    if receiver.statuses:
                        status, headers = receiver.statuses.pop(0)
                        answer: dict[str, Any] = {"status": "error", "message": "try again"}
                    elif problems:
                        status = 400
                        answer = {
                            "status": "invalid event",
                            "message": "Event object is invalid",
                            "errors": problems,
                        }
                    else:
                        status = 202
                        receiver.accepted.append(event)
                        answer = {
                            "status": "success",
                            "message": "Event processed",
                            "dedup_key": event["dedup_key"],
                        }
                body = json.dumps(answer).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


def free_port() -> int:
    """A loopback port nothing listens on (right now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- SMTP server ----------------------------------------------------------------------------


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with openssl."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class SmtpServer:
    """aiosmtpd on loopback: STARTTLS and login required when a certificate is given."""

    def __init__(
        self, *, cert: tuple[Path, Path] | None = None, user: str = "", password: str = ""
    ) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        self.messages: list[Any] = []
        self.logins: list[str] = []
        server = self

        class Handler:
            async def handle_DATA(self, _server: Any, session: Any, envelope: Any) -> str:
                from email import message_from_bytes, policy

                message = message_from_bytes(envelope.content, policy=policy.default)
                server.messages.append((list(envelope.rcpt_tos), message))
                return "250 OK"

        def authenticate(_server: Any, _session: Any, _envelope: Any, mechanism: str, data: Any):  # type: ignore[no-untyped-def]
            ok = (
                isinstance(data, LoginPassword)
                and data.login.decode() == user
                and data.password.decode() == password
            )
            if ok:
                server.logins.append(user)
            return AuthResult(success=ok, handled=False, auth_data=data)

        kwargs: dict[str, Any] = {}
        if cert is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(cert[0]), str(cert[1]))
            kwargs.update(
                tls_context=context,
                require_starttls=True,
                authenticator=authenticate,
                auth_required=True,
                auth_require_tls=True,
            )
        # aiosmtpd's readiness check connects to the port it was given, so it cannot be 0.
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=free_port(), **kwargs)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.controller.stop()

    @property
    def port(self) -> int:
        return int(self.controller.port)
