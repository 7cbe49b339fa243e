"""Failpoints: named places where a test can make the process die or stall on purpose.

``REARGUARD_FAILPOINTS="rollback.after_intent=kill,alias.after_move=sleep:5"`` makes the
process SIGKILL itself when it reaches ``rollback.after_intent`` and sleep five seconds at
``alias.after_move``. Unset (always, outside tests), a failpoint costs one dict lookup. This is
how the crash-recovery tests kill a playbook at an exact point between two side effects.
"""

from __future__ import annotations

import os
import signal
import time

_ENV = "REARGUARD_FAILPOINTS"


def _parse(raw: str) -> dict[str, str]:
    points: dict[str, str] = {}
    for item in raw.split(","):
        name, sep, action = item.strip().partition("=")
        if name and sep:
            points[name] = action
    return points


def failpoint(name: str) -> None:
    """Act on the failpoint ``name`` if the environment arms it (kill or sleep:SECONDS)."""
    raw = os.environ.get(_ENV)
    if not raw:
        return
    action = _parse(raw).get(name)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action and action.startswith("sleep:"):
        time.sleep(float(action.removeprefix("sleep:")))
