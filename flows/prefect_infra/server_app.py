"""The process of the local Prefect server that ``rearguard serve`` starts: Prefect's own API
app (as ``prefect server start`` builds it), behind :class:`RetryWhileLocked`.

Run as ``python -m rearguard.flows.prefect_infra.server_app --host 127.0.0.1 --port N``; with
``--home H --idle-stop-s S`` (a server started in the background by a command), it stops itself
once unused for S seconds (:mod:`rearguard.flows.prefect_infra.idle`).

Why not ``prefect server start`` itself: on its SQLite database, the server's background
services (event persister, task-run recorder) write while the API creates a flow run. The
API's transaction, begun as a reader, then cannot become a writer (``SQLITE_BUSY_SNAPSHOT``:
SQLite's busy timeout does not apply), the server answers 503, and Prefect's client waits 2 s
before it asks again. Every such alert's playbook started 2 s late. The middleware asks again
itself, after a few milliseconds, which is what the client would have done, sooner.

Better still is not to fail: on SQLite, every write transaction of this server begins
``IMMEDIATE`` (:func:`write_transactions_immediate`), taking the write lock before its first
read, so it waits its turn (SQLite's busy timeout) instead of failing at its first write.
Prefect does this itself only for the transactions it marks ``with_for_update``; creating a
flow run is not one of them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn

from rearguard.flows.asgi_replay import (
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    replay,
    request_message,
)
from rearguard.flows.prefect_infra.idle import IdleWatch, stop_when_idle
from rearguard.flows.prefect_infra.server import withdraw

_RETRYABLE = 503
# A request body larger than this is passed through untouched (not buffered, not retried).
_MAX_BUFFERED_BODY = 8 * 1024 * 1024


class RetryWhileLocked:
    """ASGI middleware: a request the app answers 503 is asked again after a short pause.

    Prefect's API answers 503 exactly when the error is one a client may retry (a locked
    SQLite database, a dropped database connection): the failed transaction was rolled back,
    and Prefect's client would send the same request again. Here the pauses start at
    ``first_pause_s`` and double, for at most ``attempts`` tries; the last 503 goes to the
    client, which then retries as it always does. Only 503 answers are held back; every other
    answer, streamed ones included, passes through as the app sends it, and websockets are not
    touched.

    Args:
        app: the ASGI app to guard.
        attempts: how many times a request is tried before its 503 is passed on.
        first_pause_s: the pause before the second try.
    """

    def __init__(self, app: ASGIApp, *, attempts: int = 8, first_pause_s: float = 0.005) -> None:
        self.app = app
        self.attempts = attempts
        self.first_pause_s = first_pause_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body, more, first = await _read_body(receive)
        if more:  # too large to hold: never retried
            await self.app(scope, replay(first, receive), send)
            return
        pause = self.first_pause_s
        for attempt in range(1, self.attempts + 1):
            answer = _HeldAnswer(send, last=attempt == self.attempts)
            # Routing writes into the scope (root_path, path_params...): each try gets its own.
            try:
                await self.app(_fresh(scope), replay([request_message(body)], receive), answer.send)
            except Exception:
                # Starlette re-raises a handled error once its answer is sent, for the
                # server's log: an answer held back is asked again instead.
                if not answer.held_back:
                    raise
            if not answer.held_back:
                return
            await asyncio.sleep(pause)
            pause *= 2


def _fresh(scope: Scope) -> Scope:
    """A copy of the scope as the server made it, for one try."""
    fresh = dict(scope)
    if isinstance(scope.get("state"), dict):
        fresh["state"] = dict(scope["state"])
    return fresh


async def _read_body(receive: Receive) -> tuple[bytes, bool, list[Message]]:
    """Read the request body; stop early (``more`` True) once it exceeds the buffer's limit."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return b"", True, messages  # a disconnect: let the app see it
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(m.get("body", b"") for m in messages), False, messages
        if size > _MAX_BUFFERED_BODY:
            return b"", True, messages


class _HeldAnswer:
    """The app's answer to one try: sent on as it comes, unless it is a 503 and this is not
    the last try, when all of it is held back (``held_back``) and the app finishes unaware."""

    def __init__(self, send: Send, *, last: bool) -> None:
        self._send = send
        self._last = last
        self.held_back = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] == _RETRYABLE:
            self.held_back = not self._last
        if not self.held_back:
            await self._send(message)


def _stop_with(parent: int) -> None:
    """SIGTERM this server (a graceful stop) once ``parent`` is no longer its parent: a
    ``rearguard serve`` killed outright must not leave its Prefect server behind."""
    while os.getppid() == parent:
        time.sleep(1)
    os.kill(os.getpid(), signal.SIGTERM)


def write_transactions_immediate() -> bool:
    """On a SQLite database, make every write transaction of this process's Prefect server
    begin ``IMMEDIATE`` (call it before the app is built).

    With Prefect's deferred transactions, twenty playbooks starting at once (bench_intake's
    storm) had a hundred of its API requests fail "database is locked" and be retried, the
    last ones after the client's own 2 s wait; with ``IMMEDIATE`` none failed (the figures:
    bench/README.md, "The local Prefect server begins every SQLite write transaction").

    Returns:
        True when the database is SQLite and the change was made.
    """
    from prefect.server.database.configurations import (  # lazy: after os.nice (3 s of imports)
        AioSqliteConfiguration,
    )
    from prefect.server.database.dependencies import (  # lazy: after os.nice (3 s of imports)
        set_database_config,
    )
    from prefect.settings import (  # lazy: after os.nice (3 s of imports)
        PREFECT_API_DATABASE_CONNECTION_URL,
    )

    url = PREFECT_API_DATABASE_CONNECTION_URL.value()
    if not url or not url.startswith("sqlite"):
        return False

    class ImmediateWrites(AioSqliteConfiguration):
        @asynccontextmanager
        async def begin_transaction(
            self, session: Any, with_for_update: bool = False
        ) -> AsyncIterator[Any]:
            async with super().begin_transaction(session, with_for_update=True) as transaction:
                yield transaction

    set_database_config(ImmediateWrites(connection_url=url))
    return True


def main() -> None:
    """Serve Prefect's API and UI app, as ``prefect server start`` would, behind the retry."""
    parser = argparse.ArgumentParser(description="rearguard's local Prefect server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--parent", type=int, help="stop when this process is gone")
    parser.add_argument("--niceness", type=int, default=0, help="lower the CPU priority")
    parser.add_argument("--home", type=Path, help="the rearguard home that publishes it")
    parser.add_argument(
        "--idle-stop-s", type=float, default=0.0, help="stop once unused this long (needs --home)"
    )
    args = parser.parse_args()
    os.nice(args.niceness)
    if args.parent:
        threading.Thread(target=_stop_with, args=(args.parent,), daemon=True).start()

    from prefect.server.api.server import create_app  # lazy: after os.nice (3 s of imports)

    write_transactions_immediate()
    app: ASGIApp = RetryWhileLocked(create_app(final=True))
    if args.home is not None and args.idle_stop_s > 0:
        watch = IdleWatch(app)
        app = watch
        threading.Thread(
            target=stop_when_idle,
            kwargs={"watch": watch, "home": args.home, "idle_stop_s": args.idle_stop_s},
            daemon=True,
        ).start()
    try:
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            log_level="warning",
            # Prefect's CLI keeps connections 5 s; its clients reuse them between requests.
            timeout_keep_alive=5,
        )
    finally:
        if args.home is not None:
            withdraw(args.home)  # stopped by a signal: no command may pick up a server gone


if __name__ == "__main__":
    main()
