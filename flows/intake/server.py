"""uvicorn's server for the intake, which says so once it accepts connections, and the HTTP
protocol it serves with: a request's headers bounded in size and in time.

uvicorn bounds neither on its own whichever parser it picks: h11 has a buffer limit
(``h11_max_incomplete_event_size``) but httptools, which uvicorn prefers when installed, has
none (50 MB header lines were accepted), and neither times out a client that sends its headers
a byte at a time. :func:`bounded_http_protocol` subclasses the chosen implementation: a
request's headers must be complete within ``max_header_bytes`` (else 431) and within
``header_timeout_s`` of its first byte, or of the connection's opening (else 408); the
connection is then closed.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any, Literal

import h11
import uvicorn
from uvicorn.config import HTTP_PROTOCOLS
from uvicorn.importer import import_from_string

HttpImplementation = Literal["auto", "h11", "httptools"]


class IntakeServer(uvicorn.Server):
    """A uvicorn server that calls ``on_started`` once the app's start-up (the playbook
    process's warm-up) is done and its sockets accept connections.

    Args:
        config: uvicorn's configuration.
        on_started: called once, when the intake answers.
    """

    def __init__(self, config: uvicorn.Config, *, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start as uvicorn does, then say so."""
        await super().startup(sockets=sockets)  # exits the process if the app cannot start
        self._on_started()


def _answer(status: bytes, text: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: " + str(len(text)).encode() + b"\r\nconnection: close\r\n\r\n" + text
    )


_LINGER_S = 2.0
_TOO_LARGE = _answer(b"431 Request Header Fields Too Large", b"request headers too large\n")
_TOO_SLOW = _answer(b"408 Request Timeout", b"request headers not received in time\n")


class _HeaderBounds:
    """What both implementations share; each subclass says when a request's headers are
    awaited (:meth:`_awaiting_headers`)."""

    max_header_bytes: int
    header_timeout_s: float
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]  # a mixin: uvicorn's class after it in the MRO has it
        self._header_bytes = 0
        self._tail = b""
        self._header_timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._start_header_timer()  # a connection that never sends a request is closed too

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        awaiting = self._awaiting_headers()
        if awaiting:
            # Refused before the parser sees it: a chunk (up to 256 KiB) in which the headers
            # do not end and that takes them past the limit.
            ends = (self._tail + data).find(b"\r\n\r\n") != -1
            if not ends and self._header_bytes + len(data) > self.max_header_bytes:
                self._refuse(_TOO_LARGE)
                return
        super().data_received(data)  # type: ignore[misc]  # a mixin: uvicorn's class after it in the MRO has it
        # The parser's callbacks may have refused or closed: look again.
        if self._finished():
            return
        if not self._awaiting_headers():
            self._stop_header_timer()
            return
        # Bytes of headers still incomplete after this chunk (a body that followed complete
        # headers in the same chunk is not counted).
        self._header_bytes = (self._header_bytes if awaiting else 0) + len(data)
        self._tail = (self._tail + data)[-3:]
        self._start_header_timer()
        if self._header_bytes > self.max_header_bytes:
            self._refuse(_TOO_LARGE)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)  # type: ignore[misc]  # a mixin: uvicorn's class after it in the MRO has it

    def _awaiting_headers(self) -> bool:
        raise NotImplementedError

    def _finished(self) -> bool:
        """Whether this connection was refused or is closing."""
        return self._refused or self.transport.is_closing()

    def _start_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(
                self.header_timeout_s, self._refuse, _TOO_SLOW
            )

    def _stop_header_timer(self) -> None:
        self._header_bytes = 0
        self._tail = b""
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _refuse(self, answer: bytes) -> None:
        self._stop_header_timer()
        self._refused = True  # from here on what arrives is read and dropped
        if self.transport.is_closing():
            return
        self.transport.write(answer)
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        # A lingering close: closing now, with the client's unread bytes in our buffer, would
        # send a reset that can destroy the answer before the client reads it.
        self.transport.write_eof()
        self.loop.call_later(_LINGER_S, self.transport.close)


def bounded_http_protocol(
    implementation: HttpImplementation = "auto",
    *,
    max_header_bytes: int,
    header_timeout_s: float,
) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class (``auto``: httptools when installed, else h11), with a
    request's headers bounded in size and time. Pass it as ``uvicorn.Config(http=...)``.

    Args:
        implementation: which of uvicorn's implementations to bound.
        max_header_bytes: the most bytes a request's line and headers may take.
        header_timeout_s: how long a request's line and headers may take to arrive.
    """
    base: type[Any] = import_from_string(HTTP_PROTOCOLS[implementation])
    if base.__name__ == "HttpToolsProtocol":

        class BoundedHttpTools(_HeaderBounds, base):  # type: ignore[misc]  # base is chosen at run time
            def connection_made(self, transport: asyncio.Transport) -> None:
                self._in_headers = True
                super().connection_made(transport)

            def on_message_begin(self) -> None:
                super().on_message_begin()
                self._in_headers = True

            def on_headers_complete(self) -> None:
                self._in_headers = False
                super().on_headers_complete()

            def _awaiting_headers(self) -> bool:
                return self._in_headers

        bounded: type[Any] = BoundedHttpTools
    else:

        class BoundedH11(_HeaderBounds, base):  # type: ignore[misc]  # base is chosen at run time
            def _awaiting_headers(self) -> bool:
                # Between requests, what arrives next is a request's line and headers.
                return self.conn.their_state is h11.IDLE

        bounded = BoundedH11
    bounded.max_header_bytes = max_header_bytes
    bounded.header_timeout_s = header_timeout_s
    return bounded
