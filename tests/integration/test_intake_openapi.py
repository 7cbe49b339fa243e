"""The intake's OpenAPI document says what each route answers, and the answers match it.

The document is fetched from the running app (``/openapi.json``) as a client would, and real
responses, refusals included, are checked against the schema it documents for their status
and content type (JSON Schema 2020-12, which OpenAPI 3.1 uses).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from intake_helpers import AUTH, am_alert, am_webhook, intake_settings, native
from jsonschema import Draft202012Validator
from pydantic import SecretStr
from scenarios import build_scenario

from rearguard.flows.intake.app import create_app
from rearguard.models.names import MAX_ROW_ID
from rearguard.models.runtime import Runtime

GUARDED = ("400", "401", "403", "413")


@pytest.fixture
def client(runtime: Runtime, tmp_path: Path) -> Iterator[TestClient]:
    build_scenario(runtime, tmp_path)
    with TestClient(create_app(runtime, intake=intake_settings(), run_playbooks=False)) as c:
        yield c


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def check_conforms(
    document: dict[str, Any], method: str, path: str, answer: httpx.Response
) -> None:
    """Fail unless the route documents this status and the body fits its schema."""
    responses = document["paths"][path][method]["responses"]
    status = str(answer.status_code)
    assert status in responses, f"{method.upper()} {path} answered {status}, not documented"
    media = answer.headers["content-type"].split(";")[0]
    content = responses[status].get("content", {})
    assert media in content, f"{method.upper()} {path} {status}: {media} is not documented"
    body: Any = answer.json() if media == "application/json" else answer.text
    # The references point into the document's components: carry them along as the root's.
    schema = {**content[media]["schema"], "components": document["components"]}
    errors = sorted(Draft202012Validator(schema).iter_errors(body), key=str)
    assert not errors, f"{method.upper()} {path} {status}: {errors[0].message}"


def test_every_guarded_route_documents_the_bearer_token_and_each_refusal(
    client: TestClient,
) -> None:
    document = client.get("/openapi.json").json()
    scheme = document["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    seen = set()
    for path, method, operation in operations(document):
        seen.add((method, path))
        responses = operation["responses"]
        if path.startswith("/v1/") and not path.startswith("/v1/slack/"):
            assert operation["security"] == [{"bearer": []}], (method, path)
            assert set(GUARDED) <= set(responses), (method, path)
            for status in GUARDED:
                body = responses[status]["content"]["application/json"]["schema"]
                assert body == {"$ref": "#/components/schemas/Problem"}, (method, path, status)
            invalid = responses["422"]["content"]["application/json"]["schema"]
            assert invalid == {"$ref": "#/components/schemas/ValidationProblem"}
        else:
            assert "security" not in operation, (method, path)
    assert seen == {
        ("post", "/v1/incidents"),
        ("get", "/v1/incidents"),
        ("get", "/v1/incidents/{incident_id}"),
        ("post", "/v1/alerts/alertmanager"),
        ("post", "/v1/slack/interactions"),
        ("post", "/v1/slack/commands"),
        ("get", "/healthz"),
    }
    routes = document["paths"]
    assert "503" in routes["/v1/incidents"]["post"]["responses"]
    assert "404" in routes["/v1/incidents/{incident_id}"]["get"]["responses"]
    listed = routes["/v1/incidents"]["get"]["responses"]["200"]["content"]["application/json"]
    assert listed["schema"]["items"] == {"$ref": "#/components/schemas/IncidentRead"}
    shown = routes["/v1/incidents/{incident_id}"]["get"]["responses"]["200"]["content"]
    assert shown["application/json"]["schema"] == {"$ref": "#/components/schemas/IncidentDetail"}
    detail = document["components"]["schemas"]["IncidentDetail"]
    assert {"id", "status", "production", "timeline"} <= set(detail["required"])
    slack = routes["/v1/slack/interactions"]["post"]["responses"]
    assert {"200", "400", "401", "403", "404", "409", "413", "503"} <= set(slack)
    command = routes["/v1/slack/commands"]["post"]["responses"]
    assert {"200", "400", "401", "409", "413", "503"} <= set(command)
    reply = command["200"]["content"]["application/json"]["schema"]
    assert reply == {"$ref": "#/components/schemas/SlackReply"}


def test_real_answers_fit_the_documented_bodies(client: TestClient) -> None:
    document = client.get("/openapi.json").json()

    def call(method: str, path: str, url: str | None = None, **kwargs: Any) -> httpx.Response:
        answer = client.request(method, url or path, **kwargs)
        check_conforms(document, method, path, answer)
        return answer

    assert call("get", "/v1/incidents").status_code == 401
    wrong = {"Authorization": "Bearer wrong"}
    assert call("get", "/v1/incidents", headers=wrong).status_code == 403
    big = b"x" * (1024 * 1024 + 1)
    assert call("post", "/v1/incidents", content=big, headers=AUTH).status_code == 413
    bad = call("post", "/v1/incidents", json=native("model-a", severity="sev9"), headers=AUTH)
    assert bad.status_code == 422 and bad.json()["errors"]
    unknown = call("post", "/v1/incidents", json=native("no-such-model"), headers=AUTH)
    assert unknown.status_code == 422
    opened = call("post", "/v1/incidents", json=native("model-a"), headers=AUTH)
    assert opened.status_code == 202 and opened.json()["action"] == "opened"
    incident_id = opened.json()["incident_id"]
    alert = call(
        "post", "/v1/alerts/alertmanager", json=am_webhook(am_alert("model-a")), headers=AUTH
    )
    assert alert.json()["results"][0]["incident_id"] == incident_id
    listed = call("get", "/v1/incidents", headers=AUTH)
    assert [i["id"] for i in listed.json()] == [incident_id]
    path = "/v1/incidents/{incident_id}"
    shown = call("get", path, f"/v1/incidents/{incident_id}", headers=AUTH)
    assert shown.json()["production"] == "v3"
    assert shown.json()["timeline"][0]["action"] == "incident.opened"
    missing = call("get", path, f"/v1/incidents/{incident_id + 1}", headers=AUTH)
    assert missing.status_code == 404
    out_of_range = call("get", path, f"/v1/incidents/{MAX_ROW_ID + 1}", headers=AUTH)
    assert out_of_range.status_code == 422
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    slack = call("post", "/v1/slack/interactions", content=b"payload=%7B%7D", headers=form)
    assert slack.status_code == 503
    typed = call("post", "/v1/slack/commands", content=b"text=help&user_id=U1", headers=form)
    assert typed.status_code == 503
    health = call("get", "/healthz")
    assert health.json()["requests"]["refused"] == 9


def test_without_auth_the_document_declares_no_token(runtime: Runtime, tmp_path: Path) -> None:
    build_scenario(runtime, tmp_path)
    intake = intake_settings(auth="off", hmac_secret=None)
    with TestClient(create_app(runtime, intake=intake, run_playbooks=False)) as client:
        document = client.get("/openapi.json").json()
        listed = document["paths"]["/v1/incidents"]["get"]
        assert "security" not in listed and "401" not in listed["responses"]
        assert "413" in listed["responses"]
        answer = client.get("/v1/incidents")
        assert answer.status_code == 200
        check_conforms(document, "get", "/v1/incidents", answer)


def test_a_signature_secret_documents_its_refusals(runtime: Runtime, tmp_path: Path) -> None:
    build_scenario(runtime, tmp_path)
    intake = intake_settings(hmac_secret=SecretStr("s" * 32))
    with TestClient(create_app(runtime, intake=intake, run_playbooks=False)) as client:
        document = client.get("/openapi.json").json()
        posted = document["paths"]["/v1/incidents"]["post"]["responses"]
        assert "X-Rearguard-Signature" in posted["401"]["description"]
        unsigned = client.post("/v1/incidents", json=native("model-a"), headers=AUTH)
        assert unsigned.status_code == 401
        check_conforms(document, "post", "/v1/incidents", unsigned)
