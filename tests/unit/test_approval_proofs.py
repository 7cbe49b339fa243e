"""Authenticated approvals: a decision counts only with a proof of who made it.

No playbook runs here (and no Prefect): a request waits as the gate opens it, and people
answer through the installed ``rearguard approve`` or the service every channel calls. What is
asserted is what an approver and a reviewer see: the exit code and its line, the request's
state, the timeline (the chain) and the review export. The one-time codes travel through the
real outbox and dispatcher to an SMTP server on loopback.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from approval_helpers import Approver, documented_statement, events, requests_of
from cli_helpers import rearguard
from cryptography.hazmat.primitives import serialization
from notification_helpers import SmtpServer, make_runtime, new_incident

from rearguard.flows.approvals.codes import queue_codes
from rearguard.flows.approvals.decide import answer
from rearguard.flows.exports.export import write_export
from rearguard.flows.exports.formats import ExportFormat
from rearguard.models.config.settings import load_settings
from rearguard.models.db.tables import ApprovalRequest
from rearguard.models.enums import Severity
from rearguard.models.errors import ConfigurationError, ConflictError, NotEntitled
from rearguard.models.incidents.approval_proofs import Proof
from rearguard.models.incidents.approvals import decide, open_request
from rearguard.models.incidents.service import get_incident
from rearguard.models.runtime import Runtime
from rearguard.notifications.dispatcher import Dispatcher


def policy(
    *,
    keys: dict[str, str] | None = None,
    contacts: dict[str, str] | None = None,
    required: int = 1,
    self_asserted: bool = False,
    smtp_port: int | None = None,
) -> str:
    """sev1 rollbacks wait for alice or bob; ``keys`` and ``contacts`` let them prove it."""
    tables = "".join(
        f"[approvals.{name}]\n" + "".join(f"{n} = {json.dumps(v)}\n" for n, v in found.items())
        for name, found in (("keys", keys), ("contacts", contacts))
        if found
    )
    email = (
        f'[notifications.email]\nhost = "127.0.0.1"\nport = {smtp_port}\nsecurity = "none"\n'
        'sender = "rearguard@example.org"\ntimeout_s = 5\n'
        if smtp_port
        else ""
    )
    return f"""
[notifications]
channels = ["file"]
backoff_base_s = 0.05
{email}
[approvals]
allow_self_asserted = {json.dumps(self_asserted)}
{tables}
[[approvals.rules]]
min_severity = "sev1"
steps = ["rollback"]
approvers = ["alice", "bob"]
approvers_required = {required}
"""


@pytest.fixture
def runtimes(home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator:  # type: ignore[type-arg]
    """Call ``runtimes(toml)`` for a runtime on that rearguard.toml."""
    made: list[Runtime] = []

    def make(toml: str) -> Runtime:
        runtime = make_runtime(home, database_url, monkeypatch, toml=toml)
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        runtime.db.dispose()


def waiting(runtime: Runtime) -> ApprovalRequest:
    """An incident whose rollback waits, as the gate opens it (no playbook runs)."""
    incident_id = new_incident(runtime, severity=Severity.SEV1)
    return open_request(
        db=runtime.db,
        approvals=runtime.settings.approvals,
        incident_id=incident_id,
        step="rollback",
        rule=runtime.settings.approvals.rules[0],
        actor="playbook:model_compromise",
    )


def chain_text(runtime: Runtime, incident_id: int) -> str:
    return json.dumps(events(runtime, incident_id))


def test_cli_approve_signs_with_the_registered_key_and_the_chain_names_it(
    runtimes, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen (openssh-client) is not installed")
    key = tmp_path / "alice_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice", "-f", str(key)], check=True
    )
    public = key.with_suffix(".pub").read_text().strip()
    listed = subprocess.run(["ssh-keygen", "-lf", str(key)], check=True, capture_output=True)
    ssh_fingerprint = listed.stdout.decode().split()[1]
    runtime = runtimes(policy(keys={"alice": public, "bob": Approver(tmp_path, "bob").public}))
    request = waiting(runtime)

    done = rearguard(
        runtime, "approve", str(request.incident_id), "--by", "alice", "--key", str(key),
        "--comment", "v2 checked",
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"incident {request.incident_id}: rollback approved by alice"
    (decided,) = requests_of(runtime, request.incident_id)
    assert decided.status == "approved" and decided.decided_by == "alice"
    ((_, recorded),) = events(runtime, request.incident_id, "approval.approved")
    assert recorded["proof"] == "signature" and recorded["key"] == ssh_fingerprint
    # The chain holds what a reviewer needs to check the signature with alice's public key.
    statement = documented_statement(
        request, approver="alice", decision="approve", comment="v2 checked"
    )
    assert recorded["nonce"] == statement["nonce"] and recorded["expires"] == statement["expires"]
    alice = serialization.load_ssh_public_key(public.encode())
    text = json.dumps(statement, sort_keys=True, separators=(",", ":"))
    alice.verify(base64.b64decode(recorded["signature"]), text.encode())  # type: ignore[union-attr]


def test_a_wrong_key_or_a_tampered_statement_is_refused_and_recorded(
    runtimes, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    alice, bob = Approver(tmp_path, "alice"), Approver(tmp_path, "bob")
    mallory = Approver(tmp_path, "mallory")
    runtime = runtimes(policy(keys={"alice": alice.public, "bob": bob.public}))
    request = waiting(runtime)
    incident = str(request.incident_id)

    wrong_key = rearguard(runtime, "approve", incident, "--by", "alice", "--key", str(mallory.path))
    signed = alice.sign(
        documented_statement(request, approver="alice", decision="approve", comment="v2 checked")
    )
    tampered = []
    for approve, comment in ((True, "v1 checked"), (False, "v2 checked")):
        with pytest.raises(NotEntitled) as refused:
            decide(
                db=runtime.db,
                approvals=runtime.settings.approvals,
                approver="alice",
                approve=approve,
                comment=comment,
                via="prefect-ui",
                proof=Proof(signature=signed),
                incident_id=request.incident_id,
            )
        tampered.append(refused.value.message)
    with pytest.raises(NotEntitled) as unsigned:
        answer(runtime=runtime, incident_id=request.incident_id, approver="alice", approve=True)

    assert wrong_key.returncode == 2
    assert wrong_key.stderr.splitlines()[0].startswith(
        "error: the signature is not alice's (SHA256:"
    )
    assert all("is not alice's" in m for m in tampered)
    assert unsigned.value.message == (
        "the answer for alice carries neither a signature nor a one-time code"
    )
    assert unsigned.value.hint and "--key PATH" in unsigned.value.hint
    refusals = events(runtime, request.incident_id, "approval.refused")
    assert [d["via"] for _, d in refusals] == ["cli", "prefect-ui", "prefect-ui", "cli"]
    assert all(d["actor"] == "alice" and d["reason"] for _, d in refusals)
    assert requests_of(runtime, request.incident_id)[0].status == "pending"
    # The signature of the statement as signed is alice's: it decides.
    decide(
        db=runtime.db,
        approvals=runtime.settings.approvals,
        approver="alice",
        approve=True,
        comment="v2 checked",
        via="prefect-ui",
        proof=Proof(signature=signed),
        incident_id=request.incident_id,
    )
    assert requests_of(runtime, request.incident_id)[0].status == "approved"


def test_a_private_key_others_can_read_is_refused_before_anything_is_recorded(
    runtimes, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    alice = Approver(tmp_path, "alice", mode=0o640)
    runtime = runtimes(policy(keys={"alice": alice.public, "bob": alice.public}))
    request = waiting(runtime)

    with pytest.raises(ConfigurationError) as refused:
        answer(
            runtime=runtime,
            incident_id=request.incident_id,
            approver="alice",
            approve=True,
            key=alice.path,
        )

    assert refused.value.exit_code == 2
    assert refused.value.message == (
        f"the approver key {alice.path} is readable by others (mode 640)"
    )
    assert refused.value.hint == f"chmod 600 {alice.path}"
    assert not events(runtime, request.incident_id, "approval.refused")
    assert requests_of(runtime, request.incident_id)[0].status == "pending"


def delivered_codes(runtime: Runtime, smtp: SmtpServer, request: ApprovalRequest) -> dict:  # type: ignore[type-arg]
    """Queue the round's codes as the gate does, deliver them; recipient -> code, as mailed."""
    with runtime.db.session() as session:
        incident = get_incident(session=session, incident_id=request.incident_id)
        queue_codes(session, settings=runtime.settings, incident=incident, request=request)
    with Dispatcher(settings=runtime.settings, db=runtime.db) as dispatcher:
        dispatcher.drain(wait_s=5)
    found = {}
    for (recipient,), message in smtp.messages:
        text = message.get_body(("plain",)).get_content()
        found[recipient] = re.search(r"one-time code is ([A-Z0-9]{5}-[A-Z0-9]{5})", text)[1]
    return found


def by_code(runtime: Runtime, request: ApprovalRequest, person: str, code: str) -> ApprovalRequest:
    """Answer the round with a code, as the Prefect UI's form does."""
    return decide(
        db=runtime.db,
        approvals=runtime.settings.approvals,
        approver=person,
        approve=True,
        via="prefect-ui",
        proof=Proof(code=code),
        callback_id=request.callback_id,
    )


def test_a_one_time_code_is_mailed_to_its_approver_alone_and_works_once(
    runtimes, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    with SmtpServer() as smtp:
        runtime = runtimes(
            policy(
                contacts={"alice": "alice@example.org", "bob": "bob@example.org"},
                smtp_port=smtp.port,
            )
        )
        request = waiting(runtime)
        codes = delivered_codes(runtime, smtp, request)

    assert sorted(codes) == ["alice@example.org", "bob@example.org"]
    alice, bob = codes["alice@example.org"], codes["bob@example.org"]
    assert alice != bob
    # Each code went to its person only (one message each), and never into the chain.
    assert sorted(to for to, _ in smtp.messages) == [["alice@example.org"], ["bob@example.org"]]
    assert alice not in chain_text(runtime, request.incident_id)
    # bob's code is bob's: alice cannot use it.
    with pytest.raises(NotEntitled, match="not a valid one-time code of alice"):
        by_code(runtime, request, "alice", bob)

    decided = answer(
        runtime=runtime,
        incident_id=request.incident_id,
        approver="alice",
        approve=True,
        code=alice.lower(),  # read off a phone: case does not matter
    )

    assert decided.status == "approved" and decided.decided_by == "alice"
    ((_, recorded),) = events(runtime, request.incident_id, "approval.approved")
    assert recorded["proof"] == "code" and recorded["channel"] == "email"
    with pytest.raises(ConflictError, match="already approved by alice"):
        by_code(runtime, request, "alice", alice)


def test_a_code_is_refused_the_second_time_and_after_its_round_expired(
    runtimes, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    with SmtpServer() as smtp:
        runtime = runtimes(
            policy(
                contacts={"alice": "alice@example.org", "bob": "bob@example.org"},
                required=2,
                smtp_port=smtp.port,
            )
        )
        request = waiting(runtime)
        codes = delivered_codes(runtime, smtp, request)
    alice, bob = codes["alice@example.org"], codes["bob@example.org"]

    assert by_code(runtime, request, "alice", alice).status == "pending"
    with pytest.raises(NotEntitled, match="alice has approved the rollback of incident"):
        by_code(runtime, request, "alice", alice)
    # The round's deadline passes before bob answers: his code no longer counts.
    with runtime.db.session() as session:
        stored = session.get(ApprovalRequest, request.id)
        assert stored is not None
        stored.deadline = datetime.now(UTC) - timedelta(seconds=1)
        session.add(stored)
    with pytest.raises(NotEntitled, match="the one-time code expired at"):
        by_code(runtime, request, "bob", bob)

    assert requests_of(runtime, request.incident_id)[0].status == "pending"
    reasons = [d["reason"] for _, d in events(runtime, request.incident_id, "approval.refused")]
    assert len(reasons) == 2 and "expired" in reasons[1]


def test_an_approver_with_neither_key_nor_contact_is_a_configuration_error(
    runtimes, home: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    runtime = runtimes("")  # the home, in the current directory, before the policy is set
    (home / "rearguard.toml").write_text(policy(keys={"alice": Approver(tmp_path, "a").public}))

    with pytest.raises(ConfigurationError) as error:
        load_settings(home=home)
    listed = rearguard(runtime, "approvals", "list")

    assert error.value.message.startswith(
        "invalid setting approvals: bob may approve but has neither a key ([approvals.keys]) "
        "nor a contact for one-time codes ([approvals.contacts])"
    )
    assert listed.returncode == 2
    assert listed.stderr.splitlines()[0] == f"error: {error.value.message}"
    assert len(listed.stderr.splitlines()) == 1
    # A contact whose channel cannot send (no SMTP server) is no way to prove it either.
    key = Approver(tmp_path, "a").public
    (home / "rearguard.toml").write_text(
        policy(keys={"alice": key}, contacts={"bob": "bob@example.org"})
    )
    with pytest.raises(ConfigurationError) as unsendable:
        load_settings(home=home)
    assert unsendable.value.message == (
        "invalid setting approvals.contacts.bob: one-time codes go by email, but no SMTP "
        "server is configured ([notifications.email] host)"
    )


def test_self_asserted_decisions_are_marked_in_the_chain_and_the_review(runtimes) -> None:  # type: ignore[no-untyped-def]
    runtime = runtimes(policy(self_asserted=True))
    request = waiting(runtime)

    decided = answer(
        runtime=runtime, incident_id=request.incident_id, approver="bob", approve=True,
        comment="looks fine",
    )  # fmt: skip
    review = io.StringIO()
    write_export(
        db=runtime.db, incident_id=request.incident_id, export_format=ExportFormat.MD, out=review
    )

    assert decided.status == "approved" and decided.decided_by == "bob"
    ((_, recorded),) = events(runtime, request.incident_id, "approval.approved")
    assert recorded["proof"] == "self-asserted" and recorded["actor"] == "bob"
    assert "rollback (round 1), self-asserted: looks fine" in review.getvalue()


def test_a_quorum_of_two_needs_two_distinct_people(runtimes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    alice, bob = Approver(tmp_path, "alice"), Approver(tmp_path, "bob")
    runtime = runtimes(policy(keys={"alice": alice.public, "bob": bob.public}, required=2))
    request = waiting(runtime)
    incident = str(request.incident_id)

    first = rearguard(runtime, "approve", incident, "--by", "alice", "--key", str(alice.path))
    with pytest.raises(NotEntitled) as again:
        answer(
            runtime=runtime,
            incident_id=request.incident_id,
            approver="alice",
            approve=True,
            key=alice.path,
        )
    after_alice = requests_of(runtime, request.incident_id)[0].status
    second = answer(
        runtime=runtime, incident_id=request.incident_id, approver="bob", approve=True,
        key=bob.path,
    )  # fmt: skip

    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == (
        f"incident {incident}: rollback approval by alice recorded; it needs 2 distinct approvers"
    )
    assert again.value.message == (
        f"alice has approved the rollback of incident {incident} already"
    )
    assert after_alice == "pending"
    assert second.status == "approved"
    (decided,) = requests_of(runtime, request.incident_id)
    assert decided.status == "approved" and decided.decided_by == "alice, bob"
    ((_, given),) = events(runtime, request.incident_id, "approval.given")
    ((_, approved),) = events(runtime, request.incident_id, "approval.approved")
    assert (given["actor"], given["approvals"], given["required"]) == ("alice", 1, 2)
    assert (approved["actor"], approved["approvals"]) == ("bob", 2)
    assert given["proof"] == approved["proof"] == "signature"


def test_a_rule_cannot_need_more_approvers_than_it_names(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(home)
    toml = policy(keys={"alice": Approver(tmp_path, "a").public}, self_asserted=True, required=3)
    (home / "rearguard.toml").write_text(toml)

    with pytest.raises(ConfigurationError, match="rule 0 needs 3 distinct approvers but names 2"):
        load_settings(home=home)


def test_a_statement_signed_with_openssl_decides_as_the_prefect_form_would(
    runtimes, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    key = tmp_path / "carol.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key)], check=True)
    public = subprocess.run(
        ["openssl", "pkey", "-in", str(key), "-pubout"], check=True, capture_output=True
    ).stdout.decode()
    runtime = runtimes(policy(keys={"alice": public, "bob": public}))
    request = waiting(runtime)

    printed = rearguard(
        runtime, "approvals", "statement", str(request.incident_id), "--by", "bob",
        "--deny", "--comment", "v2 is suspect",
    )  # fmt: skip
    (tmp_path / "statement.json").write_text(printed.stdout)
    signature = subprocess.run(
        ["openssl", "pkeyutl", "-sign", "-inkey", str(key), "-rawin", "-in",
         str(tmp_path / "statement.json")],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    decided = decide(
        db=runtime.db,
        approvals=runtime.settings.approvals,
        approver="bob",
        approve=False,
        comment="v2 is suspect",
        via="prefect-ui",
        proof=Proof(signature=base64.b64encode(signature).decode()),
        callback_id=request.callback_id,
    )

    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == documented_statement(
        request, approver="bob", decision="deny", comment="v2 is suspect"
    )
    assert decided.status == "denied" and decided.decided_by == "bob"
    ((_, recorded),) = events(runtime, request.incident_id, "approval.denied")
    assert recorded["proof"] == "signature" and recorded["key"].startswith("SHA256:")
