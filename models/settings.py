"""Settings, one pydantic-settings model per concern.

Precedence: explicit overrides (command-line flags) > environment (``REARGUARD_*``) >
``rearguard.toml`` (current directory first, then ``REARGUARD_HOME``) > defaults.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from rearguard.models.errors import ConfigurationError
from rearguard.models.home import default_home

CONFIG_FILENAME = "rearguard.toml"


def find_config_file(home: Path) -> Path | None:
    """Return the ``rearguard.toml`` that applies: the current directory's, else the home's."""
    for candidate in (Path.cwd() / CONFIG_FILENAME, home / CONFIG_FILENAME):
        if candidate.is_file():
            return candidate
    return None


def read_config_file(path: Path | None) -> dict[str, Any]:
    """Parse a ``rearguard.toml`` file into a dict; a malformed file is a ConfigurationError."""
    if path is None:
        return {}
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(
            f"cannot read {path}: {exc}", hint="fix or remove the file"
        ) from exc


class _TomlTableSource(PydanticBaseSettingsSource):
    """Feeds one table of ``rearguard.toml`` to a settings model."""

    def __init__(self, settings_cls: type[BaseSettings], table: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._table = table

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._table.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._table.items() if k in self.settings_cls.model_fields}


class _ConcernSettings(BaseSettings):
    """Base for one concern: reads its ``[table]`` of rearguard.toml below the environment."""

    toml_table: ClassVar[str] = ""
    _toml: ClassVar[dict[str, Any]] = {}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        table: Any = cls._toml
        # A dotted name ("notifications.slack") is a nested table.
        for part in cls.toml_table.split(".") if cls.toml_table else ():
            table = table.get(part, {}) if isinstance(table, dict) else {}
        return (init_settings, env_settings, _TomlTableSource(settings_cls, table))


class CoreSettings(_ConcernSettings):
    """Where rearguard keeps its state."""

    model_config = SettingsConfigDict(env_prefix="REARGUARD_", extra="ignore")
    home: Path = Field(default_factory=default_home)
    actor: str = Field(
        default_factory=lambda: os.environ.get("USER") or os.environ.get("USERNAME") or "unknown",
        description="who the CLI records as the actor of an action",
    )


class DatabaseSettings(_ConcernSettings):
    """The application database."""

    toml_table: ClassVar[str] = "database"
    model_config = SettingsConfigDict(env_prefix="REARGUARD_DATABASE_", extra="ignore")
    url: str | None = None
    busy_timeout_s: float = 30.0


class RegistrySettings(_ConcernSettings):
    """The asset registry backend."""

    toml_table: ClassVar[str] = "registry"
    model_config = SettingsConfigDict(env_prefix="REARGUARD_REGISTRY_", extra="ignore")
    backend: Literal["local", "mlflow"] = "local"
    alias: str = Field(
        default="production", description="the alias serving systems read (MLflow: e.g. champion)"
    )
    tracking_uri: str | None = Field(
        default=None,
        description="MLflow's tracking URI (backend mlflow); default: MLFLOW_TRACKING_URI",
    )
    experiment: str = Field(
        default="rearguard", description="the MLflow experiment whose runs hold the artifacts"
    )
    artifact_location: str | None = Field(
        default=None,
        description="where rearguard's MLflow experiment keeps artifacts when rearguard creates "
        "it; default: <home>/mlflow-artifacts for a local (sqlite, file) tracking store, the "
        "server's own default for a tracking server",
    )


class PlaybookSettings(_ConcernSettings):
    """How playbook steps behave."""

    toml_table: ClassVar[str] = "playbooks"
    model_config = SettingsConfigDict(env_prefix="REARGUARD_PLAYBOOK_", extra="ignore")
    validation_timeout_s: float = 300.0
    hash_workers: int = Field(default_factory=lambda: os.cpu_count() or 1)
    allow_unlineaged_rollback: bool = Field(
        default=False,
        description="data_poisoning may roll back to a version that records no training dataset",
    )


class DrillSettings(_ConcernSettings):
    """Recovery drills: where their sandboxes go and how long they are kept."""

    toml_table: ClassVar[str] = "drills"
    model_config = SettingsConfigDict(env_prefix="REARGUARD_DRILL_", extra="ignore")
    keep_sandboxes: Literal["none", "failed", "all"] = Field(
        default="failed",
        description="which drill sandboxes (<home>/drills/<run>) stay on disk after the run",
    )
    timezone: str = Field(default="UTC", description="timezone of a drill's cron by default")
    exercise_approvals: bool = Field(
        default=False,
        description="approval gates in a drill wait for a real decision; false: they are "
        "skipped and the timeline says who the policy would have asked",
    )


class SchedulerSettings(_ConcernSettings):
    """The scheduler process (``rearguard scheduler``)."""

    toml_table: ClassVar[str] = "scheduler"
    model_config = SettingsConfigDict(env_prefix="REARGUARD_SCHEDULER_", extra="ignore")
    misfire_grace_s: float = Field(
        default=300.0,
        gt=0,
        description="a run this late still runs; later, it is recorded as missed",
    )
    sweep_cron: str | None = Field(
        default=None, description="cron of `assets sweep` runs; none: no scheduled sweep"
    )
    poll_s: float = Field(
        default=5.0, gt=0, description="how often the scheduler looks for changed drills"
    )


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


def _comma_list(value: Any) -> Any:
    """Accept ``a,b`` as well as a JSON list from the environment."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


CommaList = Annotated[list[str], NoDecode, BeforeValidator(_comma_list)]


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


class NotificationSettings(_ConcernSettings):
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


class SlackSettings(_ConcernSettings):
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
        default=None, description="verifies the Approve/Deny button callbacks Slack sends"
    )


class EmailSettings(_ConcernSettings):
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


class WebhookSettings(_ConcernSettings):
    """A generic JSON webhook, signed with HMAC-SHA256 over the timestamp and the body."""

    toml_table: ClassVar[str] = "notifications.webhook"
    model_config = SettingsConfigDict(env_prefix="REARGUARD_WEBHOOK_", extra="ignore")
    url: str | None = None
    secret: SecretStr | None = None
    timeout_s: float = 10.0


class HookCommand(BaseModel):
    """One hook command: argv (no shell) or a Prefect deployment, a timeout, the environment
    variables it may see."""

    model_config = ConfigDict(extra="forbid")
    argv: list[str] | None = Field(
        default=None, min_length=1, description="the program and its arguments; no shell"
    )
    deployment: str | None = Field(
        default=None,
        pattern=r"^[^/]+/[^/]+$",
        description="or a Prefect deployment (flow/deployment) whose flow run is the hook",
    )
    timeout_s: float = Field(
        default=300.0, gt=0, description="killed with its group (a flow run: cancelled) after this"
    )
    env: list[str] = Field(
        default_factory=list, description="names of environment variables passed through"
    )
    credentials: list[str] = Field(
        default_factory=list, description="names (never values) of what the hook rotates"
    )

    @model_validator(mode="after")
    def _one_target(self) -> HookCommand:
        if (self.argv is None) == (self.deployment is None):
            raise ValueError('a hook runs either argv = [...] or deployment = "flow/name"')
        return self

    @property
    def label(self) -> str:
        """What the timeline calls it: the program, or ``deployment:<flow/name>``."""
        return self.argv[0] if self.argv else f"deployment:{self.deployment}"


def _one_or_many(value: Any) -> Any:
    """``[hooks.NAME]`` is one command; ``[[hooks.NAME]]`` several, run in order."""
    return [value] if isinstance(value, dict) else value


HookList = Annotated[list[HookCommand], BeforeValidator(_one_or_many)]


class AssetOptions(BaseModel):
    """Per-asset options: ``[assets.NAME]``."""

    model_config = ConfigDict(extra="forbid")
    personal_data: bool = Field(
        default=False, description="the asset touches personal data (UK GDPR breach duties)"
    )
    hooks: dict[str, HookList] = Field(
        default_factory=dict, description="hooks that replace the global ones of the same name"
    )


class HookSettings(_ConcernSettings):
    """Hooks playbooks run (``[hooks.NAME]``), and per-asset options (``[assets.NAME]``).

    Both are top-level tables of rearguard.toml, so this concern reads the file's root.
    """

    model_config = SettingsConfigDict(env_prefix="REARGUARD_", extra="ignore")
    hooks: dict[str, HookList] = Field(default_factory=dict)
    assets: dict[str, AssetOptions] = Field(default_factory=dict)

    def commands(self, name: str, *, asset: str | None) -> list[HookCommand]:
        """The commands of hook ``name`` for ``asset``: the asset's own, else the global ones."""
        options = self.assets.get(asset or "")
        if options is not None and name in options.hooks:
            return options.hooks[name]
        return self.hooks.get(name, [])

    def personal_data(self, asset: str | None) -> bool:
        """True when ``asset`` is marked as touching personal data."""
        options = self.assets.get(asset or "")
        return bool(options and options.personal_data)


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


class ApprovalSettings(_ConcernSettings):
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


def _secret_list(value: Any) -> Any:
    return _comma_list(value.get_secret_value() if isinstance(value, SecretStr) else value)


class AlertRule(BaseModel):
    """How Alertmanager alerts whose labels match ``match`` become incidents.

    ``type``/``asset``/``severity`` give a fixed value; the ``*_label`` fields name the label
    that holds it instead. The first rule that matches an alert wins.
    """

    model_config = ConfigDict(extra="forbid")
    match: dict[str, str] = Field(default_factory=dict, description="labels that must be equal")
    type: str | None = None
    type_label: str = "rearguard_type"
    asset: str | None = None
    asset_label: str = "asset"
    severity: str | None = None
    severity_label: str = "severity"


class IntakeSettings(_ConcernSettings):
    """The HTTP intake (``rearguard serve``). Tokens and the HMAC secret come from the
    environment (``REARGUARD_INTAKE_TOKENS``, ``REARGUARD_INTAKE_HMAC_SECRET``)."""

    toml_table: ClassVar[str] = "intake"
    model_config = SettingsConfigDict(env_prefix="REARGUARD_INTAKE_", extra="ignore")
    host: str = "127.0.0.1"
    port: int = Field(default=8088, ge=0, le=65535)
    tokens: Annotated[list[SecretStr], NoDecode, BeforeValidator(_secret_list)] = Field(
        default_factory=list, description="bearer tokens accepted, comma-separated"
    )
    auth: Literal["required", "off"] = Field(
        default="required", description="off is allowed only on a loopback address"
    )
    hmac_secret: SecretStr | None = Field(
        default=None, description="when set, X-Rearguard-Signature: sha256=<hex of the body>"
    )
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    dedup_window_s: float = Field(
        default=0.0,
        ge=0,
        description="after an incident is resolved, its alerts still attach to it this long",
    )
    dispatch: Literal["inline", "deployment"] = Field(
        default="inline",
        description="inline: playbooks run in the serving process; deployment: as flow runs of "
        "the playbooks' Prefect deployments (`rearguard deploy`), on the work pool's workers",
    )
    work_pool: str = Field(
        default="rearguard", min_length=1, description="the Prefect work pool of `deployment`"
    )
    playbook_workers: int = Field(
        default=8, ge=1, le=64, description="playbooks the intake runs at once (inline)"
    )
    alertmanager: list[AlertRule] = Field(default_factory=list)


@dataclass(frozen=True)
class Settings:
    """All settings, resolved once per process (or per test)."""

    core: CoreSettings
    database: DatabaseSettings
    registry: RegistrySettings
    playbooks: PlaybookSettings
    notifications: NotificationSettings
    config_file: Path | None
    slack: SlackSettings = field(default_factory=lambda: SlackSettings())
    email: EmailSettings = field(default_factory=lambda: EmailSettings())
    webhook: WebhookSettings = field(default_factory=lambda: WebhookSettings())
    drills: DrillSettings = field(default_factory=lambda: DrillSettings())
    scheduler: SchedulerSettings = field(default_factory=lambda: SchedulerSettings())
    hooks: HookSettings = field(default_factory=lambda: HookSettings())

    approvals: ApprovalSettings = field(default_factory=lambda: ApprovalSettings())

    intake: IntakeSettings = field(default_factory=lambda: IntakeSettings())

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
    from pydantic import ValidationError

    bootstrap_home = home or default_home()
    config_file = find_config_file(bootstrap_home)
    toml = read_config_file(config_file)
    _ConcernSettings._toml = toml
    try:
        core = CoreSettings(**({"home": home} if home else {}))
        database = DatabaseSettings(**({"url": database_url} if database_url else {}))
        settings = Settings(
            core=core,
            database=database,
            registry=RegistrySettings(),
            playbooks=PlaybookSettings(),
            notifications=NotificationSettings(),
            config_file=config_file,
            slack=SlackSettings(),
            email=EmailSettings(),
            webhook=WebhookSettings(),
            drills=DrillSettings(),
            scheduler=SchedulerSettings(),
            hooks=HookSettings(),
            approvals=ApprovalSettings(),
            intake=IntakeSettings(),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        # Name the table too: "security" alone does not say it is [notifications.email]'s.
        table = next(
            (c.toml_table for c in _ConcernSettings.__subclasses__() if c.__name__ == exc.title),
            "",
        )
        where = ".".join([table] * bool(table) + [str(p) for p in first["loc"]])
        raise ConfigurationError(f"invalid setting {where}: {first['msg']}") from exc
    finally:
        _ConcernSettings._toml = {}
    settings.home.mkdir(parents=True, exist_ok=True)
    return settings
