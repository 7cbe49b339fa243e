"""How an approver proves who they are: a signed statement, a one-time code, or Slack.

A name typed into a form proves nothing: anyone who can reach the Prefect API can resume a
paused run with ``{"approver": "alice"}``. So a decision is accepted only with one of:

- **a signature** by the approver's registered Ed25519 key (``[approvals.keys]``) over the
  *statement* of the decision (:func:`statement`): it proves the signer holds that private key;
- **a one-time code** that rearguard sent to the approver's own contact (``[approvals.contacts]``:
  an email address or a Slack user, by direct message) when the request opened: it proves
  access to that mailbox or Slack account. A code works once, for that person and that round
  of the request, until the round's deadline; only its digest is stored;
- **Slack's signature** of an Approve/Deny button callback (checked before the decision is
  made, :mod:`rearguard.notifications.slack_interactions`): it proves the Slack user;
- nothing, for an approver with neither a key nor a contact when ``[approvals]
  allow_self_asserted = true``: the decision is recorded as ``self-asserted``.

The statement is the canonical JSON (sorted keys, compact, UTF-8; as the audit chain hashes)
of ``purpose`` (``rearguard-approval/1``), ``nonce`` (the request round's random id),
``incident``, ``step``, ``round``, ``decision`` (``approve`` or ``deny``), ``approver``,
``comment`` (stripped and redacted, as it is stored) and ``expires`` (the round's deadline,
ISO 8601 UTC to the second). The signature is the base64 of the 64-byte Ed25519 signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rearguard.models.audit.chain import canonical_json
from rearguard.models.audit.keys import fingerprint
from rearguard.models.audit.redaction import redact_text
from rearguard.models.config.approvals import ApprovalSettings
from rearguard.models.db.tables import ApprovalRequest
from rearguard.models.errors import NotEntitled, UsageError

STATEMENT_PURPOSE = "rearguard-approval/1"
MAX_COMMENT = 2000
# Codes are read off a phone and typed: no 0/O, 1/I/L or U; 10 characters, about 49 bits.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"
CODE_LENGTH = 10
# Where a round's outstanding code digests are kept, in its policy (person -> digest).
CODES = "codes"

Method = Literal["signature", "code", "slack", "self-asserted"]


@dataclass(frozen=True)
class Proof:
    """What an answer carries to show who gave it; the first one present is checked.

    Attributes:
        signature: base64 Ed25519 signature of the decision's statement.
        code: the one-time code sent to the approver.
        slack: True only from the Slack callback handler, once Slack's signature checked out.
    """

    signature: str = ""
    code: str = ""
    slack: bool = False


@dataclass(frozen=True)
class Proven:
    """How a decision was proved: what the audit chain records beside it."""

    method: Method
    key: str | None = None
    signature: str | None = None
    nonce: str | None = None
    expires: str | None = None
    channel: str | None = None

    def record(self) -> dict[str, str]:
        """The facts for the decision's event: the method, and the key's fingerprint, the
        signature and what it covers (or the code's channel)."""
        fields = {
            "proof": self.method,
            "key": self.key,
            "signature": self.signature,
            "nonce": self.nonce,
            "expires": self.expires,
            "channel": self.channel,
        }
        return {name: value for name, value in fields.items() if value is not None}


def clean_comment(comment: str) -> str:
    """A comment as it is stored and signed: stripped, with secrets redacted.

    Raises:
        UsageError: it is longer than :data:`MAX_COMMENT` characters.
    """
    cleaned = redact_text(comment.strip())
    if len(cleaned) > MAX_COMMENT:
        raise UsageError(f"the comment is {len(cleaned)} characters; at most {MAX_COMMENT}")
    return cleaned


def _expires(request: ApprovalRequest) -> str:
    return request.deadline.astimezone(UTC).isoformat(timespec="seconds")


def statement(*, request: ApprovalRequest, approver: str, approve: bool, comment: str) -> bytes:
    """The bytes an approver signs to decide ``request`` (see the module's docstring).

    Args:
        request: the round being decided.
        approver: the approver's name, as the policy lists it.
        approve: True to approve, False to deny.
        comment: the comment, as typed (it is cleaned as :func:`clean_comment` does).
    """
    document = {
        "purpose": STATEMENT_PURPOSE,
        "nonce": request.callback_id,
        "incident": request.incident_id,
        "step": request.step,
        "round": request.round,
        "decision": "approve" if approve else "deny",
        "approver": approver.strip(),
        "comment": clean_comment(comment),
        "expires": _expires(request),
    }
    return canonical_json(document).encode()


def sign_statement(key: Ed25519PrivateKey, message: bytes) -> str:
    """The base64 Ed25519 signature of a statement."""
    return base64.b64encode(key.sign(message)).decode()


def new_code() -> str:
    """A fresh one-time code, grouped for reading: ``ABCDE-FGHJK``."""
    code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return f"{code[:5]}-{code[5:]}"


def code_digest(*, request: ApprovalRequest, person: str, code: str) -> str:
    """What is stored of a code: bound to the round and the person, blind to dashes and case."""
    typed = "".join(c for c in code.upper() if c.isalnum())
    return hashlib.sha256(f"{request.callback_id}\n{person}\n{typed}".encode()).hexdigest()


def prove(
    *,
    approvals: ApprovalSettings,
    request: ApprovalRequest,
    approver: str,
    approve: bool,
    comment: str,
    proof: Proof,
    now: datetime,
) -> Proven:
    """Check that the answer comes from ``approver``.

    Args:
        approvals: the approval settings (registered keys, contacts, self-assertion).
        request: the round being decided (its nonce, deadline and outstanding codes).
        approver: who the answer says decides (one of the request's approvers).
        approve: the decision.
        comment: the comment, cleaned.
        proof: what the answer carries.
        now: the time of the answer (a signature or a code is refused after the deadline).

    Returns:
        How it was proved.

    Raises:
        NotEntitled: the proof is missing, wrong, used, expired or by someone else's key;
            the message says which.
    """
    expires = _expires(request)
    late = request.deadline.astimezone(UTC) < now
    if proof.signature:
        public = approvals.public_key(approver)
        if public is None:
            raise NotEntitled(
                f"{approver} has no registered key to check a signature with",
                hint=f'add [approvals.keys] {approver} = "ssh-ed25519 ...", or use --code',
            )
        try:
            raw = base64.b64decode(proof.signature.strip(), validate=True)
            public.verify(
                raw, statement(request=request, approver=approver, approve=approve, comment=comment)
            )
        except (binascii.Error, ValueError, InvalidSignature):
            raise NotEntitled(
                f"the signature is not {approver}'s ({fingerprint(public)}) over this decision",
                hint="sign with your own key, for this request, decision and comment",
            ) from None
        if late:
            raise NotEntitled(f"the signed decision expired at {expires}")
        return Proven(
            "signature",
            key=fingerprint(public),
            signature=proof.signature.strip(),
            nonce=request.callback_id,
            expires=expires,
        )
    if proof.code:
        stored = dict(request.policy.get(CODES) or {}).get(approver)
        given = code_digest(request=request, person=approver, code=proof.code)
        if stored is None or not hmac.compare_digest(str(stored), given):
            raise NotEntitled(
                f"that code is not a valid one-time code of {approver} for this request",
                hint="a code works once, for the person it was sent to, in its round",
            )
        if late:
            raise NotEntitled(f"the one-time code expired at {expires}")
        contact = approvals.contact(approver)
        return Proven("code", channel=contact.channel if contact else None)
    if proof.slack:
        return Proven("slack")
    if approvals.allow_self_asserted and approvals.self_asserted(approver):
        return Proven("self-asserted")
    raise NotEntitled(
        f"the answer for {approver} carries neither a signature nor a one-time code",
        hint="sign with --key PATH (or [approvals] signing_key), or give the code sent to "
        "you with --code",
    )
