"""The read schemas: the one JSON form of each record the CLI, the HTTP API and exports show."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from rearguard.models.db.tables import ApprovalRequest, DrillRun, Incident, TimelineEvent
from rearguard.models.enums import IncidentSource, IncidentStatus, Severity
from rearguard.models.schemas import (
    ApprovalRequestRead,
    DrillRunRead,
    EventRead,
    IncidentDetail,
    IncidentRead,
)

OPENED = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
TOKEN = "xoxb-2024112501-plantedtokenvalue"


def incident(**changes: object) -> Incident:
    fields: dict[str, object] = {
        "id": 7,
        "type": "model_compromise",
        "severity": "sev1",
        "status": "recovered",
        "asset_name": "model-a",
        "summary": "hash mismatch",
        "source": "alert",
        "dedup_key": "model_compromise:model-a",
        "atlas_ids": ["AML.T0018"],
        "opened_by": "alertmanager",
        "opened_at": OPENED,
        "updated_at": OPENED + timedelta(seconds=5),
        "state": {"compromised": "v3", "selected": "v2"},
    }
    return Incident(**{**fields, **changes})


def test_an_incident_shows_the_keys_users_rely_on_with_iso_times() -> None:
    shown = IncidentRead.of(incident()).json_value()
    assert shown == {
        "id": 7,
        "type": "model_compromise",
        "severity": "sev1",
        "status": "recovered",
        "asset": "model-a",
        "since": None,
        "summary": "hash mismatch",
        "source": "alert",
        "dedup_key": "model_compromise:model-a",
        "atlas_ids": ["AML.T0018"],
        "opened_by": "alertmanager",
        "opened_at": "2026-11-25T03:00:00+00:00",
        "updated_at": "2026-11-25T03:00:05+00:00",
        "reason": None,
        "state": {"compromised": "v3", "selected": "v2"},
    }
    read = IncidentRead.of(incident())
    assert (read.severity, read.status, read.source) == (
        Severity.SEV1,
        IncidentStatus.RECOVERED,
        IncidentSource.ALERT,
    )
    assert (read.compromised, read.selected) == ("v3", "v2")


def test_a_redacted_incident_hides_secrets_in_every_free_text() -> None:
    leaky = incident(
        summary=f"token {TOKEN} leaked",
        reason=f"failed with {TOKEN}",
        state={"compromised": "v3", "note": TOKEN},
    )
    shown = json.dumps(IncidentRead.of(leaky).redacted().json_value())
    assert TOKEN not in shown and "[REDACTED" in shown
    assert TOKEN in json.dumps(IncidentRead.of(leaky).json_value())


def test_the_detail_carries_production_and_the_parsed_timeline() -> None:
    event = TimelineEvent(
        seq=1,
        ts="2026-11-25T03:00:00.000000Z",
        incident_id=7,
        kind="state",
        action="incident.opened",
        actor="alertmanager",
        data='{"severity":"sev1","type":"model_compromise"}',
        prev_hash="0" * 64,
        hash="a" * 64,
    )
    detail = IncidentDetail.of_timeline(incident(), [event], production="v2").json_value()
    assert detail["production"] == "v2"
    assert detail["timeline"] == [EventRead.of(event).json_value()]
    assert detail["timeline"][0]["data"] == {"severity": "sev1", "type": "model_compromise"}


def test_a_pending_request_past_its_deadline_is_overdue_and_times_are_to_the_second() -> None:
    request = ApprovalRequest(
        id=3,
        incident_id=7,
        step="rollback",
        callback_id="cb",
        requested_at=OPENED,
        deadline=(OPENED + timedelta(minutes=15)).replace(tzinfo=None),
        approvers=["alice"],
        policy={"on_timeout": "escalate", "escalate_to": ["carol"]},
    )
    before = ApprovalRequestRead.of(request, now=OPENED + timedelta(minutes=1)).json_value()
    after = ApprovalRequestRead.of(request, now=OPENED + timedelta(minutes=16)).json_value()
    assert (before["overdue"], after["overdue"]) == (False, True)
    assert after["deadline"] == "2026-11-25T03:15:00+00:00"
    assert after["escalate_to"] == ["carol"] and after["on_timeout"] == "escalate"


def test_a_drill_run_says_whether_it_met_its_objective() -> None:
    def run(recovery_s: float | None) -> dict[str, object]:
        row = DrillRun(
            id=1,
            drill_name="weekly",
            playbook="model_compromise",
            asset_name="model-a",
            trigger="manual",
            status="pass",
            started_at=OPENED,
            recovery_s=recovery_s,
            rto_s=60.0,
            timeline=[{"seq": 1, "ts": "t", "kind": "state", "action": "a", "detail": ""}],
        )
        return DrillRunRead.of(row).json_value()

    assert run(30.0)["within_rto"] is True
    assert run(90.0)["within_rto"] is False
    assert run(None)["within_rto"] is None
    assert run(30.0)["drill"] == "weekly" and run(30.0)["timeline"][0]["seq"] == 1
