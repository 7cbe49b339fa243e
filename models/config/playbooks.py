"""How playbook steps behave: ``[playbooks]``, ``REARGUARD_PLAYBOOK_*``."""

from __future__ import annotations

import os
from typing import ClassVar

from pydantic import (
    Field,
)
from pydantic_settings import SettingsConfigDict

from rearguard.models.config.base import ConcernSettings


class PlaybookSettings(ConcernSettings):
    """How playbook steps behave."""

    toml_table: ClassVar[str] = "playbooks"
    model_config = SettingsConfigDict(env_prefix="REARGUARD_PLAYBOOK_", extra="ignore")
    validation_timeout_s: float = 300.0
    hash_workers: int = Field(default_factory=lambda: os.cpu_count() or 1)
    settle_s: float = Field(
        default=600.0,
        ge=0,
        description="for this long after a playbook restored an approved version, another "
        "incident's containment leaves it alone unless its files changed (0: never)",
    )
    allow_unlineaged_rollback: bool = Field(
        default=False,
        description="data_poisoning may roll back to a version that records no training dataset",
    )
