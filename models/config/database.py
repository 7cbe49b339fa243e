"""The application database: ``[database]``, ``REARGUARD_DATABASE_*``."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from rearguard.models.config.base import ConcernSettings


class DatabaseSettings(ConcernSettings):
    """The application database."""

    toml_table: ClassVar[str] = "database"
    model_config = SettingsConfigDict(env_prefix="REARGUARD_DATABASE_", extra="ignore")
    url: str | None = None
    busy_timeout_s: float = 30.0
