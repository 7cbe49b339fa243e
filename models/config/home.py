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


PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
"""The modes of what rearguard creates in its home (whatever the umask): the database, the
evidence, the reviews and the notifications file hold incident details nobody else needs."""
HOME_FILE_HINT = "check the home's owner and permissions (`rearguard status` names the home)"
"""What a person can do when rearguard cannot write a file in its home."""


def private_directory(path: Path) -> Path:
    """Create a directory readable by its owner alone (0700), unless it exists: an existing
    one keeps the mode its owner gave it. Its missing parents are created as usual."""
    if not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:
            return path  # another process made it first, with the same mode
        path.chmod(PRIVATE_DIR_MODE)  # the umask may have taken more away, never less
    return path
