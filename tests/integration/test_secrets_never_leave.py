"""No planted secret survives any output path: the chain, every table, the HTTP API, the
outbox and the file channel, every export format, the console and the logs.

Secrets are planted in every field that comes from outside (a native event's summary, dedup
key, source and labels; an Alertmanager alert's labels, annotations and fingerprint; an
incident's summary and reason), in every shape the redaction must recognise, by value and by
key name in every case style.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from intake_helpers import AUTH, am_alert, am_webhook, intake_settings, native
from notification_helpers import make_runtime
from scenarios import build_scenario
from sqlalchemy import MetaData, select

from rearguard.flows.exports.export import write_export
from rearguard.flows.exports.formats import ExportFormat
from rearguard.flows.intake.app import create_app
from rearguard.models.audit.redaction import redact_text, redact_value
from rearguard.models.enums import IncidentStatus
from rearguard.models.incidents.service import get_incident, open_incident, set_incident_status
from rearguard.models.runtime import Runtime
from rearguard.notifications.dispatcher import Dispatcher
from rearguard.notifications.notify import notify

Form = Callable[[str], str]
# Every shape of secret the review found leaking, each holding the planted value whole.
FORMS: list[Form] = [
    lambda s: f"pass={s}",
    lambda s: f"DB_PASS={s}",
    lambda s: f"export MYSQL_PWD={s}",
    lambda s: f"pw={s}",
    lambda s: f"the password {s} was reused",
    lambda s: f"passphrase: {s} horse battery",
    lambda s: f"Authorization: Basic {s}",
    lambda s: f"authorization=Token {s}",
    lambda s: f"Authorization: Bearer {s}",
    lambda s: (
        f"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQ{s}\n=abcd\n-----END PGP PRIVATE "
        "KEY BLOCK-----"
    ),
    lambda s: f"-----BEGIN OPENSSH PRIVATE KEY-----\nb3B{s}\n-----END OPENSSH PRIVATE KEY-----",
    lambda s: f"-----BEGIN RSA PRIVATE KEY-----\nMII{s}\n",
    lambda s: f"cache at redis://:{s}@cache:6379/0",
    lambda s: f"https://deploy:{s}@git.example.org/x.git",
    lambda s: f"glpat-{s}",
    lambda s: f"hf_{s}{s}",
    lambda s: f"npm_{s}{s}",
    lambda s: f"SG.{s}.{s}",
    lambda s: f"xoxb-{s}",
    lambda s: f"xoxp-{s}",
    lambda s: f"ghp_{s}{s}",
    lambda s: f"github_pat_{s}_{s}",
    lambda s: f"some github_pat_{s}_{s}",
    lambda s: f"keys AKIA{(s.upper() * 2)[:16]} and {(s + '/+' + s * 3)[:40]}",
    lambda s: f"private_key={s}",
    lambda s: f"credential={s}",
    lambda s: f"Cookie: session={s}; theme=dark",
    lambda s: f'PASSWORD="{s} {s}"',
    lambda s: f"PASSWORD='x {s}'",
    lambda s: f"dbPassword={s}",
    lambda s: f'{{"api_key": "{s}"}}',
    lambda s: f"sk-proj-{s}{s}",
    lambda s: f"REARGUARD_PAGERDUTY_ROUTING_KEY={s}",
    lambda s: f'{{"routing_key":"{s}","event_action":"trigger"}}',
    lambda s: f"integration-key: {s}",
]
# Keys whose value is a secret, whatever their case style.
SECRET_KEYS = [
    "api_key",
    "apiKey",
    "db_password",
    "dbPassword",
    "DB_PASS",
    "secret",
    "client-secret",
    "token",
    "X-Auth-Token",
    "private_key",
    "credential",
    "credentials",
    "cookie",
    "passphrase",
    "pw",
    "pass",
    "dbpassword",
    "routing_key",
    "routingKey",
    "integration_key",
]
# A planted value: distinctive (no hex digest or base64 of ours holds "Zq" and a long run).
CORE = st.text(
    alphabet="ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789", min_size=18, max_size=24
).map(lambda s: "Zq" + s)
ONE_LINE_FORMS = [f for f in FORMS if "\n" not in f("x")]
# An Alertmanager fingerprint is cut at 64 characters: only forms that fit whole are planted
# there (a cut secret is a fragment no redaction can tell from ordinary text).
FINGERPRINT_FORMS = [f for f in ONE_LINE_FORMS if len(f("Zq" + "x" * 24)) <= 64]


def needles(core: str) -> list[str]:
    """What must appear nowhere: the value, and the AWS key id built from it."""
    return [core, f"AKIA{(core.upper() * 2)[:16]}"]


def dump_database(runtime: Runtime) -> str:
    """Every row of every table, as text."""
    metadata = MetaData()
    with runtime.db.engine.connect() as connection:
        metadata.reflect(connection)
        return "\n".join(
            repr(tuple(row))
            for table in metadata.sorted_tables
            for row in connection.execute(select(table))
        )


def exports(runtime: Runtime, incident_ids: list[int]) -> str:
    texts = []
    for incident_id in incident_ids:
        for export_format in ExportFormat:
            out = io.StringIO()
            write_export(
                db=runtime.db, incident_id=incident_id, export_format=export_format, out=out
            )
            texts.append(out.getvalue())
    return "\n".join(texts)


@pytest.mark.parametrize("form", FORMS, ids=[f("S").split("S")[0][:24] for f in FORMS])
def test_each_shape_of_secret_is_redacted_and_redacting_again_changes_nothing(
    form: Form,
) -> None:
    core = "Zq8mXk2PwR7tLc4VbN9h"
    once = redact_text(form(core))
    assert all(needle not in once for needle in needles(core)), once
    assert "[REDACTED:" in once
    assert redact_text(once) == once


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_a_key_named_like_a_secret_is_redacted_whatever_its_case_style(key: str) -> None:
    assert redact_value({"labels": {key: "plain-looking"}}) == {
        "labels": {key: "[REDACTED:secret]"}
    }


@pytest.mark.parametrize("key", ["max_tokens", "tokenizer", "token_count", "dedup_key", "bypass"])
def test_keys_that_merely_look_alike_keep_their_values(key: str) -> None:
    assert redact_value({key: "512"}) == {key: "512"}


def test_no_planted_secret_survives_any_output_path(
    home: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    runtime = make_runtime(home, database_url, monkeypatch)
    build_scenario(runtime, tmp_path / "src", asset="model-a")
    caplog.set_level(logging.DEBUG)
    app = create_app(runtime, intake=intake_settings(), run_playbooks=False)
    incident_ids: list[int] = []
    planted: list[str] = []

    with TestClient(app) as client:

        @settings(
            max_examples=12,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(
            core=CORE,
            forms=st.lists(st.sampled_from(FORMS), min_size=6, max_size=6),
            line_forms=st.lists(st.sampled_from(ONE_LINE_FORMS), min_size=3, max_size=3),
            fingerprint_form=st.sampled_from(FINGERPRINT_FORMS),
            key=st.sampled_from(SECRET_KEYS),
        )
        def plant(
            core: str,
            forms: list[Form],
            line_forms: list[Form],
            fingerprint_form: Form,
            key: str,
        ) -> None:
            planted.extend(needles(core))
            event = native(
                "model-a",
                summary=forms[0](core),
                dedup_key=line_forms[0](core)[:256],
                source=f"pw={core}",
                labels={"note": forms[1](core), key: core, f"pw={core}": "x"},
            )
            answer = client.post("/v1/incidents", json=event, headers=AUTH)
            assert answer.status_code == 202, answer.text
            alert = am_alert("model-a", fingerprint=fingerprint_form(core), **{key: core})
            alert["annotations"] = {"summary": forms[2](core), "runbook": forms[3](core)}
            answer = client.post("/v1/alerts/alertmanager", json=am_webhook(alert), headers=AUTH)
            assert answer.status_code == 202, answer.text
            with runtime.db.session() as session:
                incident = open_incident(
                    session=session,
                    type="model_compromise",
                    actor="oncall",
                    asset_name="model-a",
                    summary=forms[4](core),
                    dedup_key=line_forms[2](core),
                )
                set_incident_status(
                    session=session,
                    incident=incident,
                    status=IncidentStatus.FAILED,
                    actor="oncall",
                    reason=forms[5](core),
                )
                incident_ids.append(int(incident.id or 0))
            notify(runtime=runtime, incident_id=incident_ids[-1], event="failed")

        plant()
        with Dispatcher(settings=runtime.settings, db=runtime.db) as dispatcher:
            dispatcher.drain(wait_s=10)
        listed = client.get("/v1/incidents", headers=AUTH)
        every_id = [i["id"] for i in listed.json()]
        shown = [client.get(f"/v1/incidents/{i}", headers=AUTH).text for i in every_id]

    with runtime.db.read_session() as session:
        assert get_incident(session=session, incident_id=incident_ids[-1])
    outputs = {
        "database": dump_database(runtime),
        "api": listed.text + "\n".join(shown),
        "file channel": runtime.settings.notification_file.read_text(),
        "exports": exports(runtime, every_id),
        "console": "".join(capsys.readouterr()),
        "logs": caplog.text,
    }
    assert "[REDACTED:" in outputs["database"] and "[REDACTED:" in outputs["file channel"]
    for where, text in outputs.items():
        leaked = sorted({needle for needle in planted if needle in text})
        context = [text[max(0, text.index(n) - 120) : text.index(n) + 40] for n in leaked[:2]]
        assert not leaked, f"{where} holds {leaked[:3]}: {context}"
    assert json.loads(listed.text)


def test_a_marker_is_kept_but_a_lookalike_does_not_shield_a_secret() -> None:
    # A numbered marker (a diff's) passes through the chain's redaction unchanged...
    diff = '+ "password": "[REDACTED:password#1]",\n+ token=[REDACTED:slack-token#2]'
    assert redact_text(diff) == diff
    # ...but text that merely starts like one is no marker.
    for text in ('password="[REDACTED]Zq8mXk2Pw"', "pw=[REDACTED:x]Zq8mXk2Pw"):
        assert "Zq8mXk2Pw" not in redact_text(text)


def test_a_secret_key_beside_an_access_key_redacted_earlier_is_redacted() -> None:
    # An alert's fingerprint is redacted on its own, then joined into the dedup key: the AWS
    # secret key stands beside the marker of its key id, not the id, and is still a secret.
    secret = "ZqZ3fM8TCWTnzB5M5UnMpKgHyC/+ZqZ3fM8TCWTn"
    once = redact_text(f"keys AKIAIOSFODNN7EXAMPLE and {secret}")
    joined = redact_text(f"alertmanager:{once.replace('[REDACTED:aws-secret-key]', secret)}")

    assert secret not in once and secret not in joined
    assert redact_text(joined) == joined
