"""Human approval gates: ``[approvals]`` groups, rules, Slack users, and how approvers prove
who they are (``[approvals.keys]``, ``[approvals.contacts]``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import SettingsConfigDict

from rearguard.models.audit.keys import parse_public_key
from rearguard.models.config.base import ConcernSettings
from rearguard.models.errors import ConfigurationError

SEVERITIES = ("sev1", "sev2", "sev3", "sev4")
_SLACK_CONTACT = re.compile(r"^slack:[UW][A-Z0-9]{2,}$")
_EMAIL_CONTACT = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _public_key(text: str) -> str:
    try:
        parse_public_key(text)
    except ValueError as exc:
        raise PydanticCustomError("public_key", str(exc)) from None
    return text.strip()


def _contact(text: str) -> str:
    text = text.strip()
    if not (_SLACK_CONTACT.match(text) or _EMAIL_CONTACT.match(text)):
        raise PydanticCustomError(
            "contact", "a contact is an email address or slack:U123 (a Slack user id)"
        )
    return text


@dataclass(frozen=True)
class Contact:
    """Where an approver's one-time codes go: a notification channel and its destination."""

    channel: Literal["email", "slack"]
    destination: str


class ApprovalRule(BaseModel):
    """One approval rule: the runs it matches, the steps that wait, who decides, for how long."""

    model_config = ConfigDict(extra="forbid")
    playbook: str = Field(default="*", description="the playbook (incident type); * for any")
    min_severity: Literal["sev1", "sev2", "sev3", "sev4"] = Field(
        default="sev4", description="this severity or worse (sev1 is the worst)"
    )
    asset: str = Field(default="*", description="a glob on the asset's name")
    steps: list[str] = Field(min_length=1, description="steps that wait for a decision")
    approvers: list[str] = Field(min_length=1, description="names, or groups of [approvals]")
    timeout_s: float = Field(default=900.0, gt=0, description="how long each round waits")
    on_timeout: Literal["escalate", "proceed", "abort"] = "escalate"
    escalate_to: list[str] = Field(
        default_factory=list, description="names or groups asked too after a timeout"
    )
    approvers_required: int = Field(
        default=1, ge=1, le=10, description="how many distinct people must approve"
    )

    def matches(self, *, playbook: str, severity: str, asset: str | None, step: str) -> bool:
        """True when the rule applies to this step of this run."""
        return (
            step in self.steps
            and fnmatchcase(playbook, self.playbook)
            and SEVERITIES.index(severity) <= SEVERITIES.index(self.min_severity)
            and fnmatchcase(asset or "", self.asset)
        )


class ApprovalSettings(ConcernSettings):
    """Human approval gates (``[approvals]``): groups, rules, Slack users; the first rule wins.

    Every person a rule names must be able to prove who they are: a registered public key
    (``keys``), or a contact to send one-time codes to (``contacts``). Anyone else is a
    configuration error, unless ``allow_self_asserted`` accepts their bare word.
    """

    toml_table: ClassVar[str] = "approvals"
    model_config = SettingsConfigDict(env_prefix="REARGUARD_APPROVALS_", extra="ignore")
    groups: dict[str, list[str]] = Field(default_factory=dict, description="group -> names")
    rules: list[ApprovalRule] = Field(default_factory=list)
    slack_users: dict[str, str] = Field(
        default_factory=dict, description="Slack user id -> approver name"
    )
    poll_s: float = Field(
        default=0.5, gt=0, le=10, description="how often a waiting run looks for a decision"
    )
    keys: dict[str, Annotated[str, AfterValidator(_public_key)]] = Field(
        default_factory=dict,
        description='approver -> Ed25519 public key ("ssh-ed25519 AAAA..." or PEM)',
    )
    contacts: dict[str, Annotated[str, AfterValidator(_contact)]] = Field(
        default_factory=dict,
        description="approver -> where one-time codes go: an email address or slack:U123",
    )
    allow_self_asserted: bool = Field(
        default=False,
        description="accept the bare word of approvers with neither a key nor a contact "
        "(recorded as self-asserted)",
    )
    signing_key: Path | None = Field(
        default=None,
        description="your Ed25519 private key, which `rearguard approve` signs with (mode 600)",
    )

    @model_validator(mode="after")
    def _approvers_can_prove_it(self) -> ApprovalSettings:
        for number, rule in enumerate(self.rules):
            named = self.expand(rule.approvers)
            if rule.approvers_required > len(named):
                raise PydanticCustomError(
                    "quorum",
                    f"rule {number} needs {rule.approvers_required} distinct approvers but "
                    f"names {len(named)} ({', '.join(named)})",
                )
        if not self.allow_self_asserted:
            for person in self.people():
                if self.self_asserted(person):
                    raise PydanticCustomError(
                        "unproven_approver",
                        f"{person} may approve but has neither a key ([approvals.keys]) nor a "
                        "contact for one-time codes ([approvals.contacts]); add one, or set "
                        "allow_self_asserted = true",
                    )
        return self

    def people(self) -> list[str]:
        """Everyone a rule lets decide (approvers and escalations, groups expanded)."""
        return self.expand([n for r in self.rules for n in (*r.approvers, *r.escalate_to)])

    def public_key(self, person: str) -> Ed25519PublicKey | None:
        """The person's registered public key, if they have one."""
        text = self.keys.get(person)
        return parse_public_key(text) if text else None

    def contact(self, person: str) -> Contact | None:
        """Where the person's one-time codes go, if anywhere."""
        found = self.contacts.get(person)
        if found is None:
            return None
        if found.startswith("slack:"):
            return Contact("slack", found.removeprefix("slack:"))
        return Contact("email", found)

    def check_transports(self, *, email: bool, slack: bool) -> None:
        """Refuse a contact whose channel cannot send anything (no SMTP server, no Slack token).

        Args:
            email: an SMTP server is configured.
            slack: a Slack token (or its Prefect Secret block) is configured.

        Raises:
            ConfigurationError: naming the first approver whose codes could not be sent.
        """
        for person in sorted(self.contacts):
            contact = self.contact(person)
            assert contact is not None
            if contact.channel == "email" and not email:
                missing = "no SMTP server is configured ([notifications.email] host)"
            elif contact.channel == "slack" and not slack:
                missing = "no Slack token is configured (REARGUARD_SLACK_TOKEN or token_block)"
            else:
                continue
            raise ConfigurationError(
                f"invalid setting approvals.contacts.{person}: one-time codes go by "
                f"{contact.channel}, but {missing}"
            )

    def self_asserted(self, person: str) -> bool:
        """True when the person has no way to prove who they are (no key and no contact)."""
        return person not in self.keys and person not in self.contacts

    def rule_for(
        self, *, playbook: str, severity: str, asset: str | None, step: str
    ) -> ApprovalRule | None:
        """The first rule that makes this step wait, or None when it needs no approval."""
        return next(
            (
                r
                for r in self.rules
                if r.matches(playbook=playbook, severity=severity, asset=asset, step=step)
            ),
            None,
        )

    def expand(self, names: list[str]) -> list[str]:
        """Names with groups replaced by their members, in order, without repeats."""
        found: list[str] = []
        for name in names:
            for person in self.groups.get(name, [name]):
                if person not in found:
                    found.append(person)
        return found
