"""Benchmark: rearguard commands as a user runs them, each beside its floor in the same run.

One function per measurement; each prints one JSON line (``figure``, its ``floor``, their
``ratio`` and the ``budget`` ratio) on standard output. The scenario is bench_playbook's: a
home holding one model asset (``--size-mib`` weights per version), v1 and v2 approved, v3 in
production with its stored weights tampered with.

- ``second_command_without_serve``: no ``rearguard serve``, no ``PREFECT_API_URL``: in a
  fresh home (and a fresh PREFECT_HOME), ``rearguard incident open`` once (it starts the
  background host, a local Prefect server and a process that runs later commands, and hands
  itself to it; reported as ``first_s``), then, production's weights tampered with again,
  ``rearguard incident open --new`` (timed: interpreter start to exit). Floor: the same
  playbook run in process (``open_and_record`` + ``run_playbook``) against that Prefect
  server, already warm. Budget: 3x. The commands run without ``PYTHONDONTWRITEBYTECODE``, as
  for ``incident_list``.
- ``incident_list``: ``rearguard incident list`` on a home of ``--incidents`` incidents
  (SQLite, the embedded default), interpreter start to exit, printing to a pipe at 80
  columns. Floor: a fresh ``python -c`` (the same interpreter, started the same way) that
  opens the same SQLite file with the standard library's ``sqlite3`` and prints the same rows.
  ``--list-runs`` rounds, each timing both, in alternating order, after one untimed warm-up of
  each. Budget: 10x. Both run without ``PYTHONDONTWRITEBYTECODE``, as an installed package
  does: its modules are read from their compiled ``__pycache__`` files (the warm-up writes
  them for an editable install), not compiled from source on every run.

- ``incident_open_with_serve``: ``rearguard serve`` running on the home (its own local
  Prefect server, as a user starts it): ``rearguard incident open`` (timed: interpreter start
  to exit; it hands the command to serve) against the floor, the intake path on the same serve
  and model: ``POST /v1/incidents`` to the time of its incident's ``incident.recovered``
  event (read from ``GET /v1/incidents/ID``, asked every 50 ms on one kept-alive
  connection; the asking adds no delay to the figure). Rounds alternate the two, after one
  warm-up of each; before each, untimed, the last incident is resolved and a new version
  (``--size-mib`` of random weights) is promoted and tampered with. Budget: 1.3x. Also
  ``to_recovered_median_s``: the command's interpreter start to its incident's
  ``incident.recovered`` event (what the command adds before the floor's end point).

Run: ``.venv/bin/python bench/bench_cli.py [--size-mib 4] [--runs 2] [--incidents 50]
[--list-runs 21] [--figure incident_list|second_command_without_serve|incident_open_with_serve]``
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench_playbook import (
    ASSET,
    REARGUARD,
    Workspace,
    free_port,
    incident_status,
    make_sources,
    note,
    open_runtime,
    promote_tampered,
    register,
    remove_tree,
    run_prefect,
    stop_group,
    tamper,
    write_source,
)

SECOND_COMMAND_BUDGET = 3.0
INCIDENT_LIST_BUDGET = 10.0
# What `incident list` shows, as the command queries it: newest first, no drills, at most 100.
LIST_FLOOR = (
    "import sqlite3, sys\n"
    "connection = sqlite3.connect(sys.argv[1])\n"
    "for row in connection.execute(\n"
    "    'SELECT id, type, severity, status, asset_name, opened_at, reason FROM incident'\n"
    "    \" WHERE source <> 'drill' ORDER BY id DESC LIMIT 100\"\n"
    "):\n"
    "    print(*row)\n"
)


WITH_SERVE_BUDGET = 1.3
TOKEN = "bench-intake-token-0123456789"
POLL_S = 0.05
OPEN = ("incident", "open", "--type", "model_compromise", "--asset", ASSET)


def emit(figure: str, **fields: Any) -> None:
    """Print one figure as a JSON line on standard output."""
    load = round(os.getloadavg()[0], 2)
    print(json.dumps({"bench": "cli", "figure": figure, **fields, "load_1m": load}), flush=True)


def tamper_production(home: Path) -> None:
    """Alter the stored weights of the version production serves now."""
    rt = open_runtime(home)
    try:
        tamper(rt, rt.registry.read_alias(asset=ASSET, alias=rt.settings.registry.alias))
    finally:
        rt.db.dispose()


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


def stop_background_host(home: Path) -> None:
    """Stop the background host published in ``home`` (it stops its Prefect server)."""
    try:
        pid = int(json.loads((home / "serve.json").read_text())["pid"])
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError, KeyError):
        return
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return  # gone, its Prefect server stopped before it
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
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as an installed package runs (see incident_list)
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
            stop_background_host(kept)
        kept = home
        api_url = json.loads((home / "prefect-server.json").read_text())["api_url"]
    assert kept is not None
    try:
        floor = in_process_floor(workspace, api_url, runs)
    finally:
        stop_background_host(kept)
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


def record_incidents(home: Path, count: int) -> None:
    """Open ``count`` incidents on the home's asset, recorded as ``incident open --no-run``
    records them (not timed)."""
    from rearguard.models.incidents.service import open_incident as record

    rt = open_runtime(home)
    try:
        for index in range(count):
            with rt.db.session() as session:
                record(
                    session=session,
                    type="model_compromise",
                    actor="bench",
                    asset_name=ASSET,
                    summary=f"bench incident {index}",
                )
    finally:
        rt.db.dispose()


def time_pair(
    commands: dict[str, list[str]], env: dict[str, str], cwd: Path, rounds: int
) -> dict[str, list[float]]:
    """Wall time of each command (interpreter start to exit), ``rounds`` times after one
    untimed warm-up each, the order alternating from round to round."""
    samples: dict[str, list[float]] = {name: [] for name in commands}
    names = list(commands)
    for index in range(rounds + 1):
        for name in names if index % 2 else reversed(names):
            started = time.perf_counter()
            done = subprocess.run(
                commands[name], env=env, cwd=cwd, capture_output=True, text=True, check=False
            )
            elapsed = time.perf_counter() - started
            if done.returncode != 0 or not done.stdout:
                raise SystemExit(f"{name} exited {done.returncode}:\n{done.stdout}{done.stderr}")
            if index:
                samples[name].append(elapsed)
    return samples


def incident_list(workspace: Workspace, incidents: int, rounds: int) -> None:
    """``rearguard incident list`` beside python reading the same rows with sqlite3."""
    home = workspace.fresh_home()
    record_incidents(home, incidents)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REARGUARD_", "PREFECT_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(REARGUARD_HOME=str(home), COLUMNS="80")
    commands = {
        "cli": [str(REARGUARD), "incident", "list"],
        "floor": [sys.executable, "-c", LIST_FLOOR, str(home / "rearguard.db")],
    }
    samples = time_pair(commands, env, home, rounds)
    figure, floor_s = statistics.median(samples["cli"]), statistics.median(samples["floor"])
    paired = [cli / floor for cli, floor in zip(samples["cli"], samples["floor"], strict=True)]
    note(f"incident list {figure:.3f} s, floor {floor_s:.3f} s")
    emit(
        "incident_list",
        incidents=incidents,
        median_s=round(figure, 4),
        min_s=round(min(samples["cli"]), 4),
        floor="python -c: sqlite3 reads and prints the same rows",
        floor_median_s=round(floor_s, 4),
        floor_min_s=round(min(samples["floor"]), 4),
        ratio=round(figure / floor_s, 2),
        paired_ratio_median=round(statistics.median(paired), 2),
        budget=INCIDENT_LIST_BUDGET,
    )


def new_tampered_production(rt: Any, label: str, source: Path, size_mib: int) -> None:
    """Register a new version of the asset (random weights), promote it, tamper with it."""
    register(rt, label, write_source(source, label, size_mib))
    remove_tree(source)  # the store has its copy
    promote_tampered(rt, label)


def resolve_all(rt: Any) -> None:
    """Resolve every incident the last round left (so the next one opens a new one)."""
    from rearguard.models.incidents.resolution import resolve_incident
    from rearguard.models.incidents.service import list_incidents

    with rt.db.session() as session:
        for incident in list_incidents(session=session):
            if str(incident.status) != "resolved":
                resolve_incident(
                    session=session, incident_id=int(incident.id), actor="bench", note="bench"
                )


def recovered_at(rt: Any, incident_id: int) -> float:
    """When an incident's ``incident.recovered`` event was recorded (seconds since the epoch)."""
    from rearguard.models.audit.chain import events_for_incident

    with rt.db.read_session() as session:
        events = events_for_incident(session=session, incident_id=incident_id)
    (moment,) = [e.ts for e in events if e.action == "incident.recovered"]
    return datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp()


def served_cli(rt: Any, env: dict[str, str]) -> tuple[float, float]:
    """``rearguard incident open`` handed to serve: interpreter start to exit, and to its
    incident's ``incident.recovered`` event."""
    started, wall = time.perf_counter(), time.time()
    done = subprocess.run(
        [str(REARGUARD), *OPEN],
        env=env,
        cwd=rt.settings.home,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or "recovered" not in done.stdout or "note:" in done.stderr:
        raise SystemExit(f"incident open exited {done.returncode}:\n{done.stdout}{done.stderr}")
    incident_id = int(done.stdout.split(":")[0].removeprefix("incident "))
    return elapsed, recovered_at(rt, incident_id) - wall


def intake_path(connection: http.client.HTTPConnection, rt: Any) -> float:
    """An alert to the intake until its incident is recovered: from the request's start to
    its ``incident.recovered`` event (the same machine's clock). ``GET /v1/incidents/ID``, every
    ``POLL_S``, only tells when to look: the figure has no polling delay."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    event = json.dumps({"type": "model_compromise", "asset": ASSET, "severity": "sev2"})
    started = time.time()
    connection.request(
        "POST", "/v1/incidents", body=event, headers={**auth, "Content-Type": "application/json"}
    )
    accepted = json.loads(connection.getresponse().read())
    if accepted.get("action") != "opened":
        raise SystemExit(f"the intake did not open an incident: {accepted}")
    while True:
        time.sleep(POLL_S)
        connection.request("GET", f"/v1/incidents/{accepted['incident_id']}", headers=auth)
        status = json.loads(connection.getresponse().read())["status"]
        if status == "failed":
            raise SystemExit(f"the intake's incident failed: {accepted}")
        if status == "recovered":
            return recovered_at(rt, accepted["incident_id"]) - started


def incident_open_with_serve(workspace: Workspace, runs: int, size_mib: int) -> None:
    """``incident open`` handed to a running serve, beside the intake path on that serve."""
    home = workspace.fresh_home()  # v3 in production, tampered with
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("REARGUARD_", "PREFECT_"))},
        "REARGUARD_HOME": str(home),
        "REARGUARD_USER": "bench",
        "REARGUARD_INTAKE_TOKENS": TOKEN,
        "REARGUARD_INTAKE_PORT": str(port),
        # Each round's alert opens an incident: the last one, resolved, takes no more alerts.
        "REARGUARD_INTAKE_DEDUP_WINDOW_S": "0",
        "PREFECT_HOME": str(workspace.root / "prefect-home-serve"),
    }
    log = (workspace.root / "serve.log").open("w")
    serve = subprocess.Popen(
        [str(REARGUARD), "serve", "--no-scheduler"],
        env=env,
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
    )
    rt = open_runtime(home)
    cli_s: list[float] = []
    cli_to_recovered_s: list[float] = []
    floor_s: list[float] = []
    try:
        deadline = time.monotonic() + 300
        while not (home / "serve.json").exists():
            if serve.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"serve did not start: see {workspace.root / 'serve.log'}")
            time.sleep(0.2)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        rounds = 0
        for index in range(runs + 1):  # the first of each: a warm-up
            for kind in ("cli", "intake"):
                if rounds:
                    resolve_all(rt)
                    label = f"v{rounds + 3}"
                    new_tampered_production(rt, label, workspace.root / label, size_mib)
                rounds += 1
                if kind == "intake":
                    elapsed = intake_path(connection, rt)
                    floor_s += [elapsed] if index else []
                    continue
                elapsed, to_recovered = served_cli(rt, env)
                if index:
                    cli_s.append(elapsed)
                    cli_to_recovered_s.append(to_recovered)
            note(f"round {index}: cli {cli_s[-1:]}, intake {floor_s[-1:]}")
        connection.close()
    finally:
        rt.db.dispose()
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=120)
        finally:
            stop_group(serve)
            log.close()
    figure, floor = statistics.median(cli_s), statistics.median(floor_s)
    emit(
        "incident_open_with_serve",
        size_mib=size_mib,
        median_s=round(figure, 3),
        samples_s=[round(s, 3) for s in cli_s],
        to_recovered_median_s=round(statistics.median(cli_to_recovered_s), 3),
        floor="intake: POST /v1/incidents to its incident.recovered event",
        floor_median_s=round(floor, 3),
        floor_samples_s=[round(s, 3) for s in floor_s],
        ratio=round(figure / floor, 2),
        budget=WITH_SERVE_BUDGET,
    )


FIGURES = ("incident_list", "second_command_without_serve", "incident_open_with_serve")


def main() -> None:
    """Parse the options and run the measurements asked for (all by default)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=4)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--incidents", type=int, default=50)
    parser.add_argument("--list-runs", type=int, default=21)
    parser.add_argument("--figure", choices=FIGURES, action="append", dest="figures")
    args = parser.parse_args()
    figures = args.figures or FIGURES
    root = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    try:
        workspace = Workspace(root, make_sources(root / "sources", args.size_mib))
        if "incident_list" in figures:
            incident_list(workspace, args.incidents, args.list_runs)
        if "second_command_without_serve" in figures:
            second_command_without_serve(workspace, args.runs)
        if "incident_open_with_serve" in figures:
            incident_open_with_serve(workspace, args.runs, args.size_mib)
    finally:
        remove_tree(root)


if __name__ == "__main__":
    sys.exit(main())
