"""``rearguard scheduler``: run drills (and the asset sweep) on their schedules, and retry the
audit checkpoint sinks that failed, until stopped."""

from __future__ import annotations

import signal
import threading

import typer
from rich.markup import escape

from rearguard.flows.cli.context import err, runtime


def scheduler(ctx: typer.Context) -> None:
    """Run the scheduler in the foreground; SIGINT or SIGTERM stops it after the current drill."""
    from rearguard.flows.drills.scheduler import DrillScheduler  # lazy: CLI start-up
    from rearguard.flows.run_playbook import (  # lazy: CLI start-up
        configure_prefect,
        run_records_off_the_terminal,
    )

    rt = runtime(ctx)
    configure_prefect(home=rt.settings.home)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with run_records_off_the_terminal():
        running = DrillScheduler(rt)
        found = running.start()
        err.print(
            f"scheduler started: {len(found['drills'])} drill(s) "
            f"({escape(', '.join(found['drills'])) or 'none yet'}); "
            f"{found['missed']} drill(s) had missed runs, {found['interrupted']} interrupted "
            "run(s) recorded; Ctrl-C stops"
        )
        try:
            stop.wait()
        finally:
            err.print("stopping: waiting for a running drill to finish")
            running.shutdown(wait=True)
            err.print("scheduler stopped")
