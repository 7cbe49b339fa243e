"""Stopping a background process once nothing uses it: the local Prefect server a command starts
in the background, and the background host (``rearguard serve --background``, see
:mod:`rearguard.flows.cli.background`) that runs later commands for the same home.

Use is an HTTP request or websocket in progress or recent (:class:`IdleWatch`), or a command
holding its lease on the home's local Prefect server (``prefect-server.users``: one may wait on
an approval, or hash a large model, without a word to any server).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rearguard.flows.asgi_replay import ASGIApp, Receive, Scope, Send
from rearguard.flows.prefect_infra.server import in_use, withdraw_if_unused


class IdleWatch:
    """ASGI middleware that knows how long the server has been unused: no HTTP request and no
    websocket open (a flow run's process keeps one open to send its events) for ``idle_for``.

    Args:
        app: the ASGI app to watch.
        retired: once set, the process stops as soon as nothing uses it, whatever the idle
            time (it has been replaced).
    """

    def __init__(self, app: ASGIApp, *, retired: threading.Event | None = None) -> None:
        self.app = app
        self._open = 0
        self._last = time.monotonic()
        self._retired = retired

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        self._open += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self._open -= 1
            self._last = time.monotonic()

    def used_now(self) -> None:
        """Count this moment as use (a command holds its lease)."""
        self._last = time.monotonic()

    def idle_for(self) -> float:
        """Seconds since the last request or websocket ended; 0 while one is open."""
        return 0.0 if self._open else time.monotonic() - self._last

    def done(self, idle_stop_s: float) -> bool:
        """True when the process may stop: unused for ``idle_stop_s``, or retiring and unused."""
        retired = self._retired is not None and self._retired.is_set()
        return self.idle_for() >= idle_stop_s or (retired and not self._open)


def stop_when_idle(
    *,
    watch: IdleWatch,
    home: Path,
    idle_stop_s: float,
    withdrawn: Callable[[], None] | None = None,
) -> None:
    """SIGTERM this process (a graceful stop) once nothing has used it for ``idle_stop_s``
    (or once it retires and nothing uses it): no request, no websocket, and no command holding
    its lease on the home's local Prefect server. Run it in a daemon thread.

    Args:
        watch: the app's watch.
        home: the rearguard home whose records name the process.
        idle_stop_s: how long unused before it stops.
        withdrawn: called once the home's Prefect server record is withdrawn, before the stop
            (to withdraw the process's other records).
    """
    while True:
        time.sleep(min(1.0, idle_stop_s / 4))
        try:
            if in_use(home):
                watch.used_now()
                continue
            if not watch.done(idle_stop_s):
                continue
            if withdraw_if_unused(home=home, still_idle=lambda: watch.done(idle_stop_s)):
                break
        except OSError:
            break  # the home is gone (a throwaway one, deleted): nobody can find this process
    if withdrawn is not None:
        withdrawn()
    os.kill(os.getpid(), signal.SIGTERM)
