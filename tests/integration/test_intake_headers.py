"""Request headers bounded in size and in time, with both of uvicorn's HTTP parsers.

uvicorn prefers httptools when it is installed, and h11's buffer limit does not apply to it:
each test runs the intake on a real uvicorn with each implementation forced, and speaks raw
HTTP/1.1 over a socket, as a hostile client would.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn
from intake_helpers import TOKEN, intake_settings

from rearguard.flows.intake.app import create_app
from rearguard.flows.intake.server import HttpImplementation, bounded_http_protocol
from rearguard.models.runtime import Runtime

MAX_HEADER_BYTES = 8 * 1024
IMPLEMENTATIONS = ["httptools", "h11"]


@contextmanager
def serving(runtime: Runtime, implementation: HttpImplementation) -> Iterator[int]:
    """The intake on 127.0.0.1 with a forced HTTP implementation; yields its port."""
    config = uvicorn.Config(
        create_app(runtime, intake=intake_settings(), run_playbooks=False),
        host="127.0.0.1",
        port=0,
        log_level="warning",
        access_log=False,
        http=bounded_http_protocol(
            implementation, max_header_bytes=MAX_HEADER_BYTES, header_timeout_s=0.5
        ),
        h11_max_incomplete_event_size=4 * MAX_HEADER_BYTES,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(60)


def connect(port: int) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port))
    client.settimeout(30)  # a bound on a broken test, not a measurement
    return client


def read_until_closed(client: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while chunk := client.recv(65536):
        received += chunk
    return received


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_headers_over_the_limit_get_431_and_the_connection_closes(
    runtime: Runtime, implementation: HttpImplementation
) -> None:
    with serving(runtime, implementation) as port, connect(port) as client:
        client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        # Send until the server answers (or a megabyte went, which would be the bug).
        while sent < 1024 * 1024 and not select.select([client], [], [], 0)[0]:
            client.sendall(b"a" * 4096)
            sent += 4096
        answer = read_until_closed(client)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("partial", [b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"])
def test_headers_that_never_end_get_408_and_the_connection_closes(
    runtime: Runtime, implementation: HttpImplementation, partial: bytes
) -> None:
    with serving(runtime, implementation) as port, connect(port) as client:
        client.sendall(partial)
        answer = read_until_closed(client)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_a_body_larger_than_the_header_limit_and_a_second_request_still_pass(
    runtime: Runtime, implementation: HttpImplementation
) -> None:
    body = json.dumps({"type": "model_compromise", "asset": "x", "summary": "s" * 9000}).encode()
    request = (
        b"POST /v1/incidents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    closing = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with serving(runtime, implementation) as port, connect(port) as client:
        client.sendall(request)
        first = b""
        while b"\r\n\r\n" not in first:
            first += client.recv(65536)
        client.sendall(closing)
        rest = read_until_closed(client)
    # The unknown asset is the app's answer: the headers and the body got through.
    assert first.startswith(b"HTTP/1.1 422 "), first[:80]
    assert b"HTTP/1.1 200 OK" in rest
