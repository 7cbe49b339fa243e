"""Routing from rearguard.toml, notification settings and secrets, webhook signatures."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rearguard.models.config.settings import Settings, load_settings
from rearguard.models.errors import ConfigurationError
from rearguard.notifications.channels.webhook import sign, verify_signature
from rearguard.notifications.routing import Target, route_for

CONFIG = """
[notifications]
channels = ["console", "slack", "email", "webhook"]
drill_slack_channel = "#ir-drills"
drill_email = ["drills@example.org"]

[notifications.slack]
channel = "#incidents"

[notifications.email]
host = "smtp.example.org"
recipients = ["secops@example.org"]

[notifications.webhook]
url = "https://hooks.example.org/rearguard"

[[notifications.routes]]
types = ["model_compromise"]
severities = ["sev1"]
slack = ["#exec-bridge"]
email = ["ciso@example.org"]
roles = ["security", "legal"]

[[notifications.routes]]
severities = ["sev1", "sev2"]
slack = ["#ml-platform", "#incidents"]

[notifications.stakeholders.default]
on_call = ["oncall@example.org", "slack:U0ONCALL"]
security = ["security@example.org"]
legal = ["privacy@example.org"]

[notifications.stakeholders.assets."fraud-model"]
asset_owner = ["fraud-team@example.org", "slack:U0FRAUD"]
data_owner = ["data@example.org"]
"""


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rearguard.toml").write_text(CONFIG)
    return load_settings(home=tmp_path)


def route(settings: Settings, **incident: object) -> tuple[list[Target], list[str]]:
    values: dict[str, object] = {
        "incident_id": 4,
        "incident_type": "model_compromise",
        "severity": "sev3",
        "asset": "fraud-model",
        "drill": False,
    }
    values.update(incident)
    found = route_for(settings, **values)  # type: ignore[arg-type]
    return found.targets, found.mentions


def of(targets: list[Target], channel: str) -> list[str]:
    return [t.destination for t in targets if t.channel == channel]


def test_a_sev1_compromise_reaches_every_matching_route_and_role(settings: Settings) -> None:
    targets, mentions = route(settings, severity="sev1")

    assert of(targets, "console") == ["stderr"]
    assert of(targets, "slack") == ["#incidents", "#exec-bridge", "#ml-platform"]
    assert of(targets, "email") == [
        "secops@example.org",
        "ciso@example.org",
        "oncall@example.org",
        "fraud-team@example.org",
        "security@example.org",
        "privacy@example.org",
    ]
    assert of(targets, "webhook") == ["webhook"]
    assert mentions == ["slack:U0ONCALL", "slack:U0FRAUD"]


def test_a_sev3_gets_the_defaults_and_the_default_roles_only(settings: Settings) -> None:
    targets, mentions = route(settings, severity="sev3")

    assert of(targets, "slack") == ["#incidents"]
    assert of(targets, "email") == [
        "secops@example.org",
        "oncall@example.org",
        "fraud-team@example.org",
    ]
    assert mentions == ["slack:U0ONCALL", "slack:U0FRAUD"]


def test_another_asset_has_no_asset_owner(settings: Settings) -> None:
    targets, mentions = route(settings, asset="chat-prompt")

    assert of(targets, "email") == ["secops@example.org", "oncall@example.org"]
    assert mentions == ["slack:U0ONCALL"]


def test_a_drill_goes_only_to_the_drill_destinations(settings: Settings) -> None:
    targets, mentions = route(settings, severity="sev1", drill=True)

    assert of(targets, "slack") == ["#ir-drills"]
    assert of(targets, "email") == ["drills@example.org"]
    assert mentions == []


def test_a_failed_drill_also_reaches_the_asset_owner(settings: Settings) -> None:
    targets, mentions = route(settings, asset="fraud-model", drill=True, roles=["asset_owner"])

    assert of(targets, "slack") == ["#ir-drills"]
    assert of(targets, "email") == ["drills@example.org", "fraud-team@example.org"]
    assert mentions == ["slack:U0FRAUD"]


def test_dedicated_incident_channel_is_named_after_the_incident(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("REARGUARD_SLACK_INCIDENT_CHANNELS", "true")
    settings = load_settings(home=tmp_path)

    targets, _ = route(settings, asset="Fraud Model/EU")

    assert of(targets, "slack")[-1] == "new:inc-4-fraud-model-eu"


def test_console_off_drops_the_console(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("REARGUARD_NOTIFY_CONSOLE", "false")

    targets, _ = route(load_settings(home=tmp_path))

    assert of(targets, "console") == []


def test_environment_lists_and_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REARGUARD_NOTIFY_CHANNELS", "file, slack")
    monkeypatch.setenv("REARGUARD_SLACK_TOKEN", "xoxb-secret-value-1")
    monkeypatch.setenv("REARGUARD_SMTP_PASSWORD", "smtp-secret")

    settings = load_settings(home=tmp_path)

    assert settings.notifications.channels == ["file", "slack"]
    assert settings.slack.token is not None
    assert settings.slack.token.get_secret_value() == "xoxb-secret-value-1"
    shown = repr(settings) + str(settings.slack.model_dump()) + str(settings.email.model_dump())
    assert "xoxb-secret-value-1" not in shown and "smtp-secret" not in shown


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ('[notifications]\nchannels = ["pager"]', "unknown channel 'pager'"),
        ('[notifications]\nroles = ["ceo"]', "unknown role 'ceo'"),
        ('[[notifications.routes]]\nroles = ["ceo"]', "unknown role 'ceo'"),
        ('[[notifications.routes]]\nslak = ["#x"]', "notifications.routes.0.slak"),
        ('[notifications.email]\nsecurity = "ssl"', "invalid setting notifications.email.security"),
        ('[[notifications.routes]]\npagerduty = "env:"', "`env:` names no environment variable"),
    ],
)
def test_invalid_notification_settings_are_named(
    toml: str, needle: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rearguard.toml").write_text(toml)

    with pytest.raises(ConfigurationError) as raised:
        load_settings(home=tmp_path)

    assert needle in raised.value.message


PAGED = """
[notifications]
channels = ["file", "slack", "pagerduty"]

[notifications.slack]
channel = "#incidents"

[[notifications.routes]]
severities = ["sev1"]
pagerduty = "env:EXEC_PAGERDUTY_KEY"
"""


@pytest.fixture
def paged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REARGUARD_PAGERDUTY_ROUTING_KEY", "default-key-0123456789abcdefghij")
    (tmp_path / "rearguard.toml").write_text(PAGED)
    return load_settings(home=tmp_path)


def test_pagerduty_is_paged_through_the_routes_key_else_the_default(paged: Settings) -> None:
    worst, _ = route(paged, severity="sev1", event="opened")
    other, _ = route(paged, severity="sev3", event="opened")

    assert of(worst, "pagerduty") == ["env:EXEC_PAGERDUTY_KEY"]
    (label,) = of(other, "pagerduty")
    assert label.startswith("key-") and "default-key" not in label
    assert of(worst, "slack") == ["#incidents"]


@pytest.mark.parametrize(
    ("event", "channels"),
    [
        ("opened", ["file", "slack", "pagerduty"]),
        ("failed", ["file", "slack", "pagerduty"]),
        ("contained", ["file", "slack"]),
        ("recovered", ["file", "slack"]),
        ("approval_needed", ["file", "slack"]),
        ("acknowledged", ["pagerduty"]),
        ("resolved", ["pagerduty"]),
    ],
)
def test_pagerduty_takes_only_the_events_that_change_a_page(
    paged: Settings, event: str, channels: list[str]
) -> None:
    targets, _ = route(paged, event=event)

    assert list(dict.fromkeys(t.channel for t in targets)) == channels


def test_recovery_resolves_the_page_when_so_configured(
    paged: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("REARGUARD_PAGERDUTY_RESOLVE_ON_RECOVERED", "true")

    targets, _ = route(load_settings(home=tmp_path), event="recovered")

    assert [t.channel for t in targets][-1] == "pagerduty"


def test_a_drill_pages_nobody(paged: Settings) -> None:
    for event in ("opened", "failed", "acknowledged", "resolved", "drill_result"):
        targets, _ = route(paged, severity="sev1", drill=True, event=event)
        assert of(targets, "pagerduty") == []


def test_the_routing_key_never_shows_in_the_settings(paged: Settings) -> None:
    key = paged.pagerduty.routing_key
    assert key is not None and key.get_secret_value() == "default-key-0123456789abcdefghij"
    shown = repr(paged) + str(paged.pagerduty.model_dump()) + str(paged.notifications.model_dump())
    assert "default-key-0123456789abcdefghij" not in shown


def test_webhook_signature_verifies_and_rejects_changes() -> None:
    body = b'{"event":"recovered"}'
    now = str(int(time.time()))
    signature = sign("s3cret", now, body)

    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert verify_signature("s3cret", timestamp=now, body=body, signature=signature)
    assert not verify_signature("s3cret", timestamp=now, body=body + b" ", signature=signature)
    assert not verify_signature("other", timestamp=now, body=body, signature=signature)
    old = str(int(time.time()) - 3600)
    assert not verify_signature(
        "s3cret", timestamp=old, body=body, signature=sign("s3cret", old, body)
    )
