"""Benchmark: a model_compromise drill against the real playbook, on the same 100 MiB model.

Budget: a drill of ``model_compromise`` on a 100 MiB model takes at most 2x the time of the
real playbook on the same model, both measured in this run (medians).

Every run gets a fresh home prepared by ``bench_playbook.prepare_home`` (three versions of
``--size-mib`` random weights, v1 and v2 approved, v3 in production with its stored weights
tampered); preparing it is not timed. A local Prefect server is started first, as in
``bench_playbook``; rounds alternate one real run and one drill run.

Figures, one JSON line each on standard output:

- ``real_playbook``: ``open_and_record`` + ``run_playbook`` on the home (the floor of a drill:
  the same playbook on the same model, for real).
- ``drill``: ``run_drill`` on the home, end to end: sandbox built (database migrated, rows
  copied, files hard-linked), compromise injected (v3's weights rewritten in the sandbox),
  the playbook on the sandbox, the result recorded and the drill_result notification sent;
  with ``ratio_to_real`` (the budget is 2.0) and the median ``sandbox_s`` and ``inject_s``
  measured apart on further fresh homes.
- ``sandbox_floor_cp_al``: ``cp -al`` of the home's store, the standard tool doing the
  sandbox's file work (hard links) alone; with ``--registry mlflow``, ``sandbox_floor_cp``:
  ``cp -a`` of the home's MLflow artifacts (a sandbox there holds copies, not links).

``--registry mlflow`` gives every home an MLflow registry of its own (a SQLite tracking store
and its artifacts in the home).

Run: ``.venv/bin/python bench/bench_drill.py [--size-mib 100] [--runs 3] [--registry mlflow]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_playbook import (
    ASSET,
    Workspace,
    make_sources,
    open_incident,
    open_runtime,
    remove_tree,
    start_server,
    stop_group,
    summary,
)

BUDGET_RATIO = 2.0


def emit(figure: str, **fields: Any) -> None:
    """Print one figure as a JSON line on standard output."""
    load = round(os.getloadavg()[0], 2)
    print(json.dumps({"bench": "drill", "figure": figure, **fields, "load_1m": load}), flush=True)


def note(message: str) -> None:
    """Progress for the human watching, on standard error."""
    print(f"# {message}", file=sys.stderr, flush=True)


def add_weekly_drill(rt: Any) -> None:
    """Schedule the drill the runs use (not timed)."""
    from rearguard.models.drills.service import add_drill

    with rt.db.session() as session:
        add_drill(
            session=session,
            name="weekly",
            playbook="model_compromise",
            asset=ASSET,
            cron="0 9 * * MON",
            timezone="UTC",
            rto_s=300.0,
            actor="bench",
        )


def time_real(workspace: Workspace) -> float:
    """One real playbook run on a fresh home."""
    from rearguard.flows.run_playbook import run_playbook

    rt = open_runtime(workspace.fresh_home())
    started = time.perf_counter()
    ended = run_playbook(runtime=rt, incident_id=open_incident(rt))
    elapsed = time.perf_counter() - started
    assert str(ended.status) == "recovered", ended.reason
    rt.db.dispose()
    return elapsed


def time_drill(workspace: Workspace) -> float:
    """One drill run on a fresh home."""
    from rearguard.flows.drills.run import run_drill

    rt = open_runtime(workspace.fresh_home())
    add_weekly_drill(rt)
    started = time.perf_counter()
    run = run_drill(runtime=rt, name="weekly")
    elapsed = time.perf_counter() - started
    assert run.status == "pass", run.reason
    rt.db.dispose()
    return elapsed


def time_sandbox_parts(workspace: Workspace) -> tuple[float, float]:
    """Building a sandbox and injecting the compromise, timed apart on a fresh home."""
    from rearguard.models.drills.sandbox import create_sandbox
    from rearguard.models.incidents.types import INCIDENT_TYPES

    rt = open_runtime(workspace.fresh_home())
    started = time.perf_counter()
    sandbox = create_sandbox(runtime=rt, asset=ASSET, name="bench")
    built = time.perf_counter()
    INCIDENT_TYPES["model_compromise"].drill_rule().inject(
        playbook="model_compromise", runtime=sandbox.runtime, asset=ASSET
    )
    injected = time.perf_counter()
    sandbox.close(remove=True)
    rt.db.dispose()
    return built - started, injected - built


def time_floor(workspace: Workspace, registry: str) -> float:
    """``cp -al`` of a fresh home's store; ``cp -a`` of its MLflow artifacts."""
    home = workspace.fresh_home()
    if registry == "mlflow":
        argv = ["cp", "-a", str(home / "mlflow-artifacts"), str(home / "artifacts-copy")]
    else:
        argv = ["cp", "-al", str(home / "store"), str(home / "store-links")]
    started = time.perf_counter()
    subprocess.run(argv, check=True)
    return time.perf_counter() - started


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--registry", choices=["local", "mlflow"], default="local")
    args = parser.parse_args()
    config = (
        '[registry]\nbackend = "mlflow"\ntracking_uri = "sqlite:///{home}/mlflow.db"\n'
        if args.registry == "mlflow"
        else ""
    )
    root = Path(tempfile.mkdtemp(prefix="rearguard-bench-drill-"))
    server = None
    try:
        note(f"writing {3 * args.size_mib} MiB of sources")
        workspace = Workspace(
            root / "homes", make_sources(root / "sources", args.size_mib), config=config
        )
        (root / "homes").mkdir()
        note("starting a Prefect server")
        (root / "prefect").mkdir()
        server, url, _startup = start_server(root / "prefect", None)
        os.environ["PREFECT_API_URL"] = url
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        note("warm-up: one real run, one drill")
        time_real(workspace)
        time_drill(workspace)
        real: list[float] = []
        drill: list[float] = []
        for number in range(args.runs):
            real.append(time_real(workspace))
            drill.append(time_drill(workspace))
            note(f"round {number + 1}: real {real[-1]:.3f}s, drill {drill[-1]:.3f}s")
        parts = [time_sandbox_parts(workspace) for _ in range(args.runs)]
        floor = [time_floor(workspace, args.registry) for _ in range(args.runs)]
        ratio = statistics.median(drill) / statistics.median(real)
        emit("real_playbook", size_mib=args.size_mib, registry=args.registry, **summary(real))
        emit(
            "drill",
            size_mib=args.size_mib,
            registry=args.registry,
            **summary(drill),
            ratio_to_real=round(ratio, 2),
            budget_ratio=BUDGET_RATIO,
            within_budget=ratio <= BUDGET_RATIO,
            sandbox_s=round(statistics.median(p[0] for p in parts), 3),
            inject_s=round(statistics.median(p[1] for p in parts), 3),
        )
        emit(
            "sandbox_floor_cp" if args.registry == "mlflow" else "sandbox_floor_cp_al",
            size_mib=args.size_mib,
            **summary(floor),
        )
        note(
            f"drill {statistics.median(drill):.3f}s vs real {statistics.median(real):.3f}s: "
            f"{ratio:.2f}x (budget {BUDGET_RATIO}x)"
        )
    finally:
        if server is not None:
            stop_group(server)
        remove_tree(root)


if __name__ == "__main__":
    main()
