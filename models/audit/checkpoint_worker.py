"""Checkpoints signed and published off the caller's path: an incident's end asks, a thread
of its runtime's does the work.

Making a checkpoint verifies the chain since the last one, signs, commits durably (a checkpoint
is stored before it is published) and appends to each file sink with an fsync: tens of
milliseconds on a busy disk, which an incident's end must not wait for
(bench/bench_checkpoints.py). So the end only asks (:meth:`CheckpointWorker.request`,
microseconds) and the worker's thread makes and publishes the checkpoint. Requests that arrive
while a pass runs are folded into the next pass: a checkpoint vouches for the chain's head, so
one made after several ends covers all of them (its reason names each).

Nothing is lost if the process dies before the thread has run: the ended incidents' events are
already in the chain, and the next checkpoint made (by any process, or ``rearguard audit
checkpoint``) covers them, since each checkpoint vouches for every event after the one before
it and digests every incident those events belong to.

The thread exists only while there is work, and it is not a daemon: an interpreter that exits
normally waits for its pass. :meth:`CheckpointWorker.flush` (``Runtime.close``) waits for it
explicitly, so a CLI command has published its checkpoints when it exits. Why a thread and not
the notification outbox: asking through the outbox is a durable commit, the very cost the end
must not pay, and the checkpoint needs no record of the request (the chain is that record).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rearguard.models.audit.checkpoints import CheckpointPass
    from rearguard.models.config.settings import Settings
    from rearguard.models.db.engine import Database


class CheckpointWorker:
    """A runtime's background checkpointer: one pass at a time, in a thread started on demand.

    A runtime and its copies (``dataclasses.replace``) share one worker.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._reasons: list[str] = []
        self._wanted: tuple[Database, Settings] | None = None
        self._thread: threading.Thread | None = None
        self.last: CheckpointPass | None = None
        """What the latest pass did (tests and the bench read it after :meth:`flush`)."""

    def request(self, *, db: Database, settings: Settings, reason: str | None) -> None:
        """Ask for a checkpoint and a publishing pass; return at once.

        Does nothing when ``[audit] signing_key`` is not set.

        Args:
            db: the database whose chain it vouches for.
            settings: the settings (``[audit]``, the sinks' own).
            reason: why, as the checkpoint records it (``incident 12 run ended``); None asks
                only for a publishing pass (the sinks whose back-off is over).
        """
        if settings.audit.signing_key is None:
            return
        with self._lock:
            if reason is not None and reason not in self._reasons:
                self._reasons.append(reason)
            self._wanted = (db, settings)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="rearguard-checkpoints")
                self._thread.start()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every pass asked for has run (each network sink's attempt is bounded by
        ``[audit] publish_timeout_s``).

        Returns:
            False when passes were still running after ``timeout`` seconds.
        """
        with self._lock:
            return self._idle.wait_for(lambda: self._thread is None, timeout)

    def _take(self) -> tuple[Database, Settings, str | None] | None:
        """The next pass's work, or None (and the thread is done) when none is wanted."""
        with self._lock:
            if self._wanted is None:
                self._thread = None
                self._idle.notify_all()
                return None
            (db, settings), self._wanted = self._wanted, None
            reasons, self._reasons = self._reasons, []
        return db, settings, "; ".join(reasons) or None

    def _run(self) -> None:
        # lazy: the checkpoint code (cryptography) is loaded only by a process that signs
        from rearguard.models.audit.checkpoints import checkpoint_and_publish

        try:
            while (work := self._take()) is not None:
                db, settings, reason = work
                self.last = checkpoint_and_publish(db=db, settings=settings, reason=reason)
        except BaseException:  # never leave flush() waiting for a thread that died
            with self._lock:
                self._thread = None
                self._idle.notify_all()
            raise
