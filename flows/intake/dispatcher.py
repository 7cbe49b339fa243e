"""The intake's dispatch: in background threads of the playbook process
(:mod:`rearguard.flows.intake.playbook_process`), each opened incident's playbook runs there
(``dispatch = "inline"``) or is queued as a flow run of its deployment (``"deployment"``).

Inline, one playbook per asset at a time (a lock per asset in this process); incidents of
different assets run in parallel up to the number of workers.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from rearguard.flows.prefect_infra.events import emit_incident_event
from rearguard.flows.run_playbook import dispatch_playbook
from rearguard.models.incidents.service import get_incident
from rearguard.models.runtime import Runtime

logger = logging.getLogger(__name__)

Report = Callable[[str, int], None]
"""Called as report(kind, incident_id), kind one of ``started``, ``finished``, ``errors``."""


class PlaybookDispatcher:
    """Starts incidents' playbooks with :func:`rearguard.flows.run_playbook.dispatch_playbook`.

    Args:
        runtime: the process runtime.
        workers: how many playbooks may run at once (on different assets).
        report: told when each playbook starts and ends (the parent process counts them).
    """

    def __init__(self, runtime: Runtime, *, workers: int, report: Report) -> None:
        self._runtime = runtime
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rearguard-pb")
        self._asset_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._guard = threading.Lock()
        self._report = report

    def submit(self, incident_id: int) -> Future[None]:
        """Queue an incident's playbook."""
        return self._pool.submit(self._run, incident_id)

    def stop(self, *, wait: bool = True) -> None:
        """Stop taking work; with ``wait``, let queued and running playbooks finish."""
        self._pool.shutdown(wait=wait, cancel_futures=not wait)

    def _run(self, incident_id: int) -> None:
        try:
            with self._runtime.db.read_session() as session:
                opened = get_incident(session=session, incident_id=incident_id)
            emit_incident_event("opened", opened)
            asset = opened.asset_name or ""
            with self._guard:
                lock = self._asset_locks[asset]
            with lock:
                self._report("started", incident_id)
                done = dispatch_playbook(runtime=self._runtime, incident_id=incident_id)
                logger.info("incident %s: %s", incident_id, done)
            self._report("finished", incident_id)
        except Exception:  # a broken run must not take the worker thread down
            self._report("errors", incident_id)
            logger.exception("playbook of incident %s did not run to its end", incident_id)
