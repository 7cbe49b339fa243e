"""The approval policy of rearguard.toml: which steps wait, for whom, and what a timeout does."""

from __future__ import annotations

from pathlib import Path

import pytest

from rearguard.models.config.settings import load_settings
from rearguard.models.errors import ConfigurationError
from rearguard.models.incidents.approvals import format_wait

POLICY = """
[approvals]
allow_self_asserted = true

[approvals.groups]
sre = ["alice", "bob"]
security = ["carol", "alice"]

[[approvals.rules]]
playbook = "model_compromise"
min_severity = "sev2"
asset = "fraud-*"
steps = ["rollback"]
approvers = ["sre", "dave"]
timeout_s = 900
escalate_to = ["security"]

[[approvals.rules]]
steps = ["rollback", "rotate_credentials"]
approvers = ["security"]
on_timeout = "abort"
"""


def settings_from(home: Path, monkeypatch: pytest.MonkeyPatch, toml: str):  # type: ignore[no-untyped-def]
    monkeypatch.chdir(home)
    (home / "rearguard.toml").write_text(toml)
    return load_settings(home=home)


def test_the_first_matching_rule_decides_who_approves(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    approvals = settings_from(home, monkeypatch, POLICY).approvals

    def rule(severity: str, asset: str, step: str = "rollback", playbook: str = "model_compromise"):  # type: ignore[no-untyped-def]
        return approvals.rule_for(playbook=playbook, severity=severity, asset=asset, step=step)

    first = rule("sev1", "fraud-model")
    assert first is not None and approvals.expand(first.approvers) == ["alice", "bob", "dave"]
    assert approvals.expand(first.escalate_to) == ["carol", "alice"]
    assert first.on_timeout == "escalate"
    # Less severe than sev2, or another asset: the catch-all rule (security, abort).
    for other in (rule("sev3", "fraud-model"), rule("sev1", "chat-model")):
        assert other is not None and other.approvers == ["security"]
        assert other.on_timeout == "abort"
    assert rule("sev1", "fraud-model", step="quarantine") is None


def test_no_rules_means_no_step_waits(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    approvals = settings_from(home, monkeypatch, "").approvals
    assert (
        approvals.rule_for(playbook="model_compromise", severity="sev1", asset="m", step="rollback")
        is None
    )


@pytest.mark.parametrize(
    ("rule", "where"),
    [
        ('steps = ["rollback"]\napprovers = ["a"]\non_timeout = "wait"', "on_timeout"),
        ('steps = ["rollback"]\napprovers = []', "approvers"),
        ('steps = ["rollback"]\napprovers = ["a"]\nmin_severity = "sev9"', "min_severity"),
    ],
)
def test_a_bad_rule_is_a_one_line_configuration_error(
    home: Path, monkeypatch: pytest.MonkeyPatch, rule: str, where: str
) -> None:
    with pytest.raises(ConfigurationError, match=rf"invalid setting approvals\.rules\.0\.{where}"):
        settings_from(home, monkeypatch, f"[[approvals.rules]]\n{rule}\n")


def test_waits_are_written_as_people_write_them() -> None:
    assert [format_wait(s) for s in (1, 45, 900, 5400, 7200)] == ["1s", "45s", "15m", "1h30m", "2h"]
