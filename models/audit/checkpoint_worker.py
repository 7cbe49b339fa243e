"""Checkpoints signed and published off the caller's path: an incident's end asks, a thread
of its runtime's does the work.

Making a checkpoint verifies the chain since the last one, signs, commits durably (a checkpoint
is stored before it is published) and appends to each file sink with an fsync: tens of
milliseconds on a busy disk, which an incident's end must not wait for
(bench/bench_checkpoints.py). So the end only asks (:meth:`CheckpointWorker.request`: a lock and
a notification, microseconds) and the worker's thread makes and publishes the checkpoint.
Requests that arrive while a pass runs are folded into the next pass: a checkpoint vouches for
the chain's head, so one made after several ends covers all of them (its reason names each).

The thread is started once and then waits for work: starting a thread waits for the operating
system to schedule it, which on a loaded machine took up to 130 ms, so a run starts it when it
begins (:meth:`CheckpointWorker.start`), not when it ends. It is a daemon, stopped by
:meth:`CheckpointWorker.close` (``Runtime.close``) after the passes asked for have run: a CLI
command has published its checkpoints when it exits. A process that exits without closing its
runtime closes the worker at exit (``atexit``), so a normal exit loses nothing either.

Nothing is lost if the process dies before a pass has run: the ended incidents' events are
already in the chain, and the next checkpoint made (by any process, or ``rearguard audit
checkpoint``) covers them, since each checkpoint vouches for every event after the one before
it and digests every incident those events belong to. Why a thread and not the notification
outbox: asking through the outbox is a durable commit, the very cost the end must not pay, and
the request needs no record of its own (the chain is that record).
"""

from __future__ import annotations

import atexit
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rearguard.models.audit.checkpoints import CheckpointPass
    from rearguard.models.config.settings import Settings
    from rearguard.models.db.engine import Database


class CheckpointWorker:
    """A runtime's background checkpointer: one pass at a time, in a thread of its own.

    A runtime and its copies (``dataclasses.replace``) share one worker.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._reasons: list[str] = []
        self._wanted: tuple[Database, Settings] | None = None
        self._busy = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.last: CheckpointPass | None = None
        """What the latest pass did (tests and the bench read it after :meth:`flush`)."""

    def start(self, *, settings: Settings) -> None:
        """Start the thread now, when ``[audit] signing_key`` is set (at a run's start, so
        that its end never waits for a thread to start)."""
        if settings.audit.signing_key is not None:
            with self._lock:
                self._start_thread()

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
            self._start_thread()
            self._changed.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every pass asked for has run (each network sink's attempt is bounded by
        ``[audit] publish_timeout_s``).

        Returns:
            False when a pass was still to run or running after ``timeout`` seconds.
        """
        with self._lock:
            return self._changed.wait_for(self._idle, timeout)

    def close(self) -> None:
        """Run the passes asked for, then stop the thread (a later request starts another)."""
        with self._lock:
            thread, self._stopping = self._thread, True
            self._changed.notify_all()
        if thread is not None:
            thread.join()
        with self._lock:
            if self._thread is None:
                atexit.unregister(self.close)

    def _idle(self) -> bool:
        return not self._busy and (self._wanted is None or self._thread is None)

    def _start_thread(self) -> None:
        """Start the thread unless it runs; the caller holds the lock."""
        if self._thread is not None:
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="rearguard-checkpoints", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def _take(self) -> tuple[Database, Settings, str | None] | None:
        """Wait for the next pass's work; None (the thread ends) once stopping with none."""
        with self._lock:
            while self._wanted is None:
                if self._stopping:
                    self._thread = None
                    self._changed.notify_all()
                    return None
                self._changed.wait()
            (db, settings), self._wanted = self._wanted, None
            reasons, self._reasons = self._reasons, []
            self._busy = True
        return db, settings, "; ".join(reasons) or None

    def _run(self) -> None:
        # lazy: the checkpoint code (cryptography) is loaded only by a process that signs
        from rearguard.models.audit.checkpoints import checkpoint_and_publish

        try:
            while (work := self._take()) is not None:
                db, settings, reason = work
                try:
                    self.last = checkpoint_and_publish(db=db, settings=settings, reason=reason)
                finally:
                    with self._lock:
                        self._busy = False
                        self._changed.notify_all()
        except BaseException:  # never leave flush() or close() waiting for a dead thread
            with self._lock:
                self._thread = None
                self._changed.notify_all()
            raise
