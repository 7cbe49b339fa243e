"""Benchmark: signed audit checkpoints, each figure against its floor in the same run.

Budgets:

- signing and publishing a checkpoint to a file sink adds at most 5 ms to an incident's end
  (floor: one Ed25519 signature of a checkpoint's payload);
- ``audit verify --checkpoints`` on ``--events`` events (1,000,000 by default) takes at most
  1.5x plain ``audit verify`` on the same database.

Figures, one JSON line each on standard output (``{"bench": "checkpoints", "figure", ...}``):

- ``floor_ed25519_sign``: ``Ed25519PrivateKey.sign`` of a payload the size of a checkpoint's.
- ``incident_end_checkpoint``: what a playbook's end waits for: ``Runtime.request_checkpoint``
  (``playbook_guard``'s call; the worker's thread was started when the run began), with one
  ``file://`` sink, after an incident of ``--incident-events`` events; ``--rounds``
  incidents, median, 95th percentile and max, against the floor.
- ``background_checkpoint`` (reference): from that request until the runtime's background
  checkpointer has finished its pass (``CheckpointWorker.flush``): verify the stretch since the
  last checkpoint, digest the incident's events, sign, store durably, claim, append and fsync
  the line, mark it published. Nobody waits for it but a process that exits.
- ``floor_durable_commit_and_fsync`` (reference): one event appended in a durable transaction and
  one line appended to a file and fsynced, interleaved with the rounds: the disk work a
  durable checkpoint cannot avoid, which on a shared disk dominates the background pass.
- ``plain_verify`` and ``verify_checkpoints``: ``verify_stored_chain`` and
  ``parse_checkpoint_lines`` + ``check_against_checkpoints`` (what ``audit verify
  --checkpoints`` runs after start-up) over a chain of ``--events`` events with a checkpoint
  every ``--every`` events, both in this process, alternating, best of ``--verify-rounds``;
  ``ratio`` is their quotient (budget: <= 1.5).

The chain is built fast (hashes computed here, 5000 rows per transaction) in a temporary
SQLite database unless ``--database-url`` names a scratch one (its schema is upgraded and its
chain appended to).

Run: ``.venv/bin/python bench/bench_checkpoints.py [--events 1000000] [--every 1000]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BATCH = 5000
EVENT_BUDGET_MS = 5.0
VERIFY_BUDGET_RATIO = 1.5
SAMPLE_DATA = {
    "step": "select_known_good",
    "selected": "v2024-06-01",
    "rejected": [{"version": "v2024-07-01", "reason": "registered at or after --since"}],
}


def emit(figure: str, **fields: Any) -> None:
    """Print one figure as a JSON line, with the machine's 1-minute load."""
    record = {"bench": "checkpoints", "figure": figure, **fields}
    record["load_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(record), flush=True)


def extend_chain(db: Any, count: int, *, incident_size: int = 100) -> None:
    """Append ``count`` valid events fast, ``incident_size`` per incident."""
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
        for _ in range(min(BATCH, count - done)):
            seq += 1
            fields = {
                "seq": seq,
                "ts": ts,
                "incident_id": seq // incident_size + 1,
                "kind": "outcome",
                "action": "bench.checkpoint",
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


def write_key(directory: Path) -> tuple[Path, Any]:
    """A fresh Ed25519 key, mode 600; the key object too."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    path = directory / "signing.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path, key


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def durable_commit_and_fsync(db: Any, path: Path) -> None:
    """The disk floor: one event appended durably, one line appended and fsynced."""
    from rearguard.models.audit.chain import append_event
    from rearguard.models.enums import EventKind

    with db.transaction() as connection:
        append_event(connection, kind=EventKind.STATE, action="bench.floor", actor="bench")
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, b"x" * 900 + b"\n")
        os.fdatasync(descriptor)
    finally:
        os.close(descriptor)


def bench_incident_end(
    settings: Any, db: Any, key: Any, sink_path: Path, args: argparse.Namespace
) -> None:
    """A checkpoint asked for at each of ``--rounds`` incidents' ends, against its floors."""
    from rearguard.models.audit.chain import append_event
    from rearguard.models.audit.checkpoints import make_checkpoint
    from rearguard.models.enums import EventKind
    from rearguard.models.runtime import Runtime, open_registry

    runtime = Runtime(settings=settings, db=db, registry=open_registry(settings))
    runtime.checkpoints.start(settings=settings)  # as playbook_guard does when a run starts
    make_checkpoint(db=db, settings=settings.audit, reason="bench start")
    payload = b"x" * 900  # about a checkpoint's signed bytes after a short incident
    floors = [timed(lambda: key.sign(payload)) for _ in range(200)]
    floor_ms = statistics.median(floors) * 1000
    emit("floor_ed25519_sign", median_ms=round(floor_ms, 4), best_ms=round(min(floors) * 1000, 4))
    ends, passes, disk_floors = [], [], []
    for round_number in range(args.rounds):
        disk_floors.append(timed(lambda: durable_commit_and_fsync(db, sink_path)))
        incident_id = 10_000_000 + round_number
        for i in range(args.incident_events):
            with db.session() as session:
                append_event(
                    session,
                    kind=EventKind.OUTCOME,
                    action="bench.step",
                    actor="playbook:model_compromise",
                    incident_id=incident_id,
                    data={**SAMPLE_DATA, "i": i},
                )
        started = time.perf_counter()
        runtime.request_checkpoint(f"incident {incident_id} run ended")
        ends.append(time.perf_counter() - started)
        runtime.checkpoints.flush()
        passes.append(time.perf_counter() - started)
        done = runtime.checkpoints.last
        assert done is not None and done.checkpoint is not None, done
        assert done.checkpoint.seq > 0 and done.report is not None and not done.report.failing
    median_ms = statistics.median(ends) * 1000
    emit(
        "incident_end_checkpoint",
        incident_events=args.incident_events,
        rounds=args.rounds,
        median_ms=round(median_ms, 4),
        p95_ms=round(statistics.quantiles(ends, n=20)[-1] * 1000, 4),
        max_ms=round(max(ends) * 1000, 4),
        floor_ms=round(floor_ms, 4),
        above_floor_ms=round(median_ms - floor_ms, 4),
        budget_ms=EVENT_BUDGET_MS,
        within_budget=median_ms <= EVENT_BUDGET_MS,
    )
    emit(
        "background_checkpoint",
        median_ms=round(statistics.median(passes) * 1000, 3),
        max_ms=round(max(passes) * 1000, 3),
        note="request to the end of the background pass (made, stored, published); the "
        "incident's end does not wait for it",
    )
    emit(
        "floor_durable_commit_and_fsync",
        median_ms=round(statistics.median(disk_floors) * 1000, 3),
        note="one durable commit of an event and one append+fsync of a line: the disk "
        "work a durable checkpoint cannot avoid",
    )


def bench_verify(settings: Any, db: Any, sink: Path, public: Any, args: argparse.Namespace) -> None:
    """Plain verify against verify --checkpoints on a long chain."""
    from rearguard.models.audit.chain import verify_stored_chain
    from rearguard.models.audit.checkpoints import (
        check_against_checkpoints,
        make_checkpoint,
        parse_checkpoint_lines,
        publish_pending,
        read_checkpoint_lines,
    )
    from rearguard.models.db.tables import ChainHead

    with db.read_session() as session:
        head = session.get(ChainHead, 1)
        have = head.seq if head else 0
    while have < args.events:
        step = min(args.every, args.events - have)
        extend_chain(db, step)
        have += step
        make_checkpoint(db=db, settings=settings.audit, reason="bench")
    publish_pending(db=db, settings=settings)

    def plain() -> None:
        with db.read_session() as session:
            assert verify_stored_chain(session).ok

    def with_checkpoints() -> None:
        found, problem = parse_checkpoint_lines(read_checkpoint_lines(str(sink)), public)
        assert problem is None
        with db.read_session() as session:
            assert check_against_checkpoints(session, found).ok

    plains, checked = [], []
    for round_number in range(args.verify_rounds):
        # Alternate which goes first, so the page cache and the load favour neither.
        if round_number % 2:
            checked.append(timed(with_checkpoints))
            plains.append(timed(plain))
        else:
            plains.append(timed(plain))
            checked.append(timed(with_checkpoints))
    checkpoints = len(sink.read_text().splitlines())
    emit("plain_verify", events=have, best_s=round(min(plains), 3))
    ratio = min(checked) / min(plains)
    emit(
        "verify_checkpoints",
        events=have,
        checkpoints=checkpoints,
        best_s=round(min(checked), 3),
        plain_best_s=round(min(plains), 3),
        ratio=round(ratio, 3),
        budget_ratio=VERIFY_BUDGET_RATIO,
        within_budget=ratio <= VERIFY_BUDGET_RATIO,
    )


def main() -> None:
    """Parse the arguments, build the database, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--every", type=int, default=1000, help="a checkpoint every N events")
    parser.add_argument("--incident-events", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=30, help="incidents ended")
    parser.add_argument("--verify-rounds", type=int, default=3)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

    from rearguard.models.audit.checkpoints import load_public_key
    from rearguard.models.config.audit import AuditSettings
    from rearguard.models.config.settings import load_settings
    from rearguard.models.db.engine import Database

    scratch = Path(tempfile.mkdtemp(prefix="rearguard-bench-checkpoints-"))
    try:
        key_path, key = write_key(scratch)
        public_path = scratch / "signing.pub.pem"
        from cryptography.hazmat.primitives import serialization

        public_path.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        sink = scratch / "checkpoints.jsonl"
        url = args.database_url or f"sqlite:///{scratch / 'rearguard.db'}"
        base = load_settings(home=scratch / "home", database_url=url)
        audit = AuditSettings(signing_key=key_path, checkpoint_sinks=[f"file://{sink}"])
        import dataclasses

        settings = dataclasses.replace(base, audit=audit)
        db = Database(url)
        db.ensure_current(auto_upgrade=True)
        try:
            bench_verify(settings, db, sink, load_public_key(public_path), args)
            bench_incident_end(settings, db, key, scratch / "floor.jsonl", args)
        finally:
            db.dispose()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
