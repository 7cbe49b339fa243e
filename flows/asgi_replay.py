"""Giving an ASGI app a request body that a middleware has already read.

A middleware that must see the whole body before the app does (the intake's size limit and
signature check, the local Prefect server's retry) reads it from ``receive``; the app then
gets it again from :func:`replay`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def request_message(body: bytes) -> Message:
    """The one ``http.request`` message that carries a whole body."""
    return {"type": "http.request", "body": body, "more_body": False}


def replay(messages: list[Message], receive: Receive) -> Receive:
    """A receive that gives ``messages`` first, then whatever the client sends next (such as
    its disconnect)."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
