"""Where rearguard keeps its state, and who acts: ``REARGUARD_HOME``, ``REARGUARD_USER``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from rearguard.models.config.base import ConcernSettings
from rearguard.models.config.home import ACTOR_VARIABLES, OS_USER_VARIABLES, default_home
from rearguard.models.errors import UsageError


def os_user(environ: Mapping[str, str] | None = None) -> str | None:
    """The name of the logged-in user, from the environment a login shell sets (this
    process's, or ``environ``), or None."""
    # The password database is not asked: a daemon or a container running as root would
    # otherwise record "root" as the person who decided.
    for name in OS_USER_VARIABLES:
        value = (os.environ if environ is None else environ).get(name, "").strip()
        if value:
            return value
    return None


class CoreSettings(ConcernSettings):
    """Where rearguard keeps its state, and the name recorded for a person's decisions."""

    model_config = SettingsConfigDict(
        env_prefix="REARGUARD_", extra="ignore", populate_by_name=True
    )
    home: Path = Field(default_factory=default_home)
    actor: str | None = Field(
        default_factory=os_user,
        validation_alias=AliasChoices(*ACTOR_VARIABLES),
        description="who the CLI records as the person acting (actor in rearguard.toml)",
    )

    def person(self, by: str | None = None) -> str:
        """The name recorded for a person's word: ``by`` (the ``--by`` flag), else the setting.

        Raises:
            UsageError: no name is at hand (exit 2); the message says how to give one.
        """
        name = (by if by is not None else self.actor or "").strip()
        if not name:
            raise UsageError(
                "no name to record for this decision: pass --by NAME, or set REARGUARD_USER "
                "or actor in rearguard.toml"
            )
        return name
