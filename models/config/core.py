"""Where rearguard keeps its state, and who acts: ``REARGUARD_HOME``, ``REARGUARD_USER``."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from rearguard.models.config.base import ConcernSettings
from rearguard.models.config.home import default_home
from rearguard.models.errors import UsageError

# The user names a login shell exports. The password database is not asked: a daemon or a
# container running as root would otherwise record "root" as the person who decided.
_OS_USER_VARIABLES = ("USER", "LOGNAME", "USERNAME")


def os_user() -> str | None:
    """The name of the logged-in user, from the environment a login shell sets, or None."""
    for name in _OS_USER_VARIABLES:
        value = os.environ.get(name, "").strip()
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
        # REARGUARD_ACTOR is the older name, still read.
        validation_alias=AliasChoices("REARGUARD_USER", "REARGUARD_ACTOR"),
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
