"""``[slack_commands]``: who may open and drill from Slack, and where its answers may go."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from rearguard.models.audit.redaction import redact_text
from rearguard.models.config.settings import Settings, load_settings
from rearguard.models.errors import ConfigurationError
from rearguard.notifications.channels.base import Delivery, DeliveryError, Message
from rearguard.notifications.factory import build_channel

SETTINGS = """
[approvals.groups]
sre = ["alice", "bob"]

[slack_commands]
allow = { open = ["sre", "dave"], drill = ["alice"] }
"""


def settings_from(home: Path, monkeypatch: pytest.MonkeyPatch, toml: str) -> Settings:
    monkeypatch.chdir(home)
    (home / "rearguard.toml").write_text(toml)
    return load_settings(home=home)


def test_allow_names_people_and_groups_and_nobody_by_default(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_from(home, monkeypatch, SETTINGS)
    commands, groups = settings.slack_commands, settings.approvals

    def allowed(permission: str) -> list[str]:
        people = ("alice", "bob", "carol", "dave")
        return [p for p in people if commands.allows(permission, p, groups=groups)]  # type: ignore[arg-type]

    assert allowed("open") == ["alice", "bob", "dave"]
    assert allowed("drill") == ["alice"]
    nobody = settings_from(home, monkeypatch, "").slack_commands
    assert not nobody.allows("open", "alice", groups=groups)
    everyone = settings_from(home, monkeypatch, '[slack_commands]\nallow = { drill = ["*"] }')
    assert everyone.slack_commands.allows("drill", "carol", groups=groups)


@pytest.mark.parametrize(
    "toml",
    [
        '[slack_commands]\nallow = { opne = ["alice"] }',
        '[slack_commands]\nresponse_url_prefix = "https://hooks.slack.com"',
        '[slack_commands]\nresponse_url_prefix = "ftp://hooks.slack.com/"',
        '[slack_commands]\nresponse_url_prefix = "https://user@hooks.slack.com/"',
    ],
)
def test_a_mistyped_setting_is_a_configuration_error(
    home: Path, monkeypatch: pytest.MonkeyPatch, toml: str
) -> None:
    with pytest.raises(ConfigurationError):
        settings_from(home, monkeypatch, toml)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://hooks.slack.com/commands/T0TEAM/123/abc", True),
        ("https://hooks.slack.com.evil.example/commands/T0TEAM/123/abc", False),
        ("https://hooks.slack.com@evil.example/commands/1", False),
        ("http://hooks.slack.com/commands/T0TEAM/123/abc", False),
        ("https://evil.example/?https://hooks.slack.com/", False),
        ("http://169.254.169.254/latest/meta-data/", False),
        ("https://hooks.slack.com/commands/1 https://evil.example/", False),
        ("", False),
    ],
)
def test_only_a_response_url_under_the_prefix_may_be_posted_to(
    home: Path, monkeypatch: pytest.MonkeyPatch, url: str, allowed: bool
) -> None:
    commands = settings_from(home, monkeypatch, "").slack_commands
    assert commands.may_post_to(url) is allowed


def test_the_reply_channel_refuses_an_address_outside_the_prefix_without_a_request(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = build_channel("slack_response", settings_from(home, monkeypatch, ""))
    delivery = Delivery(
        outbox_id=1,
        idempotency_key="k",
        incident_id=1,
        event="drill_result",
        # Nothing listens here: a request would fail to connect, not be refused up front.
        destination="http://127.0.0.1:9/commands/T0TEAM/1/abc",
        created_at=datetime.now(UTC),
    )
    message = Message(title="t", text="t", slack_text="t")
    with pytest.raises(DeliveryError) as refused:
        channel.send(message, delivery)
    assert refused.value.permanent
    assert refused.value.message == (
        "slack_response: the response_url is not under https://hooks.slack.com/"
    )


def test_a_response_url_is_redacted_wherever_it_is_written() -> None:
    for url in (
        "https://hooks.slack.com/commands/T0TEAM/1234567890/AbCdEf012345",
        "https://hooks.slack.com/actions/T0TEAM/1234567890/AbCdEf012345",
    ):
        shown = redact_text(f"posted to {url} at 03:12")
        assert shown == "posted to [REDACTED:slack-webhook] at 03:12"
