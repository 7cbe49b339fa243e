"""Helpers of the approval tests: a policy in rearguard.toml, a playbook run that waits.

The playbook runs the real async flow through ``run_playbook`` in a thread (with a copy of the
test's context, so it talks to the session's Prefect server), while the test decides as a
person would, through the CLI, the service, Prefect's resume API or a Slack callback.
"""

from __future__ import annotations

import base64
import contextvars
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from notification_helpers import make_runtime
from scenarios import build_scenario

from rearguard.flows.opening import open_and_record
from rearguard.flows.run_playbook import run_playbook
from rearguard.models.audit.chain import events_for_incident
from rearguard.models.db.tables import ApprovalRequest, Incident
from rearguard.models.enums import Severity
from rearguard.models.incidents.approvals import list_requests
from rearguard.models.runtime import Runtime
from rearguard.notifications.slack_interactions import sign

SLACK_SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TOKEN = "xoxb-test-token"


def policy_toml(
    *,
    timeout_s: float = 60,
    on_timeout: str = "escalate",
    escalate_to: tuple[str, ...] = ("carol",),
    poll_s: float = 0.1,
    slack_base_url: str | None = None,
    keys: dict[str, str] | None = None,
    contacts: dict[str, str] | None = None,
    approvers_required: int = 1,
) -> str:
    """A policy: sev1 rollbacks of model-* wait for the sre group (alice, bob).

    With ``slack_base_url``, notifications also go to ``#incidents`` on that Slack-like server.
    ``keys`` (name -> public key) and ``contacts`` (name -> email or slack:U...) let those
    approvers prove who they are; the others' word is taken (``allow_self_asserted``).
    """
    proofs = "".join(
        f"\n[approvals.{table}]\n" + "".join(f"{n} = {json.dumps(v)}\n" for n, v in found.items())
        for table, found in (("keys", keys), ("contacts", contacts))
        if found
    )
    slack = f"""
[notifications.slack]
channel = "#incidents"
base_url = "{slack_base_url}"
timeout_s = 5
"""
    return f"""
[notifications]
channels = {json.dumps(["file", "slack"] if slack_base_url else ["file"])}
dispatch_wait_s = 2
{slack if slack_base_url else ""}
[approvals]
poll_s = {poll_s}
allow_self_asserted = true
{proofs}
[approvals.groups]
sre = ["alice", "bob"]

[approvals.slack_users]
U0ALICE = "alice"
U0MALLORY = "mallory"

[[approvals.rules]]
playbook = "model_compromise"
min_severity = "sev1"
asset = "model-*"
steps = ["rollback"]
approvers = ["sre"]
timeout_s = {timeout_s}
on_timeout = "{on_timeout}"
escalate_to = {json.dumps(list(escalate_to))}
approvers_required = {approvers_required}
"""


def approval_runtime(
    home: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    **policy: Any,
) -> Runtime:
    """A runtime on the policy; model-a v1, v2 known-good, a tampered v3 in production."""
    runtime = make_runtime(
        home,
        database_url,
        monkeypatch,
        toml=policy_toml(**policy),
        env={
            "REARGUARD_SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET,
            "REARGUARD_SLACK_TOKEN": SLACK_TOKEN,
        },
    )
    build_scenario(runtime, tmp_path, tampered=True)
    return runtime


class PlaybookRun:
    """A playbook run in a thread; :meth:`result` joins it and returns the incident."""

    def __init__(self, runtime: Runtime, *, severity: Severity = Severity.SEV1) -> None:
        self.incident_id = open_and_record(
            runtime=runtime,
            type="model_compromise",
            asset="model-a",
            severity=severity,
            since=None,
            summary="weights altered",
            actor="oncall",
        )
        self._incident: Incident | None = None
        self._error: BaseException | None = None
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._run, runtime), name="playbook", daemon=True
        )
        self._thread.start()

    def _run(self, runtime: Runtime) -> None:
        try:
            self._incident = run_playbook(runtime=runtime, incident_id=self.incident_id)
        except BaseException as exc:
            self._error = exc

    def result(self, timeout: float = 60) -> Incident:
        """Wait for the run to end and return the incident as it ended."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the playbook is still waiting"
        if self._error is not None:
            raise self._error
        assert self._incident is not None
        return self._incident


def signed(
    body: bytes, *, timestamp: float | None = None, secret: str = SLACK_SIGNING_SECRET
) -> dict[str, str]:
    """Slack's headers for a body: its v0 signature and the request timestamp."""
    stamp = str(int(time.time() if timestamp is None else timestamp))
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": sign(secret=secret, timestamp=stamp, body=body),
    }


def eventually(check: Callable[[], Any], *, timeout: float = 30, what: str = "") -> Any:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        time.sleep(0.05)


def requests_of(runtime: Runtime, incident_id: int) -> list[ApprovalRequest]:
    """An incident's approval requests, oldest first."""
    with runtime.db.read_session() as session:
        return list(reversed(list_requests(session=session, incident_id=incident_id)))


def pending_round(runtime: Runtime, incident_id: int, round_: int = 1) -> ApprovalRequest:
    """Wait until the incident's playbook waits on round ``round_``; return that request."""

    def find() -> ApprovalRequest | None:
        return next(
            (
                r
                for r in requests_of(runtime, incident_id)
                if r.round == round_ and r.status == "pending"
            ),
            None,
        )

    return eventually(find, what=f"round {round_} of incident {incident_id}")


def flow_run_state(flow_run_id: str) -> str:
    """The Prefect state type of a flow run (PAUSED, RUNNING, COMPLETED...)."""
    from prefect import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(flow_run_id)).state
    return state.type.value if state else "NONE"


def _paused_with_its_form(flow_run_id: str) -> bool:
    from prefect import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(flow_run_id)).state
        if state is None or not state.is_paused():
            return False
        keyset = state.state_details.run_input_keyset
        if not keyset:
            return False
        try:
            client.read_flow_run_input(UUID(flow_run_id), keyset["schema"])
        except PrefectHTTPStatusError as error:
            if error.response.status_code == 404:
                return False
            raise
    return True


def wait_paused(request: ApprovalRequest) -> None:
    """Wait until Prefect shows the request's flow run as Paused, with its input form.

    Prefect sets the Paused state first and saves the form's schema just after; a resume in
    between is refused ("Run input schema not found"), as the UI's form is not there yet.
    """
    assert request.flow_run_id
    flow_run_id = request.flow_run_id
    eventually(lambda: _paused_with_its_form(flow_run_id), what="a Paused run with its form")


def events(runtime: Runtime, incident_id: int, prefix: str = "") -> list[tuple[str, dict]]:
    """(action, data) of an incident's events whose action starts with ``prefix``."""
    with runtime.db.read_session() as session:
        found = events_for_incident(session=session, incident_id=incident_id)
    return [
        (e.action, {**json.loads(e.data), "actor": e.actor})
        for e in found
        if e.action.startswith(prefix)
    ]


class Approver:
    """A person's Ed25519 key pair: the private key in a file of theirs (mode 600)."""

    def __init__(self, directory: Path, name: str, *, mode: int = 0o600) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.path = directory / f"{name}.pem"
        self.path.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self.path.chmod(mode)
        self.public = (
            self.key.public_key()
            .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
            .decode()
        )

    def sign(self, document: dict[str, object]) -> str:
        """The base64 signature of a statement, built here as the README documents it."""
        text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return base64.b64encode(self.key.sign(text.encode())).decode()


def documented_statement(
    request: ApprovalRequest, *, approver: str, decision: str, comment: str
) -> dict[str, object]:
    """The statement of a decision, field by field as the README lists them."""
    return {
        "purpose": "rearguard-approval/1",
        "nonce": request.callback_id,
        "incident": request.incident_id,
        "step": request.step,
        "round": request.round,
        "decision": decision,
        "approver": approver,
        "comment": comment,
        "expires": request.deadline.astimezone(UTC).isoformat(timespec="seconds"),
    }
