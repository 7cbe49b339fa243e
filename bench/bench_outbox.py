"""Benchmark: what the notification outbox costs a step, and how fast the dispatcher delivers.

Budgets: the outbox adds <= 5 ms to a step; the dispatcher delivers >= 200 notifications/s to
a local webhook receiver.

Figures, one JSON line each on standard output (``{"bench": "outbox", "measure", ...}``):

- ``step``: the notify step through ``run_step`` (intent event, body, outcome event), its body
  queueing one notification for 5 targets (file, 2 Slack channels, email, webhook): the
  ``notify.<event>`` event and 5 outbox rows in one transaction. Floor: the same ``run_step``
  with a body that reads exactly what the notify body reads and writes no notification. Median
  milliseconds per step over ``--steps`` steps (a fresh incident each, created untimed);
  ``added_ms`` = step - floor, the figure the budget is about.
- ``dispatch``: ``Dispatcher.drain`` delivering ``--notifications`` webhook notifications
  (spread over 100 incidents) to a receiver on loopback: claim, render, sign, POST, record the
  receipt as a timeline event. Floor: one ``httpx.Client`` posting the same bodies in a plain
  loop to the same receiver. The receiver runs in its own process (a threading
  ``http.server`` answering 200 with keep-alive) so it does not share the GIL with either.

Each measure runs ``--rounds`` times, alternating with its floor; the best of each is reported.
The database is a temporary SQLite file unless ``--database-url`` names a scratch database.

Run: ``.venv/bin/python bench/bench_outbox.py [--steps 200] [--notifications 2000]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STEP_BUDGET_MS = 5.0
DISPATCH_BUDGET = 200.0
INCIDENTS = 100

RECEIVER = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def emit(measure: str, **fields: Any) -> None:
    """Print one figure as a JSON line on standard output."""
    print(json.dumps({"bench": "outbox", "measure": measure, **fields}), flush=True)


def make_runtime(home: Path, database_url: str | None, toml: str, env: dict[str, str]) -> Any:
    """A runtime on a fresh home with the given rearguard.toml and environment."""
    from rearguard.models.config.settings import load_settings
    from rearguard.models.runtime import Runtime

    home.mkdir(parents=True, exist_ok=True)
    (home / "rearguard.toml").write_text(toml)
    os.environ.update(env)
    os.chdir(home)
    if database_url:
        reset(database_url)
    runtime = Runtime.from_settings(load_settings(home=home, database_url=database_url))
    return runtime


def reset(url: str) -> None:
    """Empty a scratch PostgreSQL database (its public schema)."""
    from sqlalchemy import create_engine, text

    from rearguard.models.db.engine import normalise_url

    engine = create_engine(normalise_url(url))
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def open_incidents(runtime: Any, count: int) -> list[int]:
    """Record ``count`` incidents (untimed)."""
    from rearguard.models.incidents.service import open_incident

    ids = []
    with runtime.db.session() as session:
        for _ in range(count):
            incident = open_incident(
                session=session,
                type="model_compromise",
                actor="bench",
                summary="bench incident: output distribution shifted",
            )
            ids.append(int(incident.id or 0))
    return ids


def read_like_notify(*, runtime: Any, incident_id: int, event: str) -> dict[str, Any]:
    """The floor's body: what the notify body reads, and no notification."""
    from rearguard.models.incidents.service import get_incident

    with runtime.db.read_session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
    return {"event": event, "receipts": {}, "status": str(incident.status)}


def bench_step(root: Path, database_url: str | None, steps: int, rounds: int) -> None:
    """``step``: the notify step with the outbox against the same step writing nothing."""
    from rearguard.flows.steps import run_step
    from rearguard.notifications.notify import notify

    toml = """
[notifications]
channels = ["file", "slack", "email", "webhook"]
[notifications.slack]
channel = "#incidents"
[notifications.email]
host = "127.0.0.1"
recipients = ["secops@example.org"]
[notifications.webhook]
url = "http://127.0.0.1:9/hook"
[[notifications.routes]]
slack = ["#ml-platform"]
"""
    runtime = make_runtime(root / "step-home", database_url, toml, {})
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, body in (("floor", read_like_notify), ("outbox", notify)):
            ids = open_incidents(runtime, steps)
            timings = []
            for incident_id in ids:
                started = time.perf_counter()
                run_step("notify", body, runtime=runtime, incident_id=incident_id, event="failed")
                timings.append(time.perf_counter() - started)
            median_ms = statistics.median(timings) * 1000
            best[name] = min(best.get(name, median_ms), median_ms)
    added = best["outbox"] - best["floor"]
    emit(
        "step",
        steps=steps,
        step_ms=round(best["outbox"], 3),
        floor_ms=round(best["floor"], 3),
        added_ms=round(added, 3),
        budget_added_ms=STEP_BUDGET_MS,
        within_budget=added <= STEP_BUDGET_MS,
        targets=5,
        database="postgresql" if database_url else "sqlite",
    )
    print(
        f"step: {best['outbox']:.2f} ms with the outbox, {best['floor']:.2f} ms without "
        f"(+{added:.2f} ms; budget +{STEP_BUDGET_MS} ms)",
        file=sys.stderr,
    )
    runtime.db.dispose()


def queue(runtime: Any, incident_ids: list[int], count: int) -> None:
    """Queue ``count`` notifications round-robin over the incidents (untimed)."""
    from rearguard.models.incidents.service import get_incident
    from rearguard.notifications.outbox import enqueue

    events = ("opened", "contained", "recovered", "failed", "approval_needed")
    with runtime.db.read_session() as session:
        incidents = [get_incident(session=session, incident_id=i) for i in incident_ids]
    for n in range(count):
        with runtime.db.transaction() as connection:
            enqueue(
                connection,
                settings=runtime.settings,
                incident=incidents[n % len(incidents)],
                event=events[n % len(events)],
                actor="bench",
                production="v2",
                extra={"n": n},
            )


def bench_dispatch(root: Path, database_url: str | None, count: int, rounds: int) -> None:
    """``dispatch``: the dispatcher against a plain httpx loop, same receiver, same bodies."""
    import httpx

    from rearguard.notifications.channels.base import Delivery
    from rearguard.notifications.channels.webhook import webhook_body
    from rearguard.notifications.dispatcher import Dispatcher
    from rearguard.notifications.outbox import OUTBOX
    from rearguard.notifications.templates import Renderer

    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout is not None
        url = f"http://127.0.0.1:{receiver.stdout.readline().strip()}/hook"
        toml = f"""
[notifications]
channels = ["webhook"]
[notifications.webhook]
url = "{url}"
"""
        env = {"REARGUARD_WEBHOOK_SECRET": "bench-secret-0123456789"}
        best: dict[str, float] = {}
        for index in range(rounds):
            runtime = make_runtime(root / f"dispatch-home-{index}", database_url, toml, env)
            queue(runtime, open_incidents(runtime, INCIDENTS), count)
            # The floor posts the bodies the dispatcher sends, rendered ahead of time.
            with runtime.db.read_session() as session:
                rows = session.connection().execute(OUTBOX.select()).mappings().all()
            renderer = Renderer()
            bodies = []
            for row in rows:
                message = renderer.render(row["event"], json.loads(row["payload"]))
                delivery = Delivery(
                    outbox_id=row["id"],
                    idempotency_key=row["idempotency_key"],
                    incident_id=row["incident_id"],
                    event=row["event"],
                    destination=row["destination"],
                    created_at=row["created_at"],
                )
                bodies.append(
                    json.dumps(webhook_body(message, delivery), separators=(",", ":")).encode()
                )
            with httpx.Client() as client:
                started = time.perf_counter()
                for body in bodies:
                    client.post(url, content=body, headers={"Content-Type": "application/json"})
                floor = len(bodies) / (time.perf_counter() - started)
            with Dispatcher(settings=runtime.settings, db=runtime.db) as dispatcher:
                started = time.perf_counter()
                report = dispatcher.drain(wait_s=120)
                seconds = time.perf_counter() - started
            assert report.delivered == len(rows) and not report.pending, report
            best["floor"] = max(best.get("floor", 0.0), floor)
            best["dispatch"] = max(best.get("dispatch", 0.0), len(rows) / seconds)
            runtime.db.dispose()
        emit(
            "dispatch",
            notifications=count,
            per_s=round(best["dispatch"], 1),
            floor_per_s=round(best["floor"], 1),
            ratio=round(best["dispatch"] / best["floor"], 3),
            budget_per_s=DISPATCH_BUDGET,
            within_budget=best["dispatch"] >= DISPATCH_BUDGET,
            workers=runtime.settings.notifications.dispatch_workers,
            database="postgresql" if database_url else "sqlite",
        )
        print(
            f"dispatch: {best['dispatch']:.0f} notifications/s (plain httpx loop "
            f"{best['floor']:.0f}/s; budget {DISPATCH_BUDGET:.0f}/s)",
            file=sys.stderr,
        )
    finally:
        receiver.terminate()
        receiver.wait()


def main() -> None:
    """Parse the options and run both measures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--notifications", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="rearguard-bench-outbox-"))
    cwd = Path.cwd()
    try:
        bench_step(root, args.database_url, args.steps, args.rounds)
        bench_dispatch(root, args.database_url, args.notifications, args.rounds)
    finally:
        os.chdir(cwd)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
