"""The local Prefect server: its retry of 503 answers (a locked SQLite database), in front of
a FastAPI app that answers 503 as Prefect's API does for a retryable database error, and the
CA file its clients are given."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from rearguard.flows.prefect_infra.server import loopback_ca_file
from rearguard.flows.prefect_infra.server_app import RetryWhileLocked


class Locked(Exception):
    """What the database raises while another writer holds it."""


def locked_app(fail_first: int, status: int = 503) -> tuple[FastAPI, list[Any]]:
    """An app whose POST /api/runs fails ``fail_first`` times, then creates.

    As in Prefect's API: mounted under /api (routing rewrites the scope on every try), the
    failure is an exception that a catch-all handler answers (503 for a locked database, else
    ``status``), and Starlette raises it again once that answer is sent.
    """
    outer, app = FastAPI(), FastAPI()
    outer.mount("/api", app)
    seen: list[Any] = []

    @app.exception_handler(Exception)
    async def unavailable(_request: Request, exc: Exception) -> JSONResponse:
        code = 503 if isinstance(exc, Locked) else 500
        return JSONResponse({"exception_message": "Service Unavailable"}, status_code=code)

    @app.post("/runs")
    async def create(request: Request) -> Any:
        seen.append(await request.json())
        if len(seen) <= fail_first:
            raise Locked() if status == 503 else ValueError("broken")
        return {"created": len(seen)}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        seen.append("stream")

        async def chunks() -> Any:
            for i in range(3):
                yield f"chunk{i};".encode()

        return StreamingResponse(chunks(), status_code=503)

    return outer, seen


def call(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://local") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def test_a_503_is_asked_again_with_the_same_body_until_the_app_succeeds() -> None:
    app, seen = locked_app(fail_first=3)
    answer = call(
        RetryWhileLocked(app, first_pause_s=0.001), "POST", "/api/runs", json={"name": "r"}
    )
    assert answer.status_code == 200
    assert answer.json() == {"created": 4}
    assert seen == [{"name": "r"}] * 4


def test_after_the_last_attempt_the_503_reaches_the_client() -> None:
    app, seen = locked_app(fail_first=100)
    answer = call(
        RetryWhileLocked(app, attempts=3, first_pause_s=0.001), "POST", "/api/runs", json={"n": 1}
    )
    assert answer.status_code == 503
    assert answer.json() == {"exception_message": "Service Unavailable"}
    assert len(seen) == 3


def test_other_errors_are_not_retried() -> None:
    app, seen = locked_app(fail_first=1, status=500)
    answer = call(RetryWhileLocked(app, first_pause_s=0.001), "POST", "/api/runs", json={})
    assert answer.status_code == 500
    assert len(seen) == 1


def test_a_streamed_503_is_retried_and_the_last_one_arrives_whole() -> None:
    app, seen = locked_app(0)
    answer = call(RetryWhileLocked(app, attempts=2, first_pause_s=0.001), "GET", "/api/stream")
    assert seen == ["stream", "stream"]
    assert answer.status_code == 503
    assert answer.text == "chunk0;chunk1;chunk2;"


def test_the_loopback_ca_file_is_a_ca_that_vouches_for_no_real_server(tmp_path: Path) -> None:
    """What the local Prefect server's clients get as their CA file: loadable (Prefect's
    client builds its SSL context from it), written once, and trusting no public server."""
    path = loopback_ca_file(tmp_path / "ca.pem")
    context = ssl.create_default_context(cafile=str(path))
    (authority,) = context.get_ca_certs()
    assert dict(pair[0] for pair in authority["subject"])["commonName"].startswith(
        "rearguard loopback"
    )
    written = path.read_bytes()
    assert loopback_ca_file(path).read_bytes() == written  # not regenerated
    assert b"PRIVATE KEY" not in written
