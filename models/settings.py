"""Settings, one pydantic-settings model per concern.

Precedence: explicit overrides (command-line flags) > environment (``REARGUARD_*``) >
``rearguard.toml`` (current directory first, then ``REARGUARD_HOME``) > defaults.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from rearguard.models.errors import ConfigurationError

CONFIG_FILENAME = "rearguard.toml"


def default_home() -> Path:
    """Return the home directory from ``REARGUARD_HOME`` or ``~/.rearguard``."""
    raw = os.environ.get("REARGUARD_HOME")
    return Path(raw).expanduser() if raw else Path.home() / ".rearguard"


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
        table = cls._toml.get(cls.toml_table, {}) if cls.toml_table else cls._toml
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
    backend: str = "local"
    alias: str = "production"


class PlaybookSettings(_ConcernSettings):
    """How playbook steps behave."""

    toml_table: ClassVar[str] = "playbooks"
    model_config = SettingsConfigDict(env_prefix="REARGUARD_PLAYBOOK_", extra="ignore")
    validation_timeout_s: float = 300.0
    hash_workers: int = Field(default_factory=lambda: os.cpu_count() or 1)


class NotificationSettings(_ConcernSettings):
    """Where notifications go in the embedded default."""

    toml_table: ClassVar[str] = "notifications"
    model_config = SettingsConfigDict(env_prefix="REARGUARD_NOTIFY_", extra="ignore")
    console: bool = True
    file: Path | None = None
    slack_token: SecretStr | None = None


@dataclass(frozen=True)
class Settings:
    """All settings, resolved once per process (or per test)."""

    core: CoreSettings
    database: DatabaseSettings
    registry: RegistrySettings
    playbooks: PlaybookSettings
    notifications: NotificationSettings
    config_file: Path | None

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
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigurationError(f"invalid setting {where}: {first['msg']}") from exc
    finally:
        _ConcernSettings._toml = {}
    settings.home.mkdir(parents=True, exist_ok=True)
    return settings
