"""Webhook and email delivery through the outbox, to real receivers on loopback.

The webhook receiver verifies the HMAC-SHA256 signature over timestamp and body, and counts a
repeated ``Idempotency-Key`` as a duplicate; the SMTP server is aiosmtpd, with STARTTLS and
login required when the test gives it a certificate.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from notification_helpers import (
    WEBHOOK_SECRET,
    SmtpServer,
    WebhookReceiver,
    make_runtime,
    new_incident,
    self_signed_cert,
)
from sqlmodel import select

from rearguard.models.audit.chain import events_for_incident
from rearguard.models.db.tables import NotificationOutbox
from rearguard.models.runtime import Runtime
from rearguard.notifications.dispatcher import Dispatcher
from rearguard.notifications.notify import notify


def rows(runtime: Runtime, channel: str) -> list[NotificationOutbox]:
    with runtime.db.read_session() as session:
        statement = select(NotificationOutbox).where(NotificationOutbox.channel == channel)
        return list(session.exec(statement.order_by(NotificationOutbox.id)))


def drain(runtime: Runtime, wait_s: float = 5) -> None:
    with Dispatcher(settings=runtime.settings, db=runtime.db) as dispatcher:
        dispatcher.drain(wait_s=wait_s)


def webhook_runtime(
    home: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    receiver: WebhookReceiver,
    *,
    secret: str = WEBHOOK_SECRET,
) -> Runtime:
    toml = f"""
[notifications]
channels = ["webhook"]
backoff_base_s = 0.05
backoff_max_s = 0.2

[notifications.webhook]
url = "{receiver.url}"
timeout_s = 2
"""
    return make_runtime(
        home, database_url, monkeypatch, toml=toml, env={"REARGUARD_WEBHOOK_SECRET": secret}
    )


def test_webhook_is_signed_and_delivered_in_order(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with WebhookReceiver() as receiver:
        runtime = webhook_runtime(home, database_url, monkeypatch, receiver)
        incident = new_incident(runtime, asset=None, summary="weights changed")
        for event in ("opened", "contained", "recovered"):
            notify(runtime=runtime, incident_id=incident, event=event)

        drain(runtime)

    assert receiver.rejected == 0
    assert [body["event"] for body in receiver.received] == ["opened", "contained", "recovered"]
    assert receiver.received[0]["incident"]["summary"] == "weights changed"
    assert receiver.received[0]["title"].startswith("Incident 1 opened")
    assert [r.status for r in rows(runtime, "webhook")] == ["delivered"] * 3
    assert json.loads(rows(runtime, "webhook")[0].receipt or "{}") == {"status": 200}


def test_webhook_with_the_wrong_secret_is_refused_permanently(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with WebhookReceiver() as receiver:
        runtime = webhook_runtime(home, database_url, monkeypatch, receiver, secret="not-it-123")
        incident = new_incident(runtime, asset=None)
        notify(runtime=runtime, incident_id=incident, event="opened")

        drain(runtime)
        drain(runtime)

    assert receiver.rejected == 1
    (row,) = rows(runtime, "webhook")
    assert row.status == "failed" and row.last_error == "webhook: HTTP 401"
    assert row.attempts == 1
    with runtime.db.read_session() as session:
        events = events_for_incident(session=session, incident_id=incident)
    assert "not-it-123" not in " ".join(e.data for e in events)


def test_webhook_5xx_is_retried_and_the_resend_carries_the_same_key(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 503 after "processing": the receiver saw the key once; the resend is recognised.
    with WebhookReceiver(statuses=[503, 502]) as receiver:
        runtime = webhook_runtime(home, database_url, monkeypatch, receiver)
        incident = new_incident(runtime, asset=None)
        notify(runtime=runtime, incident_id=incident, event="recovered")

        drain(runtime)

    (row,) = rows(runtime, "webhook")
    assert row.status == "delivered" and row.attempts == 3
    assert len(receiver.received) == 1 and receiver.duplicates == 0


def test_webhook_down_then_up_delivers_once(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with WebhookReceiver() as receiver:
        url = receiver.url
    # Nothing listens on that port any more.
    toml = f"""
[notifications]
channels = ["webhook"]
backoff_base_s = 0.05

[notifications.webhook]
url = "{url}"
"""
    runtime = make_runtime(
        home, database_url, monkeypatch, toml=toml, env={"REARGUARD_WEBHOOK_SECRET": "s" * 16}
    )
    incident = new_incident(runtime, asset=None)
    notify(runtime=runtime, incident_id=incident, event="opened")
    drain(runtime, wait_s=0.2)
    (row,) = rows(runtime, "webhook")
    assert row.status == "pending"
    assert row.last_error is not None and row.last_error.startswith("webhook: cannot connect")
    assert row.in_doubt is False


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed_cert(tmp_path)


def email_runtime(
    home: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    smtp: SmtpServer,
    ca_file: Path,
    *,
    password: str,
) -> Runtime:
    toml = f"""
[notifications]
channels = ["email"]
roles = ["on_call", "asset_owner"]

[notifications.email]
host = "127.0.0.1"
port = {smtp.port}
security = "starttls"
username = "rearguard"
sender = "rearguard@example.org"
recipients = ["secops@example.org"]
ca_file = "{ca_file}"
timeout_s = 5

[[notifications.routes]]
severities = ["sev1"]
email = ["ciso@example.org"]

[notifications.stakeholders.assets."model-a"]
asset_owner = ["owner@example.org", "slack:U0OWNER"]
"""
    return make_runtime(
        home, database_url, monkeypatch, toml=toml, env={"REARGUARD_SMTP_PASSWORD": password}
    )


def test_email_over_starttls_with_login_plain_and_html(
    home: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    certificate: tuple[Path, Path],
) -> None:
    with SmtpServer(cert=certificate, user="rearguard", password="smtp-pass-1") as smtp:
        runtime = email_runtime(
            home, database_url, monkeypatch, smtp, certificate[0], password="smtp-pass-1"
        )
        incident = new_incident(runtime, summary="<script>alert(1)</script> in outputs")
        notify(runtime=runtime, incident_id=incident, event="recovered")

        drain(runtime)

    # sev2: the route for sev1 does not apply; the asset owner is a stakeholder by default.
    assert sorted(to for (to,), _ in smtp.messages) == ["owner@example.org", "secops@example.org"]
    assert smtp.logins == ["rearguard", "rearguard"]
    _, message = smtp.messages[0]
    # Nothing ran that moved production (the incident was only recorded): the title says so.
    assert message["Subject"].startswith("Incident 1 recovered: model-a; no production alias moved")
    plain = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "<script>alert(1)</script> in outputs" in plain
    assert "&lt;script&gt;alert(1)&lt;/script&gt; in outputs" in html
    assert "<script>" not in html
    receipts = [json.loads(r.receipt or "{}") for r in rows(runtime, "email")]
    assert {r["message_id"] for r in receipts} == {m["Message-ID"] for _, m in smtp.messages}


def test_email_with_a_wrong_password_fails_permanently(
    home: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    certificate: tuple[Path, Path],
) -> None:
    with SmtpServer(cert=certificate, user="rearguard", password="right-pass") as smtp:
        runtime = email_runtime(
            home, database_url, monkeypatch, smtp, certificate[0], password="wrong-pass"
        )
        incident = new_incident(runtime)
        notify(runtime=runtime, incident_id=incident, event="failed")

        drain(runtime)

    assert smtp.messages == []
    failed = rows(runtime, "email")
    assert {r.status for r in failed} == {"failed"}
    assert {r.last_error for r in failed} == {"email: login refused (535)"}
    with runtime.db.read_session() as session:
        events = events_for_incident(session=session, incident_id=incident)
    assert "wrong-pass" not in " ".join(e.data for e in events)
