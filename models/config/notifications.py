"""Notifications: channels, routes, stakeholders, and each channel's own table."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
)
from pydantic_settings import SettingsConfigDict

from rearguard.models.config.base import CommaList, ConcernSettings

STAKEHOLDER_ROLES = ("on_call", "asset_owner", "data_owner", "security", "legal", "privacy")


CHANNEL_NAMES = ("console", "file", "slack", "email", "webhook")


def _check_roles(value: list[str]) -> list[str]:
    unknown = sorted(set(value) - set(STAKEHOLDER_ROLES))
    if unknown:
        raise ValueError(f"unknown role {unknown[0]!r}; known: {', '.join(STAKEHOLDER_ROLES)}")
    return value


class RouteSettings(BaseModel):
    """One routing rule: incidents it matches, and where their notifications go."""

    model_config = ConfigDict(extra="forbid")
    types: list[str] = Field(default_factory=list, description="incident types; empty: any")
    severities: list[str] = Field(default_factory=list, description="sev1..sev4; empty: any")
    slack: list[str] = Field(default_factory=list, description="more Slack channels")
    email: list[str] = Field(default_factory=list, description="more email addresses")
    roles: list[str] = Field(
        default_factory=list,
        description="stakeholder roles to tell: on_call, asset_owner, data_owner, security, legal",
    )

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, value: list[str]) -> list[str]:
        return _check_roles(value)

    def matches(self, *, incident_type: str, severity: str) -> bool:
        """True when the rule applies to an incident of this type and severity."""
        return (not self.types or incident_type in self.types) and (
            not self.severities or severity in self.severities
        )


class StakeholderRoles(BaseModel):
    """People by role. A contact is an email address, or ``slack:U123`` for a Slack user."""

    model_config = ConfigDict(extra="forbid")
    on_call: list[str] = Field(default_factory=list)
    asset_owner: list[str] = Field(default_factory=list)
    data_owner: list[str] = Field(default_factory=list)
    security: list[str] = Field(default_factory=list)
    legal: list[str] = Field(default_factory=list)
    privacy: list[str] = Field(default_factory=list)


class StakeholderSettings(BaseModel):
    """Stakeholders: the defaults for every asset, and per asset (which add to the defaults)."""

    model_config = ConfigDict(extra="forbid")
    default: StakeholderRoles = Field(default_factory=StakeholderRoles)
    assets: dict[str, StakeholderRoles] = Field(default_factory=dict)

    def contacts(self, *, asset: str | None, roles: list[str]) -> list[str]:
        """The contacts holding any of ``roles`` for ``asset``, defaults first, without repeats."""
        found: list[str] = []
        tables = [self.default] + ([self.assets[asset]] if asset in self.assets else [])
        for role in roles:
            for table in tables:
                for contact in getattr(table, role, []):
                    if contact not in found:
                        found.append(contact)
        return found


class NotificationSettings(ConcernSettings):
    """Which channels notifications go to, how they are routed, and how they are delivered.

    Routes and stakeholders are tables of ``rearguard.toml`` (``[[notifications.routes]]``,
    ``[notifications.stakeholders.*]``); see the README's "Notifications" section.
    """

    toml_table: ClassVar[str] = "notifications"
    model_config = SettingsConfigDict(env_prefix="REARGUARD_NOTIFY_", extra="ignore")
    console: bool = True
    file: Path | None = None
    channels: CommaList = Field(
        default_factory=lambda: ["console", "file"],
        description="channels every notification goes to: console, file, slack, email, webhook",
    )
    templates_dir: Path | None = Field(
        default=None, description="a directory of templates that override the built-in ones"
    )
    drill_slack_channel: str | None = Field(
        default=None, description="where drills go on Slack, instead of the incident channels"
    )
    drill_email: CommaList = Field(default_factory=list, description="who gets drill results")
    roles: CommaList = Field(
        default_factory=lambda: ["on_call", "asset_owner"],
        description="stakeholder roles told of every incident (routes add more)",
    )
    routes: list[RouteSettings] = Field(default_factory=list)
    stakeholders: StakeholderSettings = Field(default_factory=lambda: StakeholderSettings())
    dispatch_wait_s: float = Field(
        default=10.0,
        ge=0,
        description="how long a playbook run waits, after it ends, for its notifications",
    )
    dispatch_workers: int = Field(default=4, ge=1, le=64)
    lease_s: float = Field(
        default=300.0,
        gt=0,
        description="how long a claimed notification is reserved for the dispatcher sending it",
    )
    backoff_base_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)
    give_up_after_s: float = Field(
        default=86_400.0, gt=0, description="stop retrying a notification this long after it"
    )

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(CHANNEL_NAMES))
        if unknown:
            raise ValueError(f"unknown channel {unknown[0]!r}; known: {', '.join(CHANNEL_NAMES)}")
        return value

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, value: list[str]) -> list[str]:
        return _check_roles(value)


class SlackSettings(ConcernSettings):
    """Slack: the token comes from the environment (or a Prefect Secret block), never the file."""

    toml_table: ClassVar[str] = "notifications.slack"
    model_config = SettingsConfigDict(env_prefix="REARGUARD_SLACK_", extra="ignore")
    token: SecretStr | None = None
    token_block: str | None = Field(
        default=None, description="name of a Prefect Secret block holding the token"
    )
    channel: str | None = Field(default=None, description="the default incident channel")
    base_url: str = "https://slack.com/api/"
    timeout_s: float = 10.0
    incident_channels: bool = Field(
        default=False,
        description="also open a dedicated channel per incident and invite its stakeholders",
    )
    incident_channel_prefix: str = "inc-"
    signing_secret: SecretStr | None = Field(
        default=None,
        description="verifies what Slack sends: Approve/Deny button callbacks, slash commands",
    )


class EmailSettings(ConcernSettings):
    """SMTP email: the password comes from the environment, never the file."""

    toml_table: ClassVar[str] = "notifications.email"
    model_config = SettingsConfigDict(env_prefix="REARGUARD_SMTP_", extra="ignore")
    host: str | None = None
    port: int = 587
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    sender: str = "rearguard@localhost"
    recipients: CommaList = Field(default_factory=list, description="who gets every message")
    ca_file: Path | None = Field(default=None, description="CA bundle to verify the server")
    timeout_s: float = 10.0
    allow_plaintext_auth: bool = Field(
        default=False,
        description='log in with security = "none" (the password travels in clear); '
        "refused unless set, and a warning each time the channel is built",
    )


class WebhookSettings(ConcernSettings):
    """A generic JSON webhook, signed with HMAC-SHA256 over the timestamp and the body."""

    toml_table: ClassVar[str] = "notifications.webhook"
    model_config = SettingsConfigDict(env_prefix="REARGUARD_WEBHOOK_", extra="ignore")
    url: str | None = None
    secret: SecretStr | None = None
    timeout_s: float = 10.0
