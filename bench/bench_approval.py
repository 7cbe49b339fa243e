"""Benchmark: an approval given, to the next step running.

Budget: with a Prefect server running, the median time from a person's approval to the
playbook's next step (``rollback``) starting is at most 2 s.

The bench starts its own ``prefect server start`` (``bench_playbook.start_server``), makes one
home (SQLite) whose policy makes every rollback wait for ``alice``, and for each run registers
a small fresh asset (v1, v2 known-good, a tampered v3 in production), opens an incident and
runs the real ``model_compromise`` playbook in a thread. When the run is Paused in Prefect, the
clock starts and the approval is given; it stops when the ``rollback`` step reports its start.

Figures, one JSON line each on standard output:

- ``cli_answer``: ``rearguard.flows.approvals.decide.answer``, what ``rearguard approve --key``
  does in process: sign the decision with alice's key, record it (the signature checked against
  her registered key), then resume the Prefect run with the answer.
- ``db_decision``: ``rearguard.models.incidents.approvals.decide`` alone, what a Slack callback
  does: the paused run notices the decision in the database (``[approvals] poll_s``).
- ``floor_event``: the same hand-off between two threads through a ``threading.Event``.
- ``floor_db_poll``: a thread polling the request's row every ``poll_s`` until it is decided,
  with the decision recorded by ``decide`` at a random point of the interval: the database
  part of ``db_decision`` (about ``poll_s / 2`` plus one ``decide``).

Run: ``.venv/bin/python bench/bench_approval.py [--runs 7] [--poll-s 0.5]``
"""

from __future__ import annotations

import argparse
import contextvars
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_playbook import start_server, stop_group

BUDGET_S = 2.0


def emit(figure: str, seconds: list[float], **fields: Any) -> None:
    """Print one figure (median, min, max over the runs) as a JSON line."""
    record = {
        "bench": "approval",
        "figure": figure,
        "median_s": round(statistics.median(seconds), 4),
        "min_s": round(min(seconds), 4),
        "max_s": round(max(seconds), 4),
        "runs": len(seconds),
        **fields,
        "load_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(record), flush=True)


def note(message: str) -> None:
    """Progress for the human watching, on standard error."""
    print(f"# {message}", file=sys.stderr, flush=True)


POLICY = """
[notifications]
channels = ["file"]

[approvals]
poll_s = {poll_s}

[approvals.keys]
alice = "{alice_key}"

[[approvals.rules]]
asset = "bench-*"
steps = ["rollback"]
approvers = ["alice"]
timeout_s = 600
"""


def add_asset(rt: Any, root: Path, name: str) -> None:
    """v1..v3 of a small model, v1 and v2 known-good, v3 in production and tampered with."""
    from rearguard.models.assets.versions import approve_version, promote_version, register_version
    from rearguard.models.enums import AssetKind

    for label in ("v1", "v2", "v3"):
        source = root / "sources" / name / label
        source.mkdir(parents=True)
        (source / "weights.bin").write_bytes(f"{name} {label}".encode() * 1024)
        register_version(
            db=rt.db,
            registry=rt.registry,
            name=name,
            source=source,
            label=label,
            kind=AssetKind.MODEL,
            actor="bench",
        )
    for label in ("v1", "v2"):
        approve_version(db=rt.db, registry=rt.registry, name=name, label=label, by="bench")
    promote_version(
        db=rt.db, registry=rt.registry, name=name, label="v3", alias="production", actor="bench"
    )
    for path in rt.registry.version_files(asset=name, label="v3").values():
        path.chmod(0o644)
        path.write_bytes(b"tampered")
        path.chmod(0o444)


def write_key(path: Path) -> str:
    """Write a new Ed25519 private key (PEM, mode 600); return its public half (OpenSSH)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.touch(mode=0o600)
    path.write_bytes(pem)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return public.decode()


def paused_request(rt: Any, incident_id: int) -> Any:
    """Wait until the incident's playbook is Paused in Prefect; return its approval request."""
    from uuid import UUID

    from prefect import get_client

    from rearguard.models.incidents.approvals import PENDING, list_requests

    deadline = time.monotonic() + 120
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            with rt.db.read_session() as session:
                found = list_requests(session=session, incident_id=incident_id, status=PENDING)
            if found and found[0].flow_run_id:
                state = client.read_flow_run(UUID(found[0].flow_run_id)).state
                if state is not None and state.is_paused():
                    return found[0]
            time.sleep(0.05)
    raise SystemExit(f"incident {incident_id} never paused for approval")


def approval_latency(rt: Any, root: Path, index: int, give: Callable[[int], None]) -> float:
    """One run: approve when Paused, return the seconds until ``rollback`` starts."""
    from rearguard.flows.opening import open_and_record
    from rearguard.flows.run_playbook import run_playbook
    from rearguard.models.enums import Severity

    name = f"bench-{index:02d}"
    add_asset(rt, root, name)
    incident_id = open_and_record(
        runtime=rt,
        type="model_compromise",
        asset=name,
        severity=Severity.SEV2,
        since=None,
        summary="bench",
        actor="bench",
    )
    started = threading.Event()
    mark: list[float] = []

    def reporter(step: str, phase: str, _message: str) -> None:
        if step == "rollback" and phase == "start" and not mark:
            mark.append(time.perf_counter())
            started.set()

    rt.reporters.append(reporter)
    context = contextvars.copy_context()
    runner = threading.Thread(
        target=context.run, args=(run_playbook,), kwargs={"runtime": rt, "incident_id": incident_id}
    )
    runner.start()
    try:
        paused_request(rt, incident_id)
        given = time.perf_counter()
        give(incident_id)
        if not started.wait(60):
            raise SystemExit(f"incident {incident_id}: rollback never started")
        runner.join(120)
    finally:
        rt.reporters.remove(reporter)
    return mark[0] - given


def floor_event(runs: int) -> list[float]:
    """A waiting thread woken through a threading.Event."""

    def wait(signal: threading.Event, woke: list[float]) -> None:
        signal.wait()
        woke.append(time.perf_counter())

    seconds = []
    for _ in range(runs):
        signal, woke = threading.Event(), []
        waiter = threading.Thread(target=wait, args=(signal, woke))
        waiter.start()
        time.sleep(0.05)
        given = time.perf_counter()
        signal.set()
        waiter.join()
        seconds.append(woke[0] - given)
    return seconds


def floor_db_poll(rt: Any, runs: int, poll_s: float) -> list[float]:
    """A thread polling an approval request's row every ``poll_s`` until ``decide`` lands."""
    from rearguard.flows.opening import open_and_record
    from rearguard.models.enums import Severity
    from rearguard.models.incidents.approval_proofs import Proof
    from rearguard.models.incidents.approvals import PENDING, decide, get_request, open_request

    rule = rt.settings.approvals.rules[0]

    def poll(request_id: int, woke: list[float]) -> None:
        while True:
            with rt.db.read_session() as session:
                if get_request(session=session, request_id=request_id).status != PENDING:
                    woke.append(time.perf_counter())
                    return
            time.sleep(poll_s)

    seconds = []
    for _ in range(runs):
        incident_id = open_and_record(
            runtime=rt,
            type="model_compromise",
            asset="bench-01",
            severity=Severity.SEV2,
            since=None,
            summary="floor",
            actor="bench",
        )
        request = open_request(
            db=rt.db,
            approvals=rt.settings.approvals,
            incident_id=incident_id,
            step="rollback",
            rule=rule,
            actor="bench",
        )
        woke: list[float] = []
        poller = threading.Thread(target=poll, args=(int(request.id or 0), woke))
        poller.start()
        # At a random point of the poll interval, as a person's decision arrives.
        time.sleep(random.uniform(0.05, 0.05 + poll_s))
        given = time.perf_counter()
        decide(
            db=rt.db,
            approvals=rt.settings.approvals,
            approver="alice",
            approve=True,
            via="bench",
            proof=Proof(slack=True),
            incident_id=incident_id,
        )
        poller.join()
        seconds.append(woke[0] - given)
    return seconds


def main() -> None:
    """Measure and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--poll-s", type=float, default=0.5)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="rearguard-bench-approval-"))
    (root / "prefect-home").mkdir()
    server, api_url, startup_s = start_server(root / "prefect-home", None)
    note(f"prefect server healthy after {startup_s:.1f} s at {api_url}")
    os.environ.update(
        PREFECT_API_URL=api_url,
        PREFECT_HOME=str(root / "prefect-client-home"),
        PREFECT_LOGGING_LEVEL="WARNING",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    try:
        from rearguard.flows.approvals.decide import answer
        from rearguard.models.config.settings import load_settings
        from rearguard.models.incidents.approval_proofs import Proof
        from rearguard.models.incidents.approvals import decide
        from rearguard.models.runtime import Runtime

        home = root / "home"
        home.mkdir()
        key_path = root / "alice.pem"
        alice_key = write_key(key_path)
        (home / "rearguard.toml").write_text(POLICY.format(poll_s=args.poll_s, alice_key=alice_key))
        os.chdir(home)
        rt = Runtime.from_settings(load_settings(home=home))

        def by_cli(incident_id: int) -> None:
            answer(
                runtime=rt, incident_id=incident_id, approver="alice", approve=True, key=key_path
            )

        def by_db(incident_id: int) -> None:
            decide(
                db=rt.db,
                approvals=rt.settings.approvals,
                approver="alice",
                approve=True,
                via="bench",
                proof=Proof(slack=True),
                incident_id=incident_id,
            )

        index = 0
        figures: dict[str, list[float]] = {"cli_answer": [], "db_decision": []}
        for run in range(args.runs + 1):  # run 0 warms up (imports, first flow)
            for figure, give in (("cli_answer", by_cli), ("db_decision", by_db)):
                index += 1
                seconds = approval_latency(rt, root, index, give)
                note(f"run {run} {figure}: {seconds:.3f} s")
                if run:
                    figures[figure].append(seconds)
        for figure, seconds in figures.items():
            emit(figure, seconds, budget_s=BUDGET_S, poll_s=args.poll_s)
        emit("floor_event", floor_event(args.runs))
        emit("floor_db_poll", floor_db_poll(rt, args.runs, args.poll_s), poll_s=args.poll_s)
        rt.db.dispose()
        note(
            f"approval to next step: {statistics.median(figures['cli_answer']):.3f} s (CLI), "
            f"{statistics.median(figures['db_decision']):.3f} s (database); budget {BUDGET_S} s"
        )
    finally:
        stop_group(server)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
