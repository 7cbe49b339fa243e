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
medians of ``--scrapes`` scrapes, the best of ``--rounds`` rounds, in milliseconds:

- ``scrape_http``: ``GET /metrics`` with a read token through the intake app in process
  (Starlette's test client: the guard, the route, a worker thread, the text exposition).
- ``scrape_collector``: ``generate_latest`` on the app's registry: the snapshot's queries
  through SQLAlchemy, and the families rendered.
- ``floor``: the same query set (the counter rows and each gauge's query) run with plain
  ``sqlite3`` on the same file, rows fetched, nothing rendered.
- ``recount`` (for reference, what the kept counters avoid): the incident families counted
  from the rows with plain ``sqlite3`` (``GROUP BY`` over the incidents and the outbox).

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
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BUDGET_MS = 50.0
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

    from rearguard.models.db.engine import MIGRATIONS_DIR
    from rearguard.models.metrics import counters

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = db.engine
    command.downgrade(config, "0007_checkpoints")
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


def median_ms(call: Callable[[], Any], scrapes: int) -> float:
    """The median wall time of ``scrapes`` calls, after one warm-up call."""
    call()
    timings = []
    for _ in range(scrapes):
        started = time.perf_counter()
        call()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--scrapes", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from fastapi.testclient import TestClient
    from prometheus_client import generate_latest

    from rearguard.flows.intake.app import create_app
    from rearguard.flows.intake.metrics import metrics_registry
    from rearguard.models.config.intake import IntakeSettings
    from rearguard.models.config.settings import load_settings
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
    intake = IntakeSettings(tokens=[TOKEN])
    headers = {"Authorization": f"Bearer {TOKEN}"}
    best: dict[str, float] = {}
    with TestClient(create_app(runtime, intake=intake, run_playbooks=False)) as client:
        text = client.get("/metrics", headers=headers).text
        size = len(text.encode())
        samples = sum(1 for line in text.splitlines() if line and not line.startswith("#"))

        def http() -> None:
            assert client.get("/metrics", headers=headers).status_code == 200

        measures = {
            "scrape_http": http,
            "scrape_collector": lambda: generate_latest(registry),
            "floor": plain(path, FLOOR_QUERIES),
            "recount": plain(path, RECOUNT_QUERIES),
        }
        for _ in range(args.rounds):
            for name, call in measures.items():
                figure = median_ms(call, args.scrapes)
                best[name] = min(best.get(name, figure), figure)
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
        "scrape_collector",
        **common,
        median_ms=round(best["scrape_collector"], 2),
        floor_ms=round(best["floor"], 2),
    )
    emit("recount", **common, median_ms=round(best["recount"], 2))
    print(
        f"GET /metrics on {args.incidents} incidents: {best['scrape_http']:.1f} ms median "
        f"(collector {best['scrape_collector']:.1f} ms, plain sqlite3 floor {best['floor']:.1f} "
        f"ms; recounting the rows instead: {best['recount']:.1f} ms)",
        file=sys.stderr,
    )
    runtime.db.dispose()


if __name__ == "__main__":
    main()
