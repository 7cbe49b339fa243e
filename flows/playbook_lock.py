"""The lock on the process-wide runtime slot that playbooks' steps read.

Steps find their runtime through one slot per process (``rearguard.models.runtime``). Playbooks
on the application's runtime (the intake's, the sweep's) can share it; a drill installs its
sandbox's runtime there, so it runs alone: in ``rearguard serve`` an incident's playbook must
never find a drill's sandbox in the slot.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class PlaybookLock:
    """Shared for playbooks on the application's runtime, exclusive for a drill."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._sharing = 0
        self._exclusive = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        """Run a playbook on the application's runtime (others may run at the same time)."""
        with self._changed:
            self._changed.wait_for(lambda: not self._exclusive)
            self._sharing += 1
        try:
            yield
        finally:
            with self._changed:
                self._sharing -= 1
                self._changed.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Run a drill: wait until no playbook runs, and keep others out until it ends."""
        with self._changed:
            self._changed.wait_for(lambda: not self._exclusive and self._sharing == 0)
            self._exclusive = True
        try:
            yield
        finally:
            with self._changed:
                self._exclusive = False
                self._changed.notify_all()


PLAYBOOK_LOCK = PlaybookLock()
