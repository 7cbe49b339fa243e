"""Where rearguard keeps its state, known without loading the settings machinery."""

from __future__ import annotations

import os
from pathlib import Path


def default_home() -> Path:
    """Return the home directory from ``REARGUARD_HOME`` or ``~/.rearguard``."""
    raw = os.environ.get("REARGUARD_HOME")
    return Path(raw).expanduser() if raw else Path.home() / ".rearguard"
