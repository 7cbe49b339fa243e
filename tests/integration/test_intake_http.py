"""The HTTP intake's front door: auth, signatures, body limits, schema errors, never a 5xx."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from intake_helpers import (
    AUTH,
    TOKEN,
    alert_events,
    am_alert,
    am_webhook,
    intake_settings,
    live_intake,
    native,
    storm_client,
)
from pydantic import SecretStr
from scenarios import build_scenario

from rearguard.flows.cli.serve import check_exposure
from rearguard.flows.intake.app import create_app
from rearguard.models.config.intake import IntakeSettings
from rearguard.models.errors import ConfigurationError, UsageError
from rearguard.models.incidents.service import open_incident, parse_since
from rearguard.models.names import MAX_ROW_ID
from rearguard.models.runtime import Runtime
from rearguard.notifications.channels.webhook import sign

SECRET = "hmac-secret-for-tests"


@pytest.fixture
def client(runtime: Runtime, tmp_path: Path) -> Iterator[TestClient]:
    """The intake in process, recording incidents without running playbooks."""
    build_scenario(runtime, tmp_path)
    with TestClient(create_app(runtime, intake=intake_settings(), run_playbooks=False)) as c:
        yield c


def test_requests_without_a_valid_token_are_refused_without_detail(client: TestClient) -> None:
    missing = client.post("/v1/incidents", json=native("model-a"))
    assert missing.status_code == 401
    assert missing.json() == {"detail": "unauthorized"}
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = client.post(
        "/v1/incidents", json=native("model-a"), headers={"Authorization": "Bearer x"}
    )
    assert wrong.status_code == 403
    assert wrong.json() == {"detail": "forbidden"}
    assert (
        client.get("/v1/incidents", headers={"Authorization": "Basic " + TOKEN}).status_code == 401
    )
    assert client.get("/v1/incidents").status_code == 401
    assert client.get("/v1/incidents", headers=AUTH).json() == []
    health = client.get("/healthz").json()
    assert health["requests"] == {"accepted": 1, "refused": 4}
    assert health["refused_by_status"] == {"401": 3, "403": 1}
    assert TOKEN not in json.dumps(health)


def test_hmac_signature_covers_a_timestamp_and_stale_requests_are_refused(
    runtime: Runtime, tmp_path: Path
) -> None:
    build_scenario(runtime, tmp_path)
    intake = intake_settings(hmac_secret=SecretStr(SECRET))
    with TestClient(create_app(runtime, intake=intake, run_playbooks=False)) as client:
        body = json.dumps(native("model-a")).encode()
        headers = {**AUTH, "Content-Type": "application/json"}

        def signed(secret: str, moment: float, signed_body: bytes = body) -> dict[str, str]:
            stamp = str(int(moment))
            return {
                **headers,
                "X-Rearguard-Timestamp": stamp,
                "X-Rearguard-Signature": sign(secret, stamp, signed_body),
            }

        now = time.time()
        assert client.post("/v1/incidents", content=body, headers=headers).status_code == 401
        # A signature over the body alone (the old scheme) no longer passes.
        body_only = {**headers, "X-Rearguard-Signature": sign(SECRET, "", body)[:-1]}
        assert client.post("/v1/incidents", content=body, headers=body_only).status_code == 401
        bad = signed("other", now)
        assert client.post("/v1/incidents", content=body, headers=bad).status_code == 403
        # A request captured more than 5 minutes ago, replayed as it was: refused.
        stale = signed(SECRET, now - 301)
        assert client.post("/v1/incidents", content=body, headers=stale).status_code == 403
        # The timestamp is inside the signature: a fresh one on the old signature fails too.
        moved = {**stale, "X-Rearguard-Timestamp": str(int(now))}
        assert client.post("/v1/incidents", content=body, headers=moved).status_code == 403
        accepted = client.post("/v1/incidents", content=body, headers=signed(SECRET, now))
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["action"] == "opened"


def test_token_scopes_read_lists_write_posts_and_a_bare_token_does_both(
    runtime: Runtime, tmp_path: Path
) -> None:
    build_scenario(runtime, tmp_path)
    tokens = ["read:reader-token-0123456789", "write:writer-token-0123456789", TOKEN]
    intake = IntakeSettings(tokens=tokens)
    reader = {"Authorization": "Bearer reader-token-0123456789"}
    writer = {"Authorization": "Bearer writer-token-0123456789"}
    with TestClient(create_app(runtime, intake=intake, run_playbooks=False)) as client:
        refused = client.post("/v1/incidents", json=native("model-a"), headers=reader)
        assert refused.status_code == 403 and "write" in refused.json()["detail"]
        opened = client.post("/v1/incidents", json=native("model-a"), headers=writer)
        assert opened.status_code == 202
        assert client.get("/v1/incidents", headers=writer).status_code == 403
        assert client.get("/v1/incidents/1", headers=writer).status_code == 403
        assert len(client.get("/v1/incidents", headers=reader).json()) == 1
        assert client.get("/v1/incidents/1", headers=reader).status_code == 200
        # The bare token keeps both, and the scope prefix is no token by itself.
        assert client.get("/v1/incidents", headers=AUTH).status_code == 200
        alert = am_webhook(am_alert("model-a"))
        assert client.post("/v1/alerts/alertmanager", json=alert, headers=AUTH).status_code == 202
        prefix = {"Authorization": "Bearer read:reader-token-0123456789"}
        assert client.get("/v1/incidents", headers=prefix).status_code == 403


def test_an_unhandled_error_is_counted_as_a_5xx_on_healthz(runtime: Runtime) -> None:
    app = create_app(runtime, intake=intake_settings(), run_playbooks=False)

    def broken() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/v1/broken", broken)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/v1/broken", headers=AUTH).status_code == 500
        health = client.get("/healthz").json()
    assert health["refused_by_status"] == {"500": 1}
    assert health["requests"]["refused"] == 1


def test_the_slack_routes_need_no_token_but_keep_the_body_limit(client: TestClient) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for path in ("/v1/slack/interactions", "/v1/slack/commands"):
        # No signing secret in this runtime: the route answers, without asking for a token.
        unconfigured = client.post(path, content=b"payload=%7B%7D", headers=form)
        assert unconfigured.status_code == 503, path
        assert "REARGUARD_SLACK_SIGNING_SECRET" in unconfigured.text
        too_big = client.post(path, content=b"x" * (1024 * 1024 + 1), headers=form)
        assert too_big.status_code == 413, path
        # Only that exact path is open: its neighbours still need the token.
        assert client.post(f"{path}/x", content=b"", headers=form).status_code == 401, path
    assert client.get("/healthz").json()["refused_by_status"] == {"503": 2, "413": 2, "401": 2}


def test_bodies_over_the_limit_are_refused_declared_or_streamed(client: TestClient) -> None:
    big = b'{"type": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    declared = client.post("/v1/incidents", content=big, headers=AUTH)
    assert declared.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while it streams
        for _ in range(40):
            yield b"x" * (256 * 1024)

    streamed = client.post("/v1/incidents", content=chunks(), headers=AUTH)
    assert streamed.status_code == 413
    assert client.get("/v1/incidents", headers=AUTH).json() == []


def test_malformed_json_and_wrong_types_get_a_precise_422(client: TestClient) -> None:
    broken = client.post(
        "/v1/incidents", content=b'{"type": ', headers={**AUTH, "Content-Type": "application/json"}
    )
    assert broken.status_code == 422
    assert "JSON" in broken.json()["detail"]
    wrong = client.post("/v1/incidents", json=native("model-a", severity="sev9"), headers=AUTH)
    assert wrong.status_code == 422
    assert wrong.json()["detail"].startswith("body.severity:")
    not_a_list = client.post(
        "/v1/alerts/alertmanager", json={"version": "4", "alerts": "many"}, headers=AUTH
    )
    assert not_a_list.status_code == 422
    assert not_a_list.json()["detail"].startswith("body.alerts:")
    unknown = client.post("/v1/incidents", json=native("no-such-model"), headers=AUTH)
    assert unknown.status_code == 422
    assert unknown.json()["detail"] == "unknown asset 'no-such-model'"
    bad_type = client.post("/v1/incidents", json={**native("model-a"), "type": "x"}, headers=AUTH)
    assert bad_type.status_code == 422
    assert "unknown incident type 'x'" in bad_type.json()["detail"]
    assert client.get("/v1/incidents", headers=AUTH).json() == []


def test_openapi_document_names_both_intake_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/incidents", "/v1/alerts/alertmanager", "/v1/incidents/{incident_id}"} <= set(paths)
    assert client.get("/docs").status_code == 200


def test_auth_off_is_refused_off_loopback_and_tokens_are_required() -> None:
    check_exposure(IntakeSettings(auth="off", host="127.0.0.1"))
    with pytest.raises(ConfigurationError, match="not loopback"):
        check_exposure(IntakeSettings(auth="off", host="0.0.0.0"))
    with pytest.raises(ConfigurationError, match="requires a bearer token"):
        check_exposure(IntakeSettings(tokens=[]))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
_native_like = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["model_compromise", "", "x"]) | _json,
        "asset": st.sampled_from(["model-a", "nope", ""]) | _json,
        "severity": st.sampled_from(["sev1", "sev4", "SEV1"]) | _json,
        "since": st.sampled_from(["2020-01-01T00:00:00Z", "3000-01-01", "yesterday"]) | _json,
        "summary": st.text(max_size=50) | _json,
        "dedup_key": st.text(max_size=300) | _json,
        "labels": st.dictionaries(st.text(max_size=300), st.text(max_size=30), max_size=3) | _json,
    },
)
_alert_like = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from(["firing", "resolved", "x"]) | _json,
        "labels": st.fixed_dictionaries(
            {"asset": st.sampled_from(["model-a", "nope"]) | st.text(max_size=5)},
            optional={"rearguard_type": st.sampled_from(["model_compromise", "nope"])},
        )
        | _json,
        "startsAt": st.sampled_from(["0001-01-01T00:00:00Z", "2026-01-01T00:00:00Z"]) | _json,
        "fingerprint": st.text(max_size=70) | _json,
    },
)
_am_like = st.fixed_dictionaries(
    {"alerts": st.lists(_alert_like, max_size=3) | _json},
    optional={"version": st.sampled_from(["4", "3"]) | _json, "status": _json},
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    route=st.sampled_from(["/v1/incidents", "/v1/alerts/alertmanager"]),
    body=_native_like | _am_like | _json,
    junk=st.none() | st.binary(max_size=64),
)
def test_fuzzed_bodies_never_get_a_5xx(
    client: TestClient, route: str, body: object, junk: bytes | None
) -> None:
    content = junk if junk is not None else json.dumps(body).encode()
    response = client.post(
        route, content=content, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code < 500, (response.status_code, response.text)
    assert response.status_code in (202, 400, 422), response.text


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    incident_id=st.integers()
    | st.sampled_from([0, -1, MAX_ROW_ID, MAX_ROW_ID + 1, 2**63, 10**30])
    | st.text(
        st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="/?#%."),
        min_size=1,
        max_size=30,
    ),
    query=st.dictionaries(
        st.sampled_from(["status", "limit"]),
        st.integers().map(str) | st.sampled_from(["open", "recovered", "", "x"]),
        max_size=2,
    ),
)
def test_fuzzed_reads_never_get_a_5xx(
    client: TestClient, incident_id: int | str, query: dict[str, str]
) -> None:
    one = client.get(f"/v1/incidents/{incident_id}", headers=AUTH)
    assert one.status_code in (404, 422), (incident_id, one.status_code, one.text)
    listed = client.get("/v1/incidents", params=query, headers=AUTH)
    assert listed.status_code in (200, 422), (query, listed.status_code, listed.text)


def test_an_id_no_row_can_have_is_refused_with_its_range(client: TestClient) -> None:
    refused = client.get(f"/v1/incidents/{MAX_ROW_ID + 1}", headers=AUTH)
    assert refused.status_code == 422
    assert refused.json()["detail"].startswith("path.incident_id: Input should be less than")
    assert client.get(f"/v1/incidents/{MAX_ROW_ID}", headers=AUTH).status_code == 404


def test_resolved_alerts_are_recorded_and_never_open(client: TestClient) -> None:
    resolved = client.post(
        "/v1/alerts/alertmanager",
        json=am_webhook(am_alert("model-a", status="resolved", fingerprint="f1")),
        headers=AUTH,
    )
    assert resolved.status_code == 202
    assert resolved.json()["results"] == [
        {"action": "unmatched", "incident_id": None, "fingerprint": "f1", "error": None}
    ]
    assert client.get("/v1/incidents", headers=AUTH).json() == []
    fired = client.post(
        "/v1/alerts/alertmanager",
        json=am_webhook(
            am_alert("model-a", fingerprint="f1"), am_alert("model-a", fingerprint="f2")
        ),
        headers=AUTH,
    ).json()["results"]
    assert [r["action"] for r in fired] == ["opened", "attached"]
    incident_id = fired[0]["incident_id"]
    assert fired[1]["incident_id"] == incident_id
    ended = client.post(
        "/v1/alerts/alertmanager",
        json=am_webhook(am_alert("model-a", status="resolved", fingerprint="f2")),
        headers=AUTH,
    ).json()["results"]
    assert ended == [
        {"action": "resolved", "incident_id": incident_id, "fingerprint": "f2", "error": None}
    ]
    shown = client.get(f"/v1/incidents/{incident_id}", headers=AUTH).json()
    actions = [e["action"] for e in shown["timeline"]]
    assert actions == ["incident.opened", "alert.opened", "alert.attached", "alert.resolved"]
    assert len(client.get("/v1/incidents", headers=AUTH).json()) == 1
    unmapped = client.post(
        "/v1/alerts/alertmanager",
        json=am_webhook({**am_alert("model-a"), "labels": {"alertname": "Disk"}}),
        headers=AUTH,
    ).json()["results"][0]
    assert unmapped["action"] == "rejected"
    assert "no mapping rule gives an incident type" in unmapped["error"]
    assert client.get("/v1/incidents/999", headers=AUTH).status_code == 404


@pytest.mark.parametrize(
    "since", ["0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59", 0, 1764111000]
)
def test_a_time_out_of_range_or_a_number_is_a_422(client: TestClient, since: object) -> None:
    answer = client.post("/v1/incidents", json=native("model-a", since=since), headers=AUTH)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith("body.since: ")
    alert = {**am_alert("model-a"), "endsAt": since, "startsAt": "2026-11-25T03:00:00Z"}
    answer = client.post("/v1/alerts/alertmanager", json=am_webhook(alert), headers=AUTH)
    assert answer.status_code == 422, answer.text
    assert client.get("/healthz").json()["refused_by_status"] == {"422": 2}


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59"])
def test_the_cli_since_out_of_range_is_a_usage_error(value: str) -> None:
    with pytest.raises(UsageError, match="out of range") as raised:
        parse_since(value)
    assert raised.value.exit_code == 2


def test_an_alert_the_database_cannot_hold_is_refused_and_fails_no_other(
    runtime: Runtime, tmp_path: Path
) -> None:
    """A NUL or a lone surrogate among concurrent legitimate alerts: it alone is refused
    (PostgreSQL's text holds no NUL; it used to fail its whole write batch, 503 for the
    others, which Alertmanager then retries)."""
    build_scenario(runtime, tmp_path)
    bad_native = native("model-a", summary="drift\x00", dedup_key="k\x00")
    bad_alert = am_alert("model-a", fingerprint="f\x00", note="a\x00b")
    surrogate = native("model-a", summary="lone \ud800 surrogate")

    with live_intake(runtime, run_playbooks=False) as url, storm_client() as http:

        def post(n: int) -> int:
            if n == 7:
                return http.post(f"{url}/v1/incidents", json=bad_native).status_code
            if n == 13:
                # json.dumps escapes it (\\ud800), as a sender would have to.
                body = json.dumps(surrogate).encode()
                headers = {"Content-Type": "application/json"}
                return http.post(f"{url}/v1/incidents", content=body, headers=headers).status_code
            if n == 21:
                webhook = am_webhook(bad_alert, am_alert("model-a", fingerprint="ok21"))
                answer = http.post(f"{url}/v1/alerts/alertmanager", json=webhook)
                actions = [r["action"] for r in answer.json()["results"]]
                assert actions[0] == "rejected" and actions[1] in ("opened", "attached")
                return 2021 if answer.status_code == 202 else answer.status_code
            webhook = am_webhook(am_alert("model-a", fingerprint=f"ok{n}"))
            return http.post(f"{url}/v1/alerts/alertmanager", json=webhook).status_code

        with ThreadPoolExecutor(max_workers=16) as pool:
            statuses = list(pool.map(post, range(40)))

    assert statuses[7] == 422 and statuses[13] == 422 and statuses[21] == 2021
    assert [s for n, s in enumerate(statuses) if n not in (7, 13, 21)] == [202] * 37
    # The NUL alerts are recorded as refused (the character replaced); the schema refuses
    # the lone surrogate before it is an alert.
    rejected = [e for e in alert_events(runtime) if e["action"] == "alert.rejected"]
    assert len(rejected) == 2 and all("NUL" in e["data"]["error"] for e in rejected)
    assert len([e for e in alert_events(runtime) if e["action"] != "alert.rejected"]) == 38


def test_the_cli_refuses_a_text_the_database_cannot_hold(runtime: Runtime) -> None:
    with runtime.db.session() as session, pytest.raises(UsageError, match="NUL") as raised:
        open_incident(session=session, type="model_compromise", actor="oncall", summary="a\x00b")
    assert raised.value.exit_code == 2
