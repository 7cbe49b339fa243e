"""Benchmark: audit-chain append and verification throughput, each against its floor.

Budgets: appending >= 2000 events/s on SQLite with durable commits (one transaction per
event); verifying >= 100000 events/s.

Figures, one JSON line each on standard output
(``{"bench": "audit_chain", "measure", "events", "seconds", "per_s", "floor_per_s", ...}``):

- ``append``: ``--events`` calls of ``rearguard.models.audit.chain.append_event``, each in its own
  ``Database.transaction()`` (so each commits durably: SQLite WAL + ``synchronous=FULL``);
  ``append_orm_session`` the same inside a full ORM ``Database.session()`` each.
  Floor: the driver alone (plain ``sqlite3`` with the same PRAGMAs, or psycopg with autocommit
  for PostgreSQL) inserting rows of the same size, one commit each.
- ``verify``: ``verify_stored_chain`` over a chain of ``--verify-events`` events (the appended
  ones, then more inserted in transactions of 5000). Floor: the same rows, already in memory,
  through ``json.loads`` + ``json.dumps`` (canonical form) + ``hashlib.sha256``, nothing else.
- ``verify_fetch`` (for reference): only reading the rows with ``iter_stored_events``.

Each measure runs ``--rounds`` times, alternating with its floor; the best of each is reported.

The database is a temporary SQLite file unless ``--database-url`` names one; a given database
must be a scratch one: the bench upgrades its schema and appends to its chain.

Run: ``.venv/bin/python bench/bench_audit_chain.py [--events 5000] [--verify-events 100000]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

APPEND_BUDGET = 2000.0
VERIFY_BUDGET = 100_000.0
BULK_BATCH = 5000
# Roughly what the playbook's events carry.
SAMPLE_DATA = {
    "step": "select_known_good",
    "selected": "v2024-06-01",
    "rejected": [{"version": "v2024-07-01", "reason": "registered at or after --since"}],
    "note": "échantillon",
}


def emit(measure: str, **fields: Any) -> None:
    """Print one figure as a JSON line on standard output."""
    print(json.dumps({"bench": "audit_chain", "measure": measure, **fields}), flush=True)


def figure(
    measure: str, *, events: int, seconds: float, floor_per_s: float, budget: float, **extra: Any
) -> None:
    """Emit one throughput figure with its floor and budget."""
    per_s = events / seconds
    emit(
        measure,
        events=events,
        seconds=round(seconds, 4),
        per_s=round(per_s, 1),
        floor_per_s=round(floor_per_s, 1),
        ratio_to_floor=round(per_s / floor_per_s, 3) if floor_per_s else None,
        budget_per_s=budget,
        within_budget=per_s >= budget,
        **extra,
    )


def append_with_rearguard(db: Any, count: int, *, orm_session: bool = False) -> float:
    """Seconds to append ``count`` events, one durable transaction each.

    By default each event gets ``Database.transaction()`` (a plain connection, the path for
    writers that only log); with ``orm_session`` a full ``Database.session()``, as a step that
    also changes ORM state pays.
    """
    from rearguard.models.audit.chain import append_event
    from rearguard.models.enums import EventKind

    opener = db.session if orm_session else db.transaction
    started = time.perf_counter()
    for i in range(count):
        with opener() as target:
            append_event(
                target,
                kind=EventKind.OUTCOME,
                action="bench.append",
                actor="playbook:model_compromise",
                incident_id=1,
                asset="classifier",
                version="v2024-06-01",
                data={**SAMPLE_DATA, "i": i},
            )
    return time.perf_counter() - started


def _floor_row(i: int) -> tuple[Any, ...]:
    data = json.dumps({**SAMPLE_DATA, "i": i}, sort_keys=True, separators=(",", ":"))
    fake = hashlib.sha256(str(i).encode()).hexdigest()
    return (
        i,
        "2026-11-25T19:46:00.000000Z",
        1,
        "outcome",
        "bench.append",
        "playbook:model_compromise",
        "classifier",
        "v2024-06-01",
        data,
        fake,
        fake,
    )


_FLOOR_TABLE = """CREATE TABLE bench_floor_event (
    seq BIGINT PRIMARY KEY, ts VARCHAR(32), incident_id INTEGER, kind VARCHAR(16),
    action VARCHAR(64), actor VARCHAR(128), asset VARCHAR(128), version VARCHAR(128),
    data TEXT, prev_hash VARCHAR(64), hash VARCHAR(64))"""


def append_floor_sqlite(directory: Path, count: int) -> float:
    """Seconds for plain sqlite3 (WAL, synchronous=FULL) to insert ``count`` rows, one commit
    each, in a file beside the benchmarked database."""
    path = directory / f"floor-{os.getpid()}.db"
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute(_FLOOR_TABLE)
        insert = f"INSERT INTO bench_floor_event VALUES ({', '.join('?' * 11)})"
        rows = [_floor_row(i) for i in range(count)]
        started = time.perf_counter()
        for row in rows:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(insert, row)
            connection.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        connection.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def append_floor_postgres(url: str, count: int) -> float:
    """Seconds for psycopg alone to insert ``count`` rows, one autocommit each."""
    import psycopg

    plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute("DROP TABLE IF EXISTS bench_floor_event")
        connection.execute(_FLOOR_TABLE)
        insert = f"INSERT INTO bench_floor_event VALUES ({', '.join(['%s'] * 11)})"
        rows = [_floor_row(i) for i in range(count)]
        try:
            started = time.perf_counter()
            for row in rows:
                connection.execute(insert, row)
            return time.perf_counter() - started
        finally:
            connection.execute("DROP TABLE bench_floor_event")


def bulk_extend_chain(db: Any, count: int) -> None:
    """Append ``count`` valid events fast: hashes computed here, inserted 5000 per transaction."""
    from datetime import UTC, datetime

    from sqlalchemy import insert

    from rearguard.models.audit.chain import GENESIS_HASH, canonical_json, event_hash, format_ts
    from rearguard.models.db.tables import ChainHead, TimelineEvent

    with db.read_session() as session:
        head = session.get(ChainHead, 1)
        seq, prev = (head.seq, head.hash) if head else (0, GENESIS_HASH)
    ts = format_ts(datetime.now(UTC))
    done = 0
    while done < count:
        rows = []
        for _ in range(min(BULK_BATCH, count - done)):
            seq += 1
            fields = {
                "seq": seq,
                "ts": ts,
                "incident_id": 1,
                "kind": "outcome",
                "action": "bench.verify",
                "actor": "playbook:model_compromise",
                "asset": "classifier",
                "version": "v2024-06-01",
                "data": {**SAMPLE_DATA, "i": seq},
                "prev_hash": prev,
            }
            prev = event_hash(fields)
            rows.append({**fields, "data": canonical_json(fields["data"]), "hash": prev})
        with db.session() as session:
            session.execute(insert(TimelineEvent), rows)
            stored = session.get(ChainHead, 1) or ChainHead(id=1, seq=0, hash=GENESIS_HASH)
            stored.seq, stored.hash = seq, prev
            session.add(stored)
        done += len(rows)


def verify_with_rearguard(db: Any) -> tuple[int, float]:
    """(events verified, seconds) of ``verify_stored_chain`` over the whole chain."""
    from rearguard.models.audit.chain import verify_stored_chain

    with db.read_session() as session:
        started = time.perf_counter()
        report = verify_stored_chain(session)
        seconds = time.perf_counter() - started
    if not report.ok:
        raise SystemExit(f"the benchmark chain does not verify: {report.problem}")
    return report.events, seconds


def fetch_rows(db: Any) -> tuple[list[dict[str, Any]], float]:
    """Every stored event as iter_stored_events yields it, and the seconds it took."""
    from rearguard.models.audit.chain import iter_stored_events

    with db.read_session() as session:
        started = time.perf_counter()
        rows = list(iter_stored_events(session))
        return rows, time.perf_counter() - started


def verify_floor(rows: list[dict[str, Any]]) -> float:
    """Seconds for json.loads + canonical json.dumps + sha256 of every row, nothing else."""
    fields = ("seq", "ts", "incident_id", "kind", "action", "actor", "asset", "version")
    dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
    sha256 = hashlib.sha256
    started = time.perf_counter()
    for row in rows:
        payload = {name: row[name] for name in fields}
        payload["data"] = json.loads(row["data"])
        payload["prev_hash"] = row["prev_hash"]
        sha256(dumps(payload).encode()).hexdigest()
    return time.perf_counter() - started


def main() -> None:
    """Parse the arguments, run both measures and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000, help="events appended one by one")
    parser.add_argument(
        "--verify-events", type=int, default=100_000, help="events in the verified chain"
    )
    parser.add_argument(
        "--database-url", default=None, help="a scratch database (default: temporary SQLite)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; best kept")
    args = parser.parse_args()

    from rearguard.models.db.engine import Database

    scratch = Path(tempfile.mkdtemp(prefix="rearguard-bench-audit-"))
    url = args.database_url or f"sqlite:///{scratch / 'rearguard.db'}"
    db = Database(url)
    try:
        db.upgrade()
        backend = "sqlite" if db.is_sqlite else db.engine.dialect.name
        # Rounds alternate between rearguard and its floor, and the best of each is kept, so
        # that load from other processes on the machine hits both alike.
        append_s: list[float] = []
        orm_s: list[float] = []
        append_floor_s: list[float] = []
        for _ in range(args.rounds):
            if db.is_sqlite:
                db_dir = Path(db.url.split("///", 1)[1]).resolve().parent
                append_floor_s.append(append_floor_sqlite(db_dir, args.events))
            else:
                append_floor_s.append(append_floor_postgres(db.url, args.events))
            append_s.append(append_with_rearguard(db, args.events))
            orm_s.append(append_with_rearguard(db, args.events, orm_session=True))
        for measure, seconds in (("append", min(append_s)), ("append_orm_session", min(orm_s))):
            figure(
                measure,
                events=args.events,
                seconds=seconds,
                floor_per_s=args.events / min(append_floor_s),
                budget=APPEND_BUDGET,
                database=backend,
                rounds=args.rounds,
            )

        bulk_extend_chain(db, max(0, args.verify_events - 2 * args.events * args.rounds))
        rows, fetch_s = fetch_rows(db)
        verify_s: list[float] = []
        verify_floor_s: list[float] = []
        for _ in range(args.rounds):
            events, seconds = verify_with_rearguard(db)
            verify_s.append(seconds)
            verify_floor_s.append(verify_floor(rows))
        figure(
            "verify",
            events=events,
            seconds=min(verify_s),
            floor_per_s=len(rows) / min(verify_floor_s),
            budget=VERIFY_BUDGET,
            database=backend,
            rounds=args.rounds,
        )
        emit(
            "verify_fetch",
            events=len(rows),
            seconds=round(fetch_s, 4),
            per_s=round(len(rows) / fetch_s, 1),
            database=backend,
        )
    finally:
        db.dispose()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
