"""Where rearguard keeps its state, and the variables that name who acts: known without
loading the settings machinery, or anything but ``os`` and ``pathlib`` (the CLI's hand-off
client reads them before anything else; where the database is lives in
:mod:`rearguard.models.config.location`)."""

from __future__ import annotations

import os
from pathlib import Path


def default_home() -> Path:
    """Return the home directory from ``REARGUARD_HOME`` or ``~/.rearguard``."""
    raw = os.environ.get("REARGUARD_HOME")
    return Path(raw).expanduser() if raw else Path.home() / ".rearguard"


ACTOR_VARIABLES = ("REARGUARD_USER", "REARGUARD_ACTOR")
"""The environment variables that name the person acting (REARGUARD_ACTOR is the older name,
still read)."""
OS_USER_VARIABLES = ("USER", "LOGNAME", "USERNAME")
"""The user names a login shell exports."""
