"""Where rearguard keeps its state, and who acts: ``REARGUARD_HOME``, ``REARGUARD_ACTOR``."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import (
    Field,
)
from pydantic_settings import SettingsConfigDict

from rearguard.models.config.base import ConcernSettings
from rearguard.models.config.home import default_home


class CoreSettings(ConcernSettings):
    """Where rearguard keeps its state."""

    model_config = SettingsConfigDict(env_prefix="REARGUARD_", extra="ignore")
    home: Path = Field(default_factory=default_home)
    actor: str = Field(
        default_factory=lambda: os.environ.get("USER") or os.environ.get("USERNAME") or "unknown",
        description="who the CLI records as the actor of an action",
    )
