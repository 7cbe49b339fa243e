"""``rearguard serve`` as a user runs it: refuses an open bind, serves, stops on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import httpx
from conftest import REARGUARD_BIN
from intake_helpers import AUTH, TOKEN, native, wait_for

from rearguard.flows.prefect_server import free_loopback_port


def test_serve_refuses_auth_off_on_a_public_address(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("serve", "--host", "0.0.0.0", env={"REARGUARD_INTAKE_AUTH": "off"})
    assert result.returncode == 2
    assert "auth is off but it would listen on 0.0.0.0" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_accepts_events_and_stops_gracefully_on_sigterm(
    cli_env: dict[str, str], home: Path
) -> None:
    port = free_loopback_port()
    env = {**cli_env, "REARGUARD_INTAKE_TOKENS": f"other,{TOKEN}"}
    with subprocess.Popen(
        [str(REARGUARD_BIN), "serve", "--port", str(port)],
        env=env,
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout=60, what="rearguard serve")
        refused = httpx.post(f"{url}/v1/incidents", json=native("model-a"))
        assert refused.status_code == 401
        unknown = httpx.post(f"{url}/v1/incidents", json=native("model-a"), headers=AUTH)
        assert unknown.status_code == 422
        assert unknown.json()["detail"] == "unknown asset 'model-a'"
        assert httpx.get(f"{url}/healthz").json()["requests"] == {"accepted": 0, "refused": 2}
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert f"listening on http://127.0.0.1:{port}" in stderr
    assert TOKEN not in stderr
