"""Benchmark: rearguard commands as a user runs them, each beside its floor in the same run.

One function per measurement; each prints one JSON line (``figure``, its ``floor``, their
``ratio`` and the ``budget`` ratio) on standard output. The scenario is bench_playbook's: a
home holding one model asset (``--size-mib`` weights per version), v1 and v2 approved, v3 in
production with its stored weights tampered with.

- ``second_command_without_serve``: no ``rearguard serve``, no ``PREFECT_API_URL``: in a
  fresh home (and a fresh PREFECT_HOME), ``rearguard incident open`` once (it starts the
  local Prefect server in the background; reported as ``first_s``), then, production's
  weights tampered with again, ``rearguard incident open --new`` (timed: interpreter start to
  exit). Floor: the same playbook run in process (``open_and_record`` + ``run_playbook``)
  against that server, already warm. Budget: 3x.

Run: ``.venv/bin/python bench/bench_cli.py [--size-mib 4] [--runs 2]``
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
import time
from pathlib import Path
from typing import Any

from bench_playbook import (
    ASSET,
    REARGUARD,
    Workspace,
    incident_status,
    make_sources,
    note,
    open_runtime,
    remove_tree,
    run_prefect,
)

SECOND_COMMAND_BUDGET = 3.0


def emit(figure: str, **fields: Any) -> None:
    """Print one figure as a JSON line on standard output."""
    load = round(os.getloadavg()[0], 2)
    print(json.dumps({"bench": "cli", "figure": figure, **fields, "load_1m": load}), flush=True)


def tamper_production(home: Path) -> None:
    """Alter the stored weights of the version production serves now."""
    rt = open_runtime(home)
    try:
        served = rt.registry.read_alias(asset=ASSET, alias=rt.settings.registry.alias)
        weights = rt.registry.version_location(asset=ASSET, label=served) / "weights.safetensors"
    finally:
        rt.db.dispose()
    weights.chmod(0o644)
    with weights.open("r+b") as handle:
        handle.write(b"\x00tampered again\x00")
    weights.chmod(0o444)


def open_incident(home: Path, env: dict[str, str], *extra: str) -> float:
    """``rearguard incident open`` on ``home`` as a subprocess; its wall time."""
    started = time.perf_counter()
    done = subprocess.run(
        [
            str(REARGUARD),
            "incident",
            "open",
            "--type",
            "model_compromise",
            "--asset",
            ASSET,
            *extra,
        ],
        env={**env, "REARGUARD_HOME": str(home)},
        cwd=home,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or "recovered" not in done.stdout:
        raise SystemExit(f"incident open exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return elapsed


def stop_background_server(home: Path) -> None:
    """Stop the background Prefect server published in ``home`` (its own process group)."""
    try:
        pid = int(json.loads((home / "prefect-server.json").read_text())["server_pid"])
        os.killpg(pid, signal.SIGTERM)
    except (OSError, ValueError, KeyError):
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def in_process_floor(workspace: Workspace, api_url: str, runs: int) -> list[float]:
    """The same playbook in this process against the running server: one warm-up, then timed."""
    # Before Prefect is first imported here; its run records stay off this bench's output.
    os.environ.update(PREFECT_API_URL=api_url, PREFECT_LOGGING_LEVEL="WARNING")
    os.environ["PREFECT_LOGGING_TO_API_ENABLED"] = "false"
    times: list[float] = []
    for index in range(runs + 1):
        home = workspace.fresh_home()
        rt = open_runtime(home)
        started = time.perf_counter()
        incident_id = run_prefect(rt, [])
        elapsed = time.perf_counter() - started
        if incident_status(rt, incident_id) != "recovered":
            raise SystemExit(f"floor run did not recover (home {home})")
        rt.db.dispose()
        remove_tree(home)
        if index:
            times.append(elapsed)
    return times


def second_command_without_serve(workspace: Workspace, runs: int) -> None:
    """The second ``incident open`` of a shell session without serve, beside its floor."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REARGUARD_", "PREFECT_"))}
    env["REARGUARD_USER"] = "bench"
    firsts: list[float] = []
    seconds: list[float] = []
    api_url = ""
    kept: Path | None = None
    for _ in range(runs):
        home = workspace.fresh_home()
        prefect_home = Path(tempfile.mkdtemp(prefix="prefect-home-", dir=workspace.root))
        run_env = {**env, "PREFECT_HOME": str(prefect_home)}
        firsts.append(open_incident(home, run_env))
        tamper_production(home)
        seconds.append(open_incident(home, run_env, "--new"))
        note(f"first {firsts[-1]:.2f} s, second {seconds[-1]:.2f} s")
        if kept is not None:
            stop_background_server(kept)
        kept = home
        api_url = json.loads((home / "prefect-server.json").read_text())["api_url"]
    assert kept is not None
    try:
        floor = in_process_floor(workspace, api_url, runs)
    finally:
        stop_background_server(kept)
    figure, floor_s = statistics.median(seconds), statistics.median(floor)
    emit(
        "second_command_without_serve",
        median_s=round(figure, 3),
        samples_s=[round(s, 3) for s in seconds],
        first_s=[round(s, 3) for s in firsts],
        floor="in-process playbook, server running",
        floor_median_s=round(floor_s, 3),
        floor_samples_s=[round(s, 3) for s in floor],
        ratio=round(figure / floor_s, 2),
        budget=SECOND_COMMAND_BUDGET,
    )


def main() -> None:
    """Parse the options and run every measurement."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=4)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    try:
        workspace = Workspace(root, make_sources(root / "sources", args.size_mib))
        second_command_without_serve(workspace, args.runs)
    finally:
        remove_tree(root)


if __name__ == "__main__":
    sys.exit(main())
