"""Benchmark: what a Prometheus scrape of ``GET /metrics`` costs on 100,000 incidents.

Budget: a scrape costs at most 50 ms on a database of 100,000 incidents.

The database (a temporary SQLite file, schema by the migrations) is filled untimed with plain
``sqlite3`` inserts: ``--incidents`` incidents over the 7 built-in types, 4 severities and 4
sources (97% resolved, the rest open, contained, recovered or failed), 3 outbox rows each on 2
channels (100 waiting, 1% failed), 1,000 approval requests (3 waiting, 1 overdue), 10 drills of
50 runs, 100 signed checkpoints and a chain head. The ``metric_counter`` rows are what rearguard
counts for that history: the migration's seed from the rows, then the playbook endings, the
containment and recovery times and 9 step durations per incident through
``rearguard.models.metrics.counters.add`` (summed, as the rows they become).

Figures, one JSON line each on standard output (``{"bench": "metrics", "measure", ...}``),
medians of ``--scrapes`` scrapes (the first five measures taking turns, so that they share
the machine's load), the best of ``--rounds`` rounds, in milliseconds:

- ``scrape_http``: ``GET /metrics`` with a read token from an ``httpx`` client (keep-alive)
  to the intake app on uvicorn on loopback, in the bench's process: the guard, the route, a
  worker thread, the text exposition, the 135 kB answer over the socket.
- ``scrape_http_changed``: the same after a counter changed (one more delivery counted,
  untimed, before each scrape): the families of the kept counters are rebuilt, as on a busy
  system where something happens between two scrapes.
- ``http_floor``: ``GET /healthz`` the same way: what HTTP and the app cost a request that
  reads nothing.
- ``scrape_collector``: the route's encoder (text format 0.0.4) on a registry of the same
  collector, in the bench's thread: the snapshot's queries through SQLAlchemy, and the
  families rendered.
- ``floor``: the same query set (the counter rows and each gauge's query) run with plain
  ``sqlite3`` on the same file, rows fetched, nothing rendered.
- ``recount`` (for reference, what the kept counters avoid): the incident families counted
  from the rows with plain ``sqlite3`` (``GROUP BY`` over the incidents and the outbox);
  the median of 5 calls, measured apart.

Run: ``.venv/bin/python bench/bench_metrics.py [--incidents 100000] [--scrapes 50]``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BUDGET_MS = 50.0
RECOUNT_CALLS = 5
TYPES = (
    "model_compromise",
    "prompt_tampering",
    "config_tampering",
    "data_poisoning",
    "supply_chain",
    "model_theft",
    "degradation",
)
SEVERITIES = ("sev1", "sev2", "sev3", "sev4")
SOURCES = ("cli", "alert", "sweep", "drill")
STEPS = (
    "notify",
    "quarantine",
    "verify_integrity",
    "select_known_good",
    "await_approval",
    "rollback",
    "validate",
    "notify",
    "notify",
)
TOKEN = "bench-token-0123456789abcdef"


def emit(measure: str, **fields: Any) -> None:
    """Print one figure as a JSON line on standard output."""
    record = {"bench": "metrics", "measure": measure, **fields}
    record["load_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(record), flush=True)


def stamp(moment: datetime) -> str:
    """A timestamp as SQLAlchemy stores it in SQLite (naive UTC text)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def fill(path: Path, incidents: int, seed: int = 7) -> None:
    """Write the history with plain sqlite3 (untimed)."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    connection = sqlite3.connect(path)
    rows = []
    for n in range(1, incidents + 1):
        roll = rng.random()
        status = (
            "resolved"
            if roll < 0.97
            else ("open", "contained", "recovered", "failed")[int((roll - 0.97) * 133) % 4]
        )
        opened = now - timedelta(minutes=incidents - n)
        rows.append(
            (
                n,
                rng.choice(TYPES),
                rng.choice(SEVERITIES),
                status,
                f"asset-{n % 200}",
                "bench incident",
                rng.choice(SOURCES),
                "[]",
                "bench",
                stamp(opened),
                stamp(opened + timedelta(minutes=5)),
                "{}",
            )
        )
    connection.executemany(
        "INSERT INTO incident (id, type, severity, status, asset_name, summary, source,"
        " atlas_ids, opened_by, opened_at, updated_at, state) VALUES"
        " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    outbox = []
    for n in range(1, incidents + 1):
        for k, (event, channel) in enumerate(
            (("opened", "file"), ("opened", "slack"), ("recovered", "slack"))
        ):
            row_id = (n - 1) * 3 + k + 1
            status = "delivered"
            if row_id % 100 == 0:
                status = "failed"
            elif n > incidents - 34:
                status = "pending"
            created = stamp(now - timedelta(minutes=incidents - n))
            outbox.append(
                (
                    row_id,
                    n,
                    event,
                    channel,
                    "#incidents" if channel == "slack" else "file",
                    f"{n}:{channel}",
                    f"dedup-{row_id}",
                    f"idem-{row_id}",
                    "{}",
                    status,
                    1,
                    0,
                    created,
                    created,
                    created,
                )
            )
    connection.executemany(
        "INSERT INTO notification_outbox (id, incident_id, event, channel, destination,"
        " ordering_key, dedup_key, idempotency_key, payload, status, attempts, in_doubt,"
        " next_attempt_at, created_at, updated_at) VALUES"
        " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        outbox,
    )
    connection.executemany(
        "INSERT INTO approval_request (id, incident_id, step, round, callback_id, requested_at,"
        " deadline, approvers, policy, status) VALUES (?, ?, 'rollback', 1, ?, ?, ?, ?, ?, ?)",
        [
            (
                n,
                n,
                f"cb-{n}",
                stamp(now - timedelta(minutes=10)),
                stamp(now + timedelta(minutes=-1 if n == 1 else 10)),
                '["alice"]',
                "{}",
                "pending" if n <= 3 else "approved",
            )
            for n in range(1, 1001)
        ],
    )
    for d in range(10):
        connection.execute(
            "INSERT INTO drill (name, playbook, asset_name, cron, timezone, rto_s, created_by,"
            " created_at, updated_at) VALUES (?, 'model_compromise', 'asset-1', '0 9 * * MON',"
            " 'UTC', 300, 'bench', ?, ?)",
            (f"drill-{d}", stamp(now), stamp(now)),
        )
        connection.executemany(
            "INSERT INTO drill_run (drill_name, playbook, asset_name, trigger, status,"
            " started_at, finished_at, recovery_s, rto_s, injected, steps, timeline) VALUES"
            " (?, 'model_compromise', 'asset-1', 'schedule', ?, ?, ?, ?, 300, '{}', '[]', '[]')",
            [
                (
                    f"drill-{d}",
                    ("pass", "pass", "pass", "fail", "missed")[r % 5],
                    stamp(now - timedelta(days=7 * (50 - r))),
                    stamp(now - timedelta(days=7 * (50 - r))),
                    20.0 + r,
                )
                for r in range(50)
            ],
        )
    for number in range(1, 101):
        record = json.dumps(
            {
                "number": number,
                "time": (now - timedelta(hours=101 - number)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            }
        )
        connection.execute(
            "INSERT INTO audit_checkpoint (number, seq, hash, record) VALUES (?, ?, ?, ?)",
            (number, number * 1000, "0" * 64, record),
        )
        for sink in ("file:///worm", "https://audit.example.org"):
            connection.execute(
                "INSERT INTO checkpoint_delivery (number, sink, published_at, attempts)"
                " VALUES (?, ?, ?, 1)",
                (number, sink, None if number == 100 and sink.startswith("https") else stamp(now)),
            )
    connection.execute(
        "INSERT INTO chain_head (id, seq, hash) VALUES (1, ?, ?)", (incidents * 30, "0" * 64)
    )
    connection.commit()
    connection.close()


def count_history(db: Any, path: Path) -> None:
    """The counters rearguard keeps for that history: the migration's seed, then the rest."""
    from alembic import command
    from alembic.config import Config

    from rearguard.models.db.revisions import MIGRATIONS_DIR
    from rearguard.models.metrics import counters

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = db.engine
    command.downgrade(config, "0008_version_scan")
    command.upgrade(config, "head")
    rng = random.Random(11)
    counts: list[tuple[str, Any, float]] = []
    connection = sqlite3.connect(path)
    for type_, severity, source, status in connection.execute(
        "SELECT type, severity, source, status FROM incident"
    ):
        labels = {"type": type_, "severity": severity, "source": source}
        outcome = "failed" if status == "failed" else "recovered"
        counts.append((counters.INCIDENTS_ENDED.name, {**labels, "outcome": outcome}, 1.0))
        response = {"type": type_}
        counts += counters.observation(counters.TIME_TO_CONTAIN, response, rng.expovariate(1 / 90))
        counts += counters.observation(counters.TIME_TO_RECOVER, response, rng.expovariate(1 / 600))
        for step in STEPS:
            seconds = rng.expovariate(1 / 0.4)
            counts += counters.observation(
                counters.STEP_DURATION, {"type": type_, "step": step}, seconds
            )
    connection.close()
    with db.transaction() as transaction:
        counters.add(transaction, counts)


FLOOR_QUERIES = (
    "SELECT name, labels, value FROM metric_counter",
    "SELECT status, COUNT(*) FROM incident WHERE status IN"
    " ('open', 'contained', 'recovered', 'failed') GROUP BY status",
    "SELECT COUNT(*), SUM(deadline < :now) FROM approval_request WHERE status = 'pending'",
    "SELECT channel, COUNT(*), MIN(created_at) FROM notification_outbox"
    " WHERE status IN ('pending', 'sending') GROUP BY channel",
    "SELECT seq FROM chain_head WHERE id = 1",
    "SELECT COUNT(*) FROM checkpoint_delivery WHERE published_at IS NULL",
    "SELECT name FROM drill",
    "SELECT drill_name, status, COUNT(*), MAX(finished_at) FROM drill_run"
    " WHERE status != 'running' GROUP BY drill_name, status",
    "SELECT drill_name, rto_s, recovery_s FROM drill_run WHERE id IN (SELECT MAX(id)"
    " FROM drill_run WHERE rto_s IS NOT NULL AND recovery_s IS NOT NULL GROUP BY drill_name)",
    "SELECT record FROM audit_checkpoint ORDER BY number DESC LIMIT 1",
)
RECOUNT_QUERIES = (
    "SELECT type, severity, source, COUNT(*) FROM incident GROUP BY type, severity, source",
    "SELECT type, severity, source, COUNT(*) FROM incident WHERE status = 'resolved'"
    " GROUP BY type, severity, source",
    "SELECT channel, status, COUNT(*) FROM notification_outbox GROUP BY channel, status",
)


def plain(path: Path, queries: tuple[str, ...]) -> Callable[[], None]:
    """One read transaction running ``queries`` with plain sqlite3, rows fetched."""
    connection = sqlite3.connect(path, check_same_thread=False)

    def run() -> None:
        now = stamp(datetime.now(UTC))
        connection.execute("BEGIN")
        for query in queries:
            connection.execute(query, {"now": now} if ":now" in query else {}).fetchall()
        connection.execute("COMMIT")

    return run


Measure = tuple[Callable[[], Any] | None, Callable[[], Any]]


def interleaved_medians(measures: dict[str, Measure], scrapes: int) -> dict[str, float]:
    """Each call's median wall time over ``scrapes`` turns, the calls taking turns so that
    they share whatever load the machine has; one warm-up call each first. A measure's first
    part, when given, runs untimed before each call."""
    timings: dict[str, list[float]] = {name: [] for name in measures}
    for _, call in measures.values():
        call()
    for _ in range(scrapes):
        for name, (prepare, call) in measures.items():
            if prepare is not None:
                prepare()
            started = time.perf_counter()
            call()
            timings[name].append(time.perf_counter() - started)
    return {name: statistics.median(times) * 1000 for name, times in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--scrapes", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import httpx
    import uvicorn
    from prometheus_client.exposition import choose_encoder

    from rearguard.flows.intake.app import create_app
    from rearguard.flows.intake.metrics import metrics_registry
    from rearguard.models.config.intake import IntakeSettings
    from rearguard.models.config.settings import load_settings
    from rearguard.models.metrics import counters
    from rearguard.models.runtime import Runtime

    root = Path(tempfile.mkdtemp(prefix="rearguard-bench-metrics-"))
    home = root / "home"
    home.mkdir()
    os.chdir(home)
    path = home / "rearguard.db"
    runtime = Runtime.from_settings(load_settings(home=home))
    runtime.db.upgrade()
    print(f"filling {args.incidents} incidents...", file=sys.stderr)
    fill(path, args.incidents)
    count_history(runtime.db, path)
    rows = sqlite3.connect(path).execute("SELECT COUNT(*) FROM metric_counter").fetchone()[0]

    registry = metrics_registry(runtime.db)
    encode, _ = choose_encoder("")  # the text format 0.0.4, as the route answers Prometheus
    intake = IntakeSettings(tokens=[TOKEN])
    app = create_app(runtime, intake=intake, run_playbooks=False)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    best: dict[str, float] = {}
    with httpx.Client(
        base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"}
    ) as client:
        text = client.get("/metrics").text
        size = len(text.encode())
        samples = sum(1 for line in text.splitlines() if line and not line.startswith("#"))

        def http() -> None:
            assert client.get("/metrics").status_code == 200

        def healthz() -> None:
            assert client.get("/healthz").status_code == 200

        def one_more_delivery() -> None:
            with runtime.db.transaction() as connection:
                counters.count_deliveries(connection, [("slack", "delivered")])

        measures: dict[str, Measure] = {
            "scrape_http": (None, http),
            "scrape_http_changed": (one_more_delivery, http),
            "http_floor": (None, healthz),
            "scrape_collector": (None, lambda: encode(registry)),
            "floor": (None, plain(path, FLOOR_QUERIES)),
        }
        for _ in range(args.rounds):
            for name, figure in interleaved_medians(measures, args.scrapes).items():
                best[name] = min(best.get(name, figure), figure)
        # A second's work per call, apart: it would slow whichever call came after it.
        recount: dict[str, Measure] = {"recount": (None, plain(path, RECOUNT_QUERIES))}
        best.update(interleaved_medians(recount, RECOUNT_CALLS))
    server.should_exit = True
    thread.join(30)
    common = {"incidents": args.incidents, "scrapes": args.scrapes, "counter_rows": rows}
    emit(
        "scrape_http",
        **common,
        median_ms=round(best["scrape_http"], 2),
        floor_ms=round(best["floor"], 2),
        budget_ms=BUDGET_MS,
        within_budget=best["scrape_http"] <= BUDGET_MS,
        samples=samples,
        bytes=size,
    )
    emit(
        "scrape_http_changed",
        **common,
        median_ms=round(best["scrape_http_changed"], 2),
        floor_ms=round(best["floor"], 2),
        budget_ms=BUDGET_MS,
        within_budget=best["scrape_http_changed"] <= BUDGET_MS,
    )
    emit("http_floor", **common, median_ms=round(best["http_floor"], 2))
    emit(
        "scrape_collector",
        **common,
        median_ms=round(best["scrape_collector"], 2),
        floor_ms=round(best["floor"], 2),
    )
    emit("recount", **common, median_ms=round(best["recount"], 2))
    print(
        f"GET /metrics on {args.incidents} incidents: {best['scrape_http']:.1f} ms median, "
        f"{best['scrape_http_changed']:.1f} ms after a change "
        f"(GET /healthz {best['http_floor']:.1f} ms; collector {best['scrape_collector']:.1f} "
        f"ms, plain sqlite3 floor {best['floor']:.1f} "
        f"ms; recounting the rows instead: {best['recount']:.1f} ms)",
        file=sys.stderr,
    )
    runtime.db.dispose()


if __name__ == "__main__":
    main()
