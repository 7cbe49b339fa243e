"""The outbox itself: written with its event or not at all, once per incident state, redacted,
and delivered to the embedded default channels (console and file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from notification_helpers import make_runtime, new_incident
from sqlmodel import select

from rearguard.models.audit.chain import events_for_incident, verify_stored_chain
from rearguard.models.db.tables import NotificationOutbox
from rearguard.models.enums import IncidentStatus
from rearguard.models.incidents.service import get_incident, set_incident_status
from rearguard.models.recovery.results import Notified
from rearguard.models.runtime import Runtime
from rearguard.notifications.dispatcher import Dispatcher
from rearguard.notifications.notify import notify
from rearguard.notifications.outbox import enqueue


def outbox(runtime: Runtime) -> list[NotificationOutbox]:
    with runtime.db.read_session() as session:
        return list(session.exec(select(NotificationOutbox).order_by(NotificationOutbox.id)))


def actions(runtime: Runtime, incident_id: int) -> list[str]:
    with runtime.db.read_session() as session:
        return [e.action for e in events_for_incident(session=session, incident_id=incident_id)]


@pytest.fixture
def embedded(home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    return make_runtime(home, database_url, monkeypatch)


def test_rows_and_their_event_are_written_together_or_not_at_all(embedded: Runtime) -> None:
    incident_id = new_incident(embedded, asset=None)
    with embedded.db.read_session() as session:
        incident = get_incident(session=session, incident_id=incident_id)

    with pytest.raises(RuntimeError), embedded.db.transaction() as connection:
        enqueue(
            connection, settings=embedded.settings, incident=incident, event="opened", actor="t"
        )
        raise RuntimeError("the causing change failed")

    assert outbox(embedded) == []
    assert actions(embedded, incident_id) == ["incident.opened"]


def test_a_rerun_in_the_same_state_queues_nothing_new(embedded: Runtime) -> None:
    incident_id = new_incident(embedded, asset=None)

    first = notify(runtime=embedded, incident_id=incident_id, event="failed")
    again = notify(runtime=embedded, incident_id=incident_id, event="failed")

    assert isinstance(first, Notified) and isinstance(again, Notified)
    assert first.queued == 2 and again.queued == 0
    assert again.receipts == {"console": "already queued", "file": "already queued"}
    assert actions(embedded, incident_id).count("notify.failed") == 1
    with embedded.db.session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        set_incident_status(
            session=session, incident=incident, status=IncidentStatus.FAILED, actor="t", reason="x"
        )
    # A new state (failed again, for another reason) is news again.
    assert notify(runtime=embedded, incident_id=incident_id, event="failed") == Notified(
        event="failed", receipts={"console": "queued", "file": "queued"}, queued=2
    )


def test_console_and_file_get_the_message_and_secrets_never_reach_them(
    embedded: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "xoxb-123456789012-abcdefABCDEF"
    incident_id = new_incident(embedded, asset=None, summary=f"someone pasted {secret} here")
    notify(runtime=embedded, incident_id=incident_id, event="opened")
    assert all(secret not in row.payload for row in outbox(embedded))

    with Dispatcher(settings=embedded.settings, db=embedded.db) as dispatcher:
        report = dispatcher.drain(wait_s=5, incident_id=incident_id)

    assert (report.delivered, report.failed, report.pending) == (2, 0, 0)
    printed = capsys.readouterr().err
    assert "[notify sev2] Incident 1 opened: model_compromise (sev2) on no single asset" in printed
    assert "someone pasted [REDACTED:slack-token] here" in printed
    (line,) = embedded.settings.notification_file.read_text().splitlines()
    record = json.loads(line)
    assert record["event"] == "opened" and record["incident_id"] == incident_id
    assert "[REDACTED:slack-token]" in record["body"] and secret not in line
    assert [r.status for r in outbox(embedded)] == ["delivered", "delivered"]
    with embedded.db.read_session() as session:
        events = events_for_incident(session=session, incident_id=incident_id)
        assert verify_stored_chain(session).ok
    # (The incident.opened event records the summary as typed: that is the foundation's.)
    mine = [e.data for e in events if e.action.startswith(("notify.", "notification."))]
    assert len(mine) == 3 and secret not in " ".join(mine)
    assert [e.action for e in events][-2:] == ["notification.delivered"] * 2


def test_a_broken_user_template_fails_that_notification_only(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    templates = home / "templates"
    templates.mkdir()
    (templates / "failed.txt.j2").write_text("{{ incident.nope }}\n")
    toml = f'[notifications]\nchannels = ["file"]\ntemplates_dir = "{templates}"\n'
    runtime = make_runtime(home, database_url, monkeypatch, toml=toml)
    incident_id = new_incident(runtime, asset=None)
    notify(runtime=runtime, incident_id=incident_id, event="failed")
    notify(runtime=runtime, incident_id=incident_id, event="opened")

    with Dispatcher(settings=runtime.settings, db=runtime.db) as dispatcher:
        dispatcher.drain(wait_s=5)

    broken, fine = outbox(runtime)
    assert broken.status == "failed"
    assert broken.last_error is not None and "failed.txt.j2" in broken.last_error
    assert "nope" in broken.last_error
    assert fine.status == "delivered"
