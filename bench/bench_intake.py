"""Benchmark: the HTTP intake under an alert storm, against a bare uvicorn endpoint.

Budgets: the intake accepts >= 1,000 alerts/s on this 2-core machine with p99 <= 50 ms;
10,000 alerts over 20 assets yield exactly 20 incidents and 20 playbook runs.

Figures, one JSON line each on standard output (``{"bench": "intake", "figure", ...}``):

- ``floor_bare_uvicorn``: a bare ASGI app on uvicorn (its own process) that reads the body,
  parses the JSON and answers 202. The same client load as the intake.
- ``intake``: ``rearguard serve`` (its own process, started exactly as a user would, so it
  also starts its local Prefect server) receiving ``--alerts`` native events, one per request,
  spread over ``--assets`` tampered assets, from ``--clients`` client threads with keep-alive
  connections. alerts/s, latency p50/p99 (each request, client side), the incidents and
  playbook runs (``quarantine`` intents) found in the database afterwards, and the median
  time from an incident's ``incident.opened`` event to its first step's intent event.
- ``intake_batched``: the same alerts as Alertmanager webhooks of ``--batch`` alerts each.

Both servers run the same workload from the same client in the same run; the floor is
measured first. The home is a temporary SQLite one (``--database-url`` for a scratch
PostgreSQL database, whose ``public`` schema is dropped first).

Run: ``.venv/bin/python bench/bench_intake.py [--alerts 10000] [--assets 20] [--clients 16]``
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the scenario builders the tests use

TOKEN = "bench-token-0123456789"
RATE_BUDGET = 1000.0
P99_BUDGET_MS = 50.0

FLOOR_APP = r"""
import json, sys, uvicorn

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    json.loads(body or b"null")
    await send({"type": "http.response.start", "status": 202,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"ok":true}'})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def emit(figure: str, **fields: Any) -> None:
    """Print one figure as a JSON line."""
    record = {"bench": "intake", "figure": figure, **fields}
    record["load_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(record), flush=True)


def note(message: str) -> None:
    """Progress on standard error."""
    print(f"[bench_intake] {message}", file=sys.stderr, flush=True)


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 240) -> None:
    """Wait for ``url`` to answer 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} not healthy after {timeout} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server, as a service manager would, and wait for it."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def load(url: str, bodies: list[dict[str, Any]], clients: int) -> dict[str, Any]:
    """POST every body from ``clients`` threads; alerts/s and latency percentiles."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    chunks = [bodies[i::clients] for i in range(clients)]

    def client(chunk: list[dict[str, Any]]) -> None:
        mine: list[float] = []
        codes: dict[int, int] = {}
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(headers=headers, timeout=60) as http:
            for body in chunk:
                started = time.perf_counter()
                status = http.post(url, json=body).status_code
                mine.append(time.perf_counter() - started)
                codes[status] = codes.get(status, 0) + 1
        with lock:
            latencies.extend(mine)
            for code, count in codes.items():
                statuses[code] = statuses.get(code, 0) + count

    threads = [threading.Thread(target=client, args=(c,)) for c in chunks]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    alerts = sum(len(b.get("alerts", [b])) for b in bodies)
    return {
        "requests": len(bodies),
        "alerts": alerts,
        "seconds": round(elapsed, 3),
        "alerts_per_s": round(alerts / elapsed, 1),
        "requests_per_s": round(len(bodies) / elapsed, 1),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
        "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 2),
        "statuses": statuses,
    }


def native_bodies(assets: list[str], count: int) -> list[dict[str, Any]]:
    """``count`` native events round-robin over the assets."""
    return [
        {"type": "model_compromise", "asset": assets[i % len(assets)], "dedup_key": f"k{i % 50}"}
        for i in range(count)
    ]


def webhook_bodies(assets: list[str], count: int, batch: int) -> list[dict[str, Any]]:
    """``count`` alerts as Alertmanager webhooks of ``batch`` alerts for one asset each."""
    bodies = []
    for start in range(0, count, batch):
        asset = assets[(start // batch) % len(assets)]
        alerts = [
            {
                "status": "firing",
                "labels": {"rearguard_type": "model_compromise", "asset": asset, "i": str(i)},
                "fingerprint": f"fp{i}",
            }
            for i in range(start, min(start + batch, count))
        ]
        bodies.append({"version": "4", "status": "firing", "alerts": alerts})
    return bodies


def playbook_figures(runtime: Any) -> dict[str, Any]:
    """Incidents, playbook runs and opened-to-first-step times, read from the database."""
    from datetime import datetime

    from sqlalchemy import text

    with runtime.db.read_session() as session:
        rows = (
            session.connection()
            .execute(
                text(
                    "SELECT incident_id, action, kind, ts FROM timeline_event"
                    " WHERE action IN ('incident.opened', 'quarantine') ORDER BY seq"
                )
            )
            .fetchall()
        )
        statuses = session.connection().execute(text("SELECT status FROM incident")).fetchall()
    opened: dict[int, datetime] = {}
    first_step: dict[int, datetime] = {}
    runs = 0
    for incident_id, action, kind, ts in rows:
        moment = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        if action == "incident.opened":
            opened[incident_id] = moment
        elif kind == "intent":
            runs += 1
            first_step.setdefault(incident_id, moment)
    delays = [(first_step[i] - opened[i]).total_seconds() for i in first_step if i in opened]
    return {
        "incidents": len(statuses),
        "playbook_runs": runs,
        "incident_statuses": sorted({s for (s,) in statuses}),
        "opened_to_first_step_median_s": round(statistics.median(delays), 3) if delays else None,
        "opened_to_first_step_max_s": round(max(delays), 3) if delays else None,
    }


def main() -> None:
    """Run the bench."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--assets", type=int, default=20)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

    from scenarios import build_scenario

    from rearguard.flows.prefect_server import free_loopback_port
    from rearguard.models.runtime import Runtime, use_runtime
    from rearguard.models.settings import load_settings

    work = Path(tempfile.mkdtemp(prefix="rearguard-bench-intake-"))
    assets = [f"model-{i:02d}" for i in range(args.assets)]
    bodies = native_bodies(assets, args.alerts)

    port = free_loopback_port()
    floor = subprocess.Popen([sys.executable, "-c", FLOOR_APP, str(port)])
    try:
        wait_healthy(f"http://127.0.0.1:{port}/", floor)
        load(f"http://127.0.0.1:{port}/v1/incidents", bodies[:500], args.clients)  # warm-up
        figures = load(f"http://127.0.0.1:{port}/v1/incidents", bodies, args.clients)
    finally:
        stop(floor)
    emit("floor_bare_uvicorn", clients=args.clients, **figures)

    results: dict[str, Any] = {}
    for figure, workload in (
        ("intake", bodies),
        ("intake_batched", webhook_bodies(assets, args.alerts, args.batch)),
    ):
        home = work / figure
        home.mkdir()
        if args.database_url:
            from sqlalchemy import create_engine, text

            from rearguard.models.database import normalise_url

            engine = create_engine(normalise_url(args.database_url))
            with engine.begin() as connection:
                connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
                connection.execute(text("CREATE SCHEMA public"))
            engine.dispose()
        runtime = Runtime.from_settings(load_settings(home=home, database_url=args.database_url))
        if args.database_url:
            runtime.db.upgrade()
        use_runtime(runtime)
        note(f"{figure}: building {args.assets} tampered assets")
        for asset in assets:
            build_scenario(runtime, home, asset=asset, tampered=True)
        port = free_loopback_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("REARGUARD_", "PREFECT_"))},
            "REARGUARD_HOME": str(home),
            "REARGUARD_INTAKE_TOKENS": TOKEN,
            "REARGUARD_INTAKE_PORT": str(port),
            "PREFECT_HOME": str(home / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            **({"REARGUARD_DATABASE_URL": args.database_url} if args.database_url else {}),
        }
        log = (home / "serve.log").open("wb")
        serve = subprocess.Popen(
            [str(Path(sys.executable).with_name("rearguard")), "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            note(f"{figure}: starting rearguard serve (and its local Prefect server)")
            started = time.perf_counter()
            wait_healthy(f"http://127.0.0.1:{port}/healthz", serve)
            note(f"{figure}: healthy after {time.perf_counter() - started:.1f} s")
            route = "/v1/incidents" if figure == "intake" else "/v1/alerts/alertmanager"
            figures = load(f"http://127.0.0.1:{port}{route}", workload, args.clients)
            note(f"{figure}: {figures['alerts_per_s']} alerts/s; waiting for the playbooks")
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz").json()
                done = health["playbooks"]["finished"] + health["playbooks"]["errors"]
                if done >= args.assets:
                    break
                time.sleep(0.5)
            figures["healthz"] = health
        finally:
            stop(serve)
            log.close()
        figures.update(playbook_figures(runtime))
        runtime.db.dispose()
        results[figure] = figures
        emit(
            figure,
            clients=args.clients,
            **figures,
            budget_alerts_per_s=RATE_BUDGET,
            budget_p99_ms=P99_BUDGET_MS,
            exact=figures["incidents"] == args.assets and figures["playbook_runs"] == args.assets,
        )
    intake = results["intake"]
    note(
        f"intake {intake['alerts_per_s']} alerts/s p99 {intake['p99_ms']} ms; "
        f"batched {results['intake_batched']['alerts_per_s']} alerts/s; "
        f"{intake['incidents']} incidents, {intake['playbook_runs']} playbook runs"
    )


if __name__ == "__main__":
    main()
