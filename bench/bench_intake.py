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
- ``floor_bare_uvicorn_paced``: the floor under the open-loop load of ``intake_paced``.
- ``intake_paced``: the same alerts offered at a fixed ``--rate`` (default the budget's
  1,000/s) for ``--seconds``, open loop (:func:`paced_load`, in a process of its own): each
  latency counts from when the request was due, so a stall shows as the backlog it makes,
  which a closed-loop client (wrk) hides. ``slow_windows`` lists the tenths of a second whose
  worst answer was over the p99 budget. The budget's p99 is read here.

``intake`` and ``intake_batched`` use wrk when it is installed (else Python client threads)
and measure capacity: as fast as the server answers ``--clients`` connections.

Both servers run the same workload from the same client in the same run; the floor is
measured first. The home is a temporary SQLite one (``--database-url`` for a scratch
PostgreSQL database, whose ``public`` schema is dropped first).

Run: ``.venv/bin/python bench/bench_intake.py [--alerts 10000] [--assets 20] [--clients 16]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"11")]})
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


WRK_SCRIPT = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(token)s"
local bodies = { %(bodies)s }
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, bodies[(n %% #bodies) + 1])
end
"""
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def wrk_load(url: str, bodies: list[dict[str, Any]], *, connections: int, seconds: float) -> dict:
    """Drive ``url`` with wrk (C, two threads, keep-alive) cycling over ``bodies``: the load
    generator costs little CPU, so the figure is the server's, not the client's."""
    literals = ", ".join(f"[==[{json.dumps(b, separators=(',', ':'))}]==]" for b in bodies)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % {"token": TOKEN, "bodies": literals})
    command = [
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{round(seconds)}s",
        "--latency",
        "-s",
        script.name,
    ]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)
    percentiles = {
        int(p): float(v) * _UNITS[u]
        for p, v, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
    }
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    per_request = sum(len(b.get("alerts", [b])) for b in bodies) / len(bodies)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return {
        "tool": "wrk",
        "requests": requests,
        "alerts": round(requests * per_request),
        "seconds": seconds,
        "alerts_per_s": round(rate * per_request, 1),
        "requests_per_s": round(rate, 1),
        "p50_ms": round(percentiles[50], 2),
        "p99_ms": round(percentiles[99], 2),
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def paced_load(
    url: str, bodies: list[dict[str, Any]], *, rate: float, seconds: float, connections: int
) -> dict[str, Any]:
    """Send ``rate`` requests a second for ``seconds``, on schedule whatever the answers
    (open loop), over ``connections`` keep-alive connections, cycling over ``bodies``.

    Each latency runs from the moment the request was due, so a request that waits for a
    free connection behind a slow answer counts that wait (no coordinated omission). Raw
    HTTP/1.1 on asyncio streams: at this rate the client costs a few percent of a core.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    wire = []
    for body in bodies:
        payload = json.dumps(body, separators=(",", ":")).encode()
        head = (
            f"POST {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        )
        wire.append(head.encode() + payload)

    async def run() -> tuple[list[float], dict[int, int], float, list[tuple[float, float]]]:
        loop = asyncio.get_running_loop()
        idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
        for _ in range(connections):
            idle.put_nowait(await asyncio.open_connection(host, port))
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        timeline: list[tuple[float, float]] = []

        async def one(request: bytes, due: float) -> None:
            reader, writer = await idle.get()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
            await reader.readexactly(length)
            idle.put_nowait((reader, writer))
            latencies.append(loop.time() - due)
            timeline.append((due - start, loop.time() - due))
            statuses[status] = statuses.get(status, 0) + 1

        count = int(rate * seconds)
        start = loop.time() + 0.05
        tasks = []
        for i in range(count):
            due = start + i / rate
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(one(wire[i % len(wire)], due)))
        await asyncio.gather(*tasks)
        elapsed = loop.time() - start
        while not idle.empty():
            idle.get_nowait()[1].close()
        return latencies, statuses, elapsed, timeline

    latencies, statuses, elapsed, timeline = asyncio.run(run())
    slow: dict[int, float] = {}
    for at, latency in timeline:
        if latency > P99_BUDGET_MS / 1000:
            tenth = int(at * 10)
            slow[tenth] = max(slow.get(tenth, 0.0), latency)
    latencies.sort()
    per_request = sum(len(b.get("alerts", [b])) for b in bodies) / len(bodies)
    return {
        "tool": "open loop (asyncio)",
        "target_requests_per_s": rate,
        "requests": len(latencies),
        "alerts": round(len(latencies) * per_request),
        "seconds": round(elapsed, 3),
        "alerts_per_s": round(len(latencies) * per_request / elapsed, 1),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
        "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 2),
        "max_ms": round(1000 * latencies[-1], 2),
        "statuses": statuses,
        # When answers were slower than the p99 budget: [second into the run, worst ms].
        "slow_windows": [[t / 10, round(1000 * v)] for t, v in sorted(slow.items())],
    }


def paced_drive(url: str, bodies: list[dict[str, Any]], args: argparse.Namespace) -> dict:
    """:func:`paced_load` at ``--rate`` for ``--seconds``, in a process of its own, as wrk is:
    the client's pauses (the bench process's collector, its other threads) must not count as
    the server's."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(bodies, file)
    spec = {
        "url": url,
        "bodies": file.name,
        "rate": args.rate,
        "seconds": args.seconds,
        "connections": args.clients,
    }
    done = subprocess.run(
        [sys.executable, __file__, "--paced-client", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=True,
    )
    os.unlink(file.name)
    return json.loads(done.stdout)


def drive(url: str, bodies: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """The load of one figure: wrk for ``--seconds`` when it is installed, else every body
    once from Python client threads."""
    if shutil.which("wrk") and not args.python_client:
        return wrk_load(url, bodies, connections=args.clients, seconds=args.seconds)
    return {"tool": "httpx threads", **load(url, bodies, args.clients)}


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


def playbook_figures(runtime: Any, *, quiet: list[str]) -> dict[str, Any]:
    """Incidents, playbook runs and opened-to-first-step times, read from the database.

    The delays of the ``quiet`` assets' incidents (one alert at a time, before the storm) and
    of the storm's are reported apart.
    """
    from datetime import datetime

    from sqlalchemy import text

    with runtime.db.read_session() as session:
        connection = session.connection()
        rows = connection.execute(
            text(
                "SELECT incident_id, action, kind, ts FROM timeline_event"
                " WHERE action IN ('incident.opened', 'quarantine') ORDER BY seq"
            )
        ).fetchall()
        incidents = connection.execute(text("SELECT id, asset_name, status FROM incident"))
        asset_of = {}
        statuses = set()
        for incident_id, asset, status in incidents.fetchall():
            asset_of[incident_id] = asset
            statuses.add(status)
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

    def delays(in_quiet: bool) -> list[float]:
        return sorted(
            (first_step[i] - opened[i]).total_seconds()
            for i in first_step
            if i in opened and (asset_of[i] in quiet) == in_quiet
        )

    quiet_delays, storm_delays = delays(True), delays(False)
    return {
        "incidents": len(asset_of) - len(quiet),
        "playbook_runs": runs - len(quiet_delays),
        "incident_statuses": sorted(statuses),
        "quiet_opened_to_first_step_s": [round(d, 3) for d in quiet_delays],
        "quiet_opened_to_first_step_median_s": _median(quiet_delays),
        "storm_opened_to_first_step_median_s": _median(storm_delays),
        "storm_opened_to_first_step_max_s": round(storm_delays[-1], 3) if storm_delays else None,
    }


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def quiet_alerts(base: str, assets: list[str]) -> None:
    """One alert at a time: each waits for the previous incident's playbook to end."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(headers=headers, timeout=60) as http:
        for asset in assets:
            answer = http.post(
                f"{base}/v1/incidents", json={"type": "model_compromise", "asset": asset}
            )
            incident = f"{base}/v1/incidents/{answer.json()['incident_id']}"
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                if http.get(incident).json()["status"] in ("recovered", "failed"):
                    break
                time.sleep(0.1)


REARGUARD = str(Path(sys.executable).with_name("rearguard"))


def prepare_home(home: Path, assets: list[str], args: argparse.Namespace) -> Any:
    """A fresh home (and scratch database) with one tampered scenario per asset."""
    from scenarios import build_scenario

    from rearguard.models.config.settings import load_settings
    from rearguard.models.runtime import Runtime

    home.mkdir()
    if args.database_url:
        from sqlalchemy import create_engine, text

        from rearguard.models.db.engine import normalise_url

        engine = create_engine(normalise_url(args.database_url))
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    runtime = Runtime.from_settings(load_settings(home=home, database_url=args.database_url))
    if args.database_url:
        runtime.db.upgrade()
    note(f"{home.name}: building {len(assets)} tampered assets")
    for asset in assets:
        build_scenario(runtime, home, asset=asset, tampered=True)
    return runtime


def serve_env(home: Path, port: int, args: argparse.Namespace, **extra: str) -> dict[str, str]:
    """The environment of the bench's rearguard processes: only what the bench sets."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("REARGUARD_", "PREFECT_"))},
        "REARGUARD_HOME": str(home),
        "REARGUARD_INTAKE_TOKENS": TOKEN,
        "REARGUARD_INTAKE_PORT": str(port),
        **(
            {"REARGUARD_INTAKE_PLAYBOOK_WORKERS": str(args.playbook_workers)}
            if args.playbook_workers
            else {}
        ),
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        **({"REARGUARD_DATABASE_URL": args.database_url} if args.database_url else {}),
        **(
            {"PREFECT_API_DATABASE_CONNECTION_URL": args.prefect_database_url}
            if args.prefect_database_url
            else {}
        ),
        **extra,
    }


def deployment_figure(work: Path, quiet: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """``dispatch = "deployment"``: single alerts through ``rearguard serve``, flow runs queued
    on the deployments and run by one ``rearguard worker``, all on one Prefect server."""
    from rearguard.flows.prefect_infra.server import free_loopback_port, local_prefect_server

    home = work / "deployment"
    runtime = prepare_home(home, quiet, args)
    port = free_loopback_port()
    if args.prefect_database_url:
        os.environ["PREFECT_API_DATABASE_CONNECTION_URL"] = args.prefect_database_url
    with local_prefect_server(home=home) as prefect:
        prefect.wait_ready()
        api_url = prefect.api_url
        env = serve_env(
            home, port, args, PREFECT_API_URL=api_url, REARGUARD_INTAKE_DISPATCH="deployment"
        )
        subprocess.run([REARGUARD, "deploy"], env=env, check=True, capture_output=True)
        logs = [(home / f"{name}.log").open("wb") for name in ("worker", "serve")]
        worker, serve = (
            subprocess.Popen([REARGUARD, command], env=env, stdout=log, stderr=subprocess.STDOUT)
            for command, log in zip(("worker", "serve"), logs, strict=True)
        )
        try:
            wait_healthy(f"http://127.0.0.1:{port}/healthz", serve)
            note("deployment: serve and worker up; single alerts")
            quiet_alerts(f"http://127.0.0.1:{port}", quiet)
        finally:
            stop(serve)
            stop(worker)
            for log in logs:
                log.close()
    figures = playbook_figures(runtime, quiet=quiet)
    runtime.db.dispose()
    return {k: v for k, v in figures.items() if k.startswith(("quiet", "incident_statuses"))}


def main() -> None:
    """Run the bench."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--assets", type=int, default=20)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk's run per figure")
    parser.add_argument(
        "--rate", type=float, default=RATE_BUDGET, help="intake_paced: requests per second"
    )
    parser.add_argument("--python-client", action="store_true", help="not wrk, httpx threads")
    parser.add_argument("--playbook-workers", type=int, default=None)
    parser.add_argument("--quiet", type=int, default=5, help="single alerts before the storm")
    parser.add_argument("--database-url", default=None)
    parser.add_argument(
        "--prefect-database-url",
        default=None,
        help="the local Prefect server's database (postgresql+asyncpg://...); default SQLite",
    )
    parser.add_argument("--no-deployment", action="store_true", help="skip dispatch=deployment")
    parser.add_argument(
        "--figures", default="", help="only these, comma-separated (intake,intake_batched,...)"
    )
    parser.add_argument("--paced-client", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.paced_client:  # the open-loop client, in its own process (see paced_load)
        import gc

        gc.disable()  # a short run: no collector pauses in the client's timings
        spec = json.loads(args.paced_client)
        bodies = json.loads(Path(spec.pop("bodies")).read_text())
        print(json.dumps(paced_load(spec.pop("url"), bodies, **spec)))
        return

    from rearguard.flows.prefect_infra.server import free_loopback_port

    work = Path(tempfile.mkdtemp(prefix="rearguard-bench-intake-"))
    assets = [f"model-{i:02d}" for i in range(args.assets)]
    quiet = [f"quiet-{i:02d}" for i in range(args.quiet)]
    bodies = native_bodies(assets, args.alerts)

    port = free_loopback_port()
    floor = subprocess.Popen([sys.executable, "-c", FLOOR_APP, str(port)])
    try:
        wait_healthy(f"http://127.0.0.1:{port}/", floor)
        load(f"http://127.0.0.1:{port}/v1/incidents", bodies[:500], args.clients)  # warm-up
        figures = drive(f"http://127.0.0.1:{port}/v1/incidents", bodies, args)
        paced_floor = paced_drive(f"http://127.0.0.1:{port}/v1/incidents", bodies, args)
    finally:
        stop(floor)
    emit("floor_bare_uvicorn", clients=args.clients, **figures)
    emit("floor_bare_uvicorn_paced", clients=args.clients, **paced_floor)

    results: dict[str, Any] = {}
    for figure, workload, load_with in (
        ("intake", bodies, drive),
        ("intake_batched", webhook_bodies(assets, args.alerts, args.batch), drive),
        ("intake_paced", bodies, paced_drive),
    ):
        if args.figures and figure not in args.figures.split(","):
            continue
        home = work / figure
        runtime = prepare_home(home, quiet + assets, args)
        port = free_loopback_port()
        env = serve_env(home, port, args)
        log = (home / "serve.log").open("wb")
        serve = subprocess.Popen(
            [REARGUARD, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            note(f"{figure}: starting rearguard serve (and its local Prefect server)")
            started = time.perf_counter()
            wait_healthy(f"http://127.0.0.1:{port}/healthz", serve)
            note(f"{figure}: healthy after {time.perf_counter() - started:.1f} s")
            base = f"http://127.0.0.1:{port}"
            quiet_alerts(base, quiet)
            route = "/v1/alerts/alertmanager" if figure == "intake_batched" else "/v1/incidents"
            figures = load_with(f"{base}{route}", workload, args)
            note(f"{figure}: {figures['alerts_per_s']} alerts/s; waiting for the playbooks")
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz").json()
                done = health["playbooks"]["finished"] + health["playbooks"]["errors"]
                if done >= args.assets + args.quiet:
                    break
                time.sleep(0.5)
            figures["healthz"] = health
        finally:
            stop(serve)
            log.close()
        figures.update(playbook_figures(runtime, quiet=quiet))
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
    if not args.no_deployment and args.quiet:
        emit("deployment_quiet", **deployment_figure(work, quiet, args))
    for figure, got in results.items():
        note(
            f"{figure}: {got['alerts_per_s']} alerts/s, p99 {got['p99_ms']} ms; "
            f"{got['incidents']} incidents, {got['playbook_runs']} playbook runs; first step "
            f"{got['quiet_opened_to_first_step_median_s']} s quiet, "
            f"{got['storm_opened_to_first_step_median_s']} s in the storm (medians)"
        )


if __name__ == "__main__":
    main()
