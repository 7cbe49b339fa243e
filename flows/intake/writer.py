"""The intake's database writer: one thread that records alerts in group commits.

Every alert appends to the audit chain, which takes one lock per database, so alerts are
recorded one transaction at a time whatever the number of request handlers. Rather than one
transaction (and one fsync) per request, the writer takes every request waiting in its queue
and records them in one transaction; each request learns its outcomes once that transaction
has committed, so a 202 always means "on disk".
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from rearguard.models.incidents.alerts import AlertOutcome, IncomingAlert, record_alerts
from rearguard.models.runtime import Runtime

logger = logging.getLogger(__name__)
_MAX_BATCH_ALERTS = 2000

_Request = tuple[list[IncomingAlert], Future[list[AlertOutcome]]]
"""One request's alerts and the future that gives their outcomes."""

OnOpened = Callable[[int], None]
"""Called with the id of each incident a committed batch opened."""


class AlertWriter:
    """Records alerts for request handlers, batching whatever is queued into one transaction.

    Args:
        runtime: the process runtime (database and settings).
        window_s: how long after resolution an incident still takes its alerts.
        on_opened: called after commit for every incident a batch opened.
        actor: who the timeline records as recording the alerts.
    """

    def __init__(
        self, runtime: Runtime, *, window_s: float, on_opened: OnOpened, actor: str = "intake"
    ) -> None:
        self._runtime = runtime
        self._window_s = window_s
        self._on_opened = on_opened
        self._actor = actor
        # None asks the thread to stop once what was queued before it is recorded.
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="rearguard-intake-writer")
        self._thread.daemon = True
        self._thread.start()

    def submit(self, alerts: Sequence[IncomingAlert]) -> Future[list[AlertOutcome]]:
        """Queue alerts; the future gives their outcomes once they are committed."""
        future: Future[list[AlertOutcome]] = Future()
        self._queue.put((list(alerts), future))
        return future

    def stop(self, timeout: float = 30.0) -> None:
        """Record what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch: list[_Request] = []
            item = self._queue.get()
            count = 0
            while True:
                if item is None:
                    stopping = True
                    break
                batch.append(item)
                count += len(item[0])
                if count >= _MAX_BATCH_ALERTS:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._write(batch)

    def _write(self, batch: list[_Request]) -> None:
        flat = [alert for alerts, _ in batch for alert in alerts]
        try:
            with self._runtime.db.session() as session:
                outcomes = record_alerts(
                    session=session,
                    alerts=flat,
                    actor=self._actor,
                    alias=self._runtime.settings.registry.alias,
                    window_s=self._window_s,
                )
        except Exception as exc:  # the database failed: every request of the batch hears it
            logger.error("recording %d alerts failed: %s", len(flat), type(exc).__name__)
            for _, future in batch:
                future.set_exception(exc)
            return
        start = 0
        for alerts, future in batch:
            future.set_result(outcomes[start : start + len(alerts)])
            start += len(alerts)
        for outcome in outcomes:
            if outcome.action == "opened" and outcome.incident_id is not None:
                self._on_opened(outcome.incident_id)
