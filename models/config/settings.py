"""All settings of one run, resolved together.

Precedence: explicit overrides (command-line flags) > environment (``REARGUARD_*``) >
``rearguard.toml`` (current directory first, then ``REARGUARD_HOME``) > defaults. Each concern is a
model of its own (``rearguard.models.config.<concern>``) naming its environment prefix and its
TOML table; :func:`load_settings` reads the file once and hands its content to each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from rearguard.models.config.approvals import ApprovalSettings
from rearguard.models.config.audit import AuditSettings
from rearguard.models.config.base import load_concern
from rearguard.models.config.core import CoreSettings
from rearguard.models.config.database import DatabaseSettings
from rearguard.models.config.drills import DrillSettings, SchedulerSettings
from rearguard.models.config.exports import ExportSettings
from rearguard.models.config.files import find_config_file, read_config_file
from rearguard.models.config.home import default_home, private_directory
from rearguard.models.config.hooks import HookSettings
from rearguard.models.config.intake import IntakeSettings
from rearguard.models.config.notifications import (
    EmailSettings,
    NotificationSettings,
    PagerDutySettings,
    SlackSettings,
    WebhookSettings,
)
from rearguard.models.config.playbooks import PlaybookSettings
from rearguard.models.config.prefect import PrefectSettings
from rearguard.models.config.registry import RegistrySettings
from rearguard.models.config.scanning import ScanningSettings
from rearguard.models.config.signing import SigningSettings
from rearguard.models.config.slack_commands import SlackCommandSettings


@dataclass(frozen=True)
class Settings:
    """All settings of one run, each concern resolved from the same file."""

    core: CoreSettings
    database: DatabaseSettings
    registry: RegistrySettings
    playbooks: PlaybookSettings
    notifications: NotificationSettings
    config_file: Path | None
    slack: SlackSettings = field(default_factory=lambda: SlackSettings())
    email: EmailSettings = field(default_factory=lambda: EmailSettings())
    webhook: WebhookSettings = field(default_factory=lambda: WebhookSettings())
    pagerduty: PagerDutySettings = field(default_factory=lambda: PagerDutySettings())
    drills: DrillSettings = field(default_factory=lambda: DrillSettings())
    scheduler: SchedulerSettings = field(default_factory=lambda: SchedulerSettings())
    hooks: HookSettings = field(default_factory=lambda: HookSettings())

    approvals: ApprovalSettings = field(default_factory=lambda: ApprovalSettings())

    intake: IntakeSettings = field(default_factory=lambda: IntakeSettings())
    exports: ExportSettings = field(default_factory=lambda: ExportSettings())
    audit: AuditSettings = field(default_factory=lambda: AuditSettings())
    scanning: ScanningSettings = field(default_factory=lambda: ScanningSettings())
    signing: SigningSettings = field(default_factory=lambda: SigningSettings())
    slack_commands: SlackCommandSettings = field(default_factory=lambda: SlackCommandSettings())
    prefect: PrefectSettings = field(default_factory=lambda: PrefectSettings())

    @property
    def home(self) -> Path:
        """The state directory."""
        return self.core.home

    @cached_property
    def database_url(self) -> str:
        """The database URL; the embedded default is a SQLite file in the home."""
        return self.database.url or f"sqlite:///{self.home / 'rearguard.db'}"

    @property
    def is_embedded_database(self) -> bool:
        """True when the database is the default SQLite file in the home."""
        return self.database.url is None

    @property
    def notification_file(self) -> Path:
        """The JSON-lines file the file channel appends to."""
        return self.notifications.file or self.home / "notifications.jsonl"


def load_settings(*, home: Path | None = None, database_url: str | None = None) -> Settings:
    """Resolve the settings from flags, environment, ``rearguard.toml`` and defaults.

    Args:
        home: ``--home`` from the command line, if given.
        database_url: ``--database-url`` from the command line, if given.

    Returns:
        The resolved settings.

    Raises:
        ConfigurationError: the config file is malformed or a value is invalid.
    """
    bootstrap_home = home or default_home()
    config_file = find_config_file(bootstrap_home)
    document = read_config_file(config_file)
    settings = Settings(
        core=load_concern(CoreSettings, document, **({"home": home} if home else {})),
        database=load_concern(
            DatabaseSettings, document, **({"url": database_url} if database_url else {})
        ),
        registry=load_concern(RegistrySettings, document),
        playbooks=load_concern(PlaybookSettings, document),
        notifications=load_concern(NotificationSettings, document),
        config_file=config_file,
        slack=load_concern(SlackSettings, document),
        email=load_concern(EmailSettings, document),
        webhook=load_concern(WebhookSettings, document),
        pagerduty=load_concern(PagerDutySettings, document),
        drills=load_concern(DrillSettings, document),
        scheduler=load_concern(SchedulerSettings, document),
        hooks=load_concern(HookSettings, document),
        approvals=load_concern(ApprovalSettings, document),
        intake=load_concern(IntakeSettings, document),
        exports=load_concern(ExportSettings, document),
        audit=load_concern(AuditSettings, document),
        scanning=load_concern(ScanningSettings, document),
        signing=load_concern(SigningSettings, document),
        slack_commands=load_concern(SlackCommandSettings, document),
        prefect=load_concern(PrefectSettings, document),
    )
    settings.approvals.check_transports(
        email=settings.email.host is not None,
        slack=settings.slack.token is not None or settings.slack.token_block is not None,
    )
    private_directory(settings.home)
    return settings
