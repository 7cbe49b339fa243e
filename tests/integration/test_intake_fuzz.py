"""The intake under generated requests (schemathesis, from its own OpenAPI document).

Every operation the running app documents is called with requests generated from that
document, valid ones and invalid ones, with the bearer token: the intake never answers 5xx, and
every answer conforms to what the document says of its status, content type, headers and body.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from approval_helpers import SLACK_SIGNING_SECRET
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from intake_helpers import AUTH, intake_settings
from notification_helpers import make_runtime
from scenarios import build_scenario
from schemathesis.checks import positive_data_acceptance

from rearguard.flows.intake.app import create_app
from rearguard.models.runtime import Runtime

pytestmark = pytest.mark.one_database

# Examples per operation and mode: enough to reach every refusal the routes answer, few enough
# for CI (the whole run is a few seconds in process).
EXAMPLES = 25


@pytest.fixture
def runtime(home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """A runtime with Slack callbacks configured, so that their route is fuzzed too (without a
    signing secret it answers every request 503, saying so)."""
    env = {"REARGUARD_SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET}
    made = make_runtime(home, database_url, monkeypatch, env=env)
    yield made
    made.db.dispose()


@pytest.fixture
def intake_app(runtime: Runtime, tmp_path: Path) -> Iterator[FastAPI]:
    build_scenario(runtime, tmp_path)
    app = create_app(runtime, intake=intake_settings(), run_playbooks=False)
    with TestClient(app):  # its lifespan runs (the writer, the dispatcher)
        yield app


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=str)
def test_no_server_error_and_every_answer_as_documented(
    intake_app: FastAPI, mode: schemathesis.GenerationMode
) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", intake_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, "the document lists no operation"
    for operation in operations:
        # The token is fixed, never generated: the invalid requests are invalid otherwise.
        @given(case=operation.as_strategy(generation_mode=mode, headers=AUTH))
        @settings(
            max_examples=EXAMPLES,
            derandomize=True,  # the same requests on every run: a failure reproduces
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: schemathesis.Case) -> None:
            # A well-formed event that names an asset or incident type the intake does not
            # know is answered 422, as the document says; this check would count it as a
            # valid request refused.
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        try:
            call()
        except Unsatisfiable:
            # Nothing of the operation can be made invalid (no parameter, no body).
            assert mode == schemathesis.GenerationMode.NEGATIVE, operation.label
