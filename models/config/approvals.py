"""Human approval gates: ``[approvals]`` groups, rules and Slack users."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)
from pydantic_settings import SettingsConfigDict

from rearguard.models.config.base import ConcernSettings

SEVERITIES = ("sev1", "sev2", "sev3", "sev4")


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

    def matches(self, *, playbook: str, severity: str, asset: str | None, step: str) -> bool:
        """True when the rule applies to this step of this run."""
        return (
            step in self.steps
            and fnmatchcase(playbook, self.playbook)
            and SEVERITIES.index(severity) <= SEVERITIES.index(self.min_severity)
            and fnmatchcase(asset or "", self.asset)
        )


class ApprovalSettings(ConcernSettings):
    """Human approval gates (``[approvals]``): groups, rules, Slack users; the first rule wins."""

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
