"""The local Prefect server rearguard starts when no Prefect API is configured: ``[prefect]``,
``REARGUARD_PREFECT_*``."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from rearguard.models.config.base import ConcernSettings
from rearguard.models.config.location import DEFAULT_IDLE_STOP_S


class PrefectSettings(ConcernSettings):
    """The background Prefect server of commands run without ``rearguard serve``."""

    toml_table: ClassVar[str] = "prefect"
    model_config = SettingsConfigDict(env_prefix="REARGUARD_PREFECT_", extra="ignore")
    idle_stop_s: float = Field(
        default=DEFAULT_IDLE_STOP_S,
        ge=0,
        description="without serve and without PREFECT_API_URL, the first command that runs a "
        "playbook starts a background host (a local Prefect server, and a process that runs "
        "the commands handed to it); later commands are handed to it or reuse its server, and "
        "it stops once no command has used it for this long (0: start none, each command uses "
        "Prefect's temporary server)",
    )
