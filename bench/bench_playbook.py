"""Benchmark: the model_compromise playbook, from trigger to recovered.

Budget: on a 100 MiB model, with a local Prefect server already running (``PREFECT_API_URL``
set), an incident goes from trigger to ``recovered`` in at most 1.5 s (median).

Every run gets a fresh home (SQLite) holding one model asset with three versions, each a
``--size-mib`` weights file of random bytes (different per version) and a small config.json:
v1 and v2 approved, v3 promoted, then v3's stored weights tampered with. The source files are
generated once and reused by every run. Setting a home up is not timed.

Figures, one JSON line each on standard output:

- ``server_startup``: ``prefect server start`` (own fresh PREFECT_HOME) until healthy.
- ``floor_plain_python``: the floor. ``open_and_record``, then the same step bodies through
  ``run_step`` (intent and outcome events included) in the playbook's order, then
  ``conclude`` and ``notify``, as plain Python: no Prefect flow or task.
- ``server_in_process``: ``open_and_record`` + ``run_playbook`` in this process against that
  server; with the number of Prefect client retries seen (each one is a 503 from a busy
  server, then at least 2 s of back-off). One warm-up run of each in-process kind comes
  first; then rounds alternate one floor run and one Prefect run.
  Both this and the floor also give the medians of the step bodies' time
  (``step_bodies_median_s``, from the outcome events' ``data.seconds``) and of the rest
  (``outside_step_bodies_median_s``): the difference of the latter two is Prefect's own cost,
  a steadier figure than the totals, whose body share swings with the evidence copy's writes.
- ``server_in_process_breakdown``: where the median server-mode run spent its time:
  opening the incident, Prefect before the first step, each step (body as recorded in its
  outcome event's ``data.seconds``, and wall time including its two events), between steps,
  after the last step.
- ``server_cli``: ``rearguard incident open ...`` as a subprocess against the same server
  (interpreter start, imports, run, exit); with ``import_floor_median_s``, the time a fresh
  interpreter takes to import the playbook module (Prefect included).
- ``no_server_cli``: the same command with no ``PREFECT_API_URL``, so Prefect starts a
  temporary server; the first run also creates that server's database.

Progress, the breakdown and a one-line summary go to standard error.

Run: ``.venv/bin/python bench/bench_playbook.py [--size-mib 100] [--runs 5] [--skip-no-server]
[--no-server-runs 2] [--prefect-database-url postgresql+asyncpg://...]``
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
REARGUARD = BIN / "rearguard"
PREFECT = BIN / "prefect"
ASSET = "bench-model"
LABELS = ("v1", "v2", "v3")
BUDGET_S = 1.5
MIB = 1024 * 1024


def emit(figure: str, **fields: Any) -> None:
    """Print one figure as a JSON line on standard output."""
    # The machine's load when the figure was taken: a shared machine makes figures noisy.
    load = round(os.getloadavg()[0], 2)
    record = {"bench": "playbook", "figure": figure, **fields, "load_1m": load}
    print(json.dumps(record), flush=True)


def note(message: str) -> None:
    """Progress for the human watching, on standard error."""
    print(f"# {message}", file=sys.stderr, flush=True)


def summary(samples: list[float]) -> dict[str, Any]:
    """Median, p90 (interpolated), min and the samples, rounded to the millisecond."""
    ordered = sorted(samples)
    p90 = (
        statistics.quantiles(ordered, n=10, method="inclusive")[8]
        if len(ordered) > 1
        else ordered[0]
    )
    return {
        "median_s": round(statistics.median(ordered), 3),
        "p90_s": round(p90, 3),
        "min_s": round(ordered[0], 3),
        "samples_s": [round(s, 3) for s in samples],
    }


def remove_tree(path: Path) -> None:
    """Remove a tree that holds read-only directories (quarantine evidence)."""
    if not path.exists():
        return
    for dirpath, _dirs, _files in os.walk(path):
        os.chmod(dirpath, 0o700)
    shutil.rmtree(path)


def write_source(folder: Path, label: str, size_mib: int) -> Path:
    """One version's source directory: ``size_mib`` of random weights and a config.json."""
    folder.mkdir(parents=True)
    with (folder / "weights.safetensors").open("wb") as handle:
        for _ in range(size_mib):
            handle.write(os.urandom(MIB))
    (folder / "config.json").write_text(json.dumps({"version": label, "layers": 12}))
    return folder


def make_sources(root: Path, size_mib: int) -> dict[str, Path]:
    """Write one source directory per version: random weights and a config.json."""
    return {label: write_source(root / label, label, size_mib) for label in LABELS}


def register(rt: Any, label: str, source: Path) -> None:
    """Register a version of the bench's asset."""
    from rearguard.models.assets.versions import register_version
    from rearguard.models.enums import AssetKind

    register_version(
        db=rt.db,
        registry=rt.registry,
        name=ASSET,
        source=source,
        label=label,
        kind=AssetKind.MODEL,
        actor="bench",
    )


def tamper(rt: Any, label: str) -> None:
    """Alter the stored weights of a version."""
    weights = rt.registry.version_location(asset=ASSET, label=label) / "weights.safetensors"
    weights.chmod(0o644)
    with weights.open("r+b") as handle:
        handle.write(b"\x00tampered\x00")
    weights.chmod(0o444)


def promote_tampered(rt: Any, label: str) -> None:
    """Promote a version to production, then tamper with its stored weights."""
    from rearguard.models.assets.versions import promote_version

    promote_version(
        db=rt.db,
        registry=rt.registry,
        name=ASSET,
        label=label,
        alias=rt.settings.registry.alias,
        actor="bench",
    )
    tamper(rt, label)


def prepare_home(home: Path, sources: dict[str, Path]) -> None:
    """Register v1..v3, approve v1 and v2, promote v3, tamper with v3's stored weights."""
    from rearguard.models.assets.versions import approve_version

    rt = open_runtime(home)
    try:
        for label in LABELS:
            register(rt, label, sources[label])
        for label in ("v1", "v2"):
            approve_version(db=rt.db, registry=rt.registry, name=ASSET, label=label, by="bench")
        promote_tampered(rt, "v3")
    finally:
        rt.db.dispose()


def open_runtime(home: Path) -> Any:
    """The runtime of a prepared home."""
    from rearguard.models.config.settings import load_settings
    from rearguard.models.runtime import Runtime

    return Runtime.from_settings(load_settings(home=home))


def open_incident(rt: Any) -> int:
    """Trigger: validate and record the incident, as ``rearguard incident open`` does."""
    from rearguard.flows.opening import open_and_record
    from rearguard.models.enums import Severity

    return open_and_record(
        runtime=rt,
        type="model_compromise",
        asset=ASSET,
        severity=Severity.SEV2,
        since=None,
        summary="bench",
        actor="bench",
    )


def incident_status(rt: Any, incident_id: int) -> str:
    """The incident's status now."""
    from rearguard.models.incidents.service import get_incident

    with rt.db.read_session() as session:
        return str(get_incident(session=session, incident_id=incident_id).status)


Marks = list[tuple[str, str, float]]
"""(step, phase, perf_counter) as a run goes: phase is start, done or fail; step "open" too."""


def run_plain(rt: Any, marks: Marks) -> int:
    """The playbook's steps as plain Python, in the playbook's order; return the incident id."""
    from rearguard.flows.steps import run_step
    from rearguard.models.enums import IncidentStatus
    from rearguard.models.recovery import containment, rollback, selection
    from rearguard.notifications.notify import notify

    incident_id = open_incident(rt)
    marks.append(("open", "done", time.perf_counter()))
    common = {"runtime": rt, "incident_id": incident_id}
    run_step("quarantine", containment.quarantine, **common)
    verified = run_step("verify_integrity", selection.verify_integrity, **common)
    selected = run_step(
        "select_known_good", selection.select_known_good, **common, checks=verified.checks
    )
    run_step("rollback", rollback.rollback, **common, label=selected.selected)
    run_step("validate", rollback.validate, **common)
    rollback.conclude(runtime=rt, incident_id=incident_id, status=IncidentStatus.RECOVERED)
    run_step("notify", notify, **common, event="recovered")
    return incident_id


def run_prefect(rt: Any, marks: Marks) -> int:
    """Open the incident and run its playbook under Prefect; return the incident id."""
    from rearguard.flows.run_playbook import run_playbook

    incident_id = open_incident(rt)
    marks.append(("open", "done", time.perf_counter()))
    run_playbook(runtime=rt, incident_id=incident_id)
    return incident_id


class Workspace:
    """Fresh homes under one temporary directory, each prepared from the shared sources.

    ``config``, when given, is written to each home's ``rearguard.toml`` first, ``{home}``
    replaced by the home's path (e.g. an MLflow registry of the home's own).
    """

    def __init__(self, root: Path, sources: dict[str, Path], config: str = "") -> None:
        self.root = root
        self.sources = sources
        self.config = config
        self.count = 0

    def fresh_home(self) -> Path:
        """A new prepared home (not timed)."""
        self.count += 1
        home = self.root / f"home-{self.count:02d}"
        home.mkdir()
        if self.config:
            (home / "rearguard.toml").write_text(self.config.replace("{home}", str(home)))
        prepare_home(home, self.sources)
        return home


class Run:
    """One timed in-process run: its time, runtime, incident and step marks."""

    def __init__(self, workspace: Workspace, body: Callable[[Any, Marks], int]) -> None:
        home = workspace.fresh_home()
        self.rt = open_runtime(home)
        self.marks: Marks = []
        self.rt.reporters.append(
            lambda step, phase, _message: self.marks.append((step, phase, time.perf_counter()))
        )
        self.started = time.perf_counter()
        self.incident_id = body(self.rt, self.marks)
        self.ended = time.perf_counter()
        self.seconds = self.ended - self.started
        status = incident_status(self.rt, self.incident_id)
        if status != "recovered":
            raise SystemExit(f"bench run ended {status}, not recovered (home {home})")

    def finish(self) -> None:
        """Dispose of the runtime and delete the home."""
        self.rt.db.dispose()
        remove_tree(self.rt.settings.home)


class RetryCounter(logging.Handler):
    """Counts the Prefect client's retries (a 503 from a busy server costs 2 s or more)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        """Count one retry message."""
        if "Another attempt will be made" in record.getMessage():
            self.count += 1

    def install(self) -> None:
        """Listen to the Prefect client's debug messages, without printing them."""
        client_logger = logging.getLogger("prefect.client")
        client_logger.setLevel(logging.DEBUG)
        client_logger.propagate = False
        client_logger.addHandler(self)


def time_cli(workspace: Workspace, env: dict[str, str], timeout: float) -> float:
    """Time ``rearguard incident open`` as a subprocess on a fresh home."""
    home = workspace.fresh_home()
    # The person the incident records as opening it (the CLI refuses to record nobody).
    run_env = {**env, "REARGUARD_HOME": str(home), "REARGUARD_USER": "bench"}
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(REARGUARD), "incident", "open", "--type", "model_compromise", "--asset", ASSET],
        env=run_env,
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        elapsed = time.perf_counter() - started
        stop_group(process)
    if process.returncode != 0 or "recovered" not in stdout:
        raise SystemExit(f"rearguard incident open exited {process.returncode}:\n{stdout}{stderr}")
    remove_tree(home)
    return elapsed


def stop_group(process: subprocess.Popen) -> None:
    """Terminate what is left of a process group this bench started (by its leader's id)."""
    for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                process.poll()
                return
            process.poll()
            time.sleep(0.1)


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(
    prefect_home: Path, database_url: str | None
) -> tuple[subprocess.Popen, str, float]:
    """Start ``prefect server start`` in its own process group; wait until it is healthy.

    Args:
        prefect_home: the server's own, fresh PREFECT_HOME.
        database_url: the server's database (``postgresql+asyncpg://...``); default SQLite
            in ``prefect_home``.
    """
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    log = (prefect_home / "server.log").open("wb")
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    health = f"http://127.0.0.1:{port}/api/health"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (prefect_home / "server.log").read_text(errors="replace")[-2000:]
            raise SystemExit(f"prefect server exited {process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(health, timeout=2) as response:
                if response.status == 200:
                    return process, f"http://127.0.0.1:{port}/api", time.perf_counter() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    stop_group(process)
    raise SystemExit("prefect server did not become healthy within 180 s")


def breakdown(run: Run) -> dict[str, Any]:
    """Where one run's time went: opening, each step (body and wrapper), Prefect around them."""
    from rearguard.models.audit.chain import events_for_incident

    with run.rt.db.read_session() as session:
        events = events_for_incident(session, incident_id=run.incident_id)
    body = {e.action: json.loads(e.data).get("seconds", 0.0) for e in events if e.kind == "outcome"}
    opened = next(t for step, _phase, t in run.marks if step == "open")
    starts = {step: t for step, phase, t in run.marks if phase == "start"}
    ends = {step: t for step, phase, t in run.marks if phase in ("done", "fail")}
    steps = [
        {
            "step": step,
            "body_s": round(body.get(step, 0.0), 4),
            "wall_s": round(ends[step] - began, 4),
        }
        for step, began in starts.items()
    ]
    first, last = min(starts.values()), max(ends.values())
    walls = sum(s["wall_s"] for s in steps)
    return {
        "total_s": round(run.seconds, 4),
        "open_incident_s": round(opened - run.started, 4),
        "before_first_step_s": round(first - opened, 4),
        "step_bodies_s": round(sum(s["body_s"] for s in steps), 4),
        "step_walls_s": round(walls, 4),
        "between_steps_s": round(last - first - walls, 4),
        "after_last_step_s": round(run.ended - last, 4),
        "steps": steps,
    }


def body_shares(parts: list[dict[str, Any]]) -> dict[str, float]:
    """Medians of the step bodies' time and of everything else, over several runs.

    Less noisy than the totals: here the bodies' time swings with the evidence copy's disk
    writes, while the rest is the orchestration's own cost.
    """
    return {
        "step_bodies_median_s": round(statistics.median(p["step_bodies_s"] for p in parts), 3),
        "outside_step_bodies_median_s": round(
            statistics.median(p["total_s"] - p["step_bodies_s"] for p in parts), 3
        ),
    }


def print_breakdown(parts: dict[str, Any]) -> None:
    """The breakdown as a few lines on standard error."""
    lines = [f"where the time goes in the median server-mode run (total {parts['total_s']:.3f} s):"]
    lines.append(f"  {'open incident':<26} {parts['open_incident_s']:.3f} s")
    lines.append(
        f"  {'before first step':<26} {parts['before_first_step_s']:.3f} s "
        "(Prefect: flow run created, result storage looked up, task engine)"
    )
    for step in parts["steps"]:
        lines.append(
            f"  {step['step']:<26} {step['wall_s']:.3f} s (body {step['body_s']:.3f} s, "
            "the rest its intent/outcome events)"
        )
    lines.append(
        f"  {'between steps':<26} {parts['between_steps_s']:.3f} s (Prefect task engine, conclude)"
    )
    lines.append(
        f"  {'after last step':<26} {parts['after_last_step_s']:.3f} s (flow run final state)"
    )
    for line in lines:
        note(line)


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=100, help="weights per version (MiB)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per server-mode figure")
    parser.add_argument("--no-server-runs", type=int, default=2, help="runs with no server")
    parser.add_argument("--skip-no-server", action="store_true", help="skip the no-server runs")
    parser.add_argument(
        "--prefect-database-url",
        help="database of the Prefect server, e.g. postgresql+asyncpg://user@host/db "
        "(default: SQLite in its PREFECT_HOME)",
    )
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="rearguard-bench-playbook-"))
    server_home = root / "prefect-server"
    client_home = root / "prefect-client"
    server_home.mkdir()
    client_home.mkdir()
    # A private Prefect home for every client in this bench (and for the temporary server of
    # the no-server runs), no telemetry, no inherited rearguard state.
    os.environ["PREFECT_HOME"] = str(client_home)
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "180"
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ["REARGUARD_NOTIFY_CONSOLE"] = "false"
    for name in ("REARGUARD_HOME", "REARGUARD_DATABASE_URL", "REARGUARD_FAILPOINTS"):
        os.environ.pop(name, None)
    os.chdir(root)  # no stray rearguard.toml from the caller's directory

    results: dict[str, dict[str, Any]] = {}
    try:
        run_all(args, root, server_home, results)
    finally:
        remove_tree(root)
    report(args, results)


def run_all(
    args: argparse.Namespace, root: Path, server_home: Path, results: dict[str, dict[str, Any]]
) -> None:
    """Measure every figure into ``results`` (emitting each as it is measured)."""
    note(f"writing {len(LABELS)} x {args.size_mib} MiB of random source weights")
    workspace = Workspace(root, make_sources(root / "sources", args.size_mib))
    common: dict[str, Any] = {"size_mib": args.size_mib, "versions": len(LABELS)}
    server: subprocess.Popen | None = None
    try:
        note("starting prefect server")
        server, api_url, ready_s = start_server(server_home, args.prefect_database_url)
        note(f"prefect server healthy at {api_url} after {ready_s:.1f} s")
        common["prefect_server_db"] = (
            "postgresql" if (args.prefect_database_url or "").startswith("postgres") else "sqlite"
        )
        emit("server_startup", **common, seconds=round(ready_s, 3), note="until /api/health")
        # Before anything imports Prefect, so that its settings see the server.
        os.environ["PREFECT_API_URL"] = api_url
        import rearguard.flows.cli.incident
        import rearguard.flows.run_playbook
        import rearguard.flows.steps
        import rearguard.playbooks.model_compromise  # noqa: F401

        note("warm-up: one plain-Python run and one Prefect run")
        Run(workspace, run_plain).finish()
        Run(workspace, run_prefect).finish()
        retries = RetryCounter()
        retries.install()
        # Rounds alternate the floor and the Prefect run, so that a busy moment of a shared
        # machine (or a slow page-cache allocation) weighs on both alike.
        floor: list[float] = []
        samples: list[float] = []
        parts_by_run: list[dict[str, Any]] = []
        floor_parts: list[dict[str, Any]] = []
        for index in range(args.runs):
            note(f"round {index + 1}/{args.runs}: floor (plain Python), then in process")
            run = Run(workspace, run_plain)
            floor.append(run.seconds)
            floor_parts.append(breakdown(run))
            run.finish()
            run = Run(workspace, run_prefect)
            samples.append(run.seconds)
            parts_by_run.append(breakdown(run))
            run.finish()
        results["floor"] = {**summary(floor), **body_shares(floor_parts)}
        emit("floor_plain_python", **common, **results["floor"])
        results["in_process"] = {**summary(samples), **body_shares(parts_by_run)}
        emit(
            "server_in_process",
            **common,
            **results["in_process"],
            budget_s=BUDGET_S,
            within_budget=results["in_process"]["median_s"] <= BUDGET_S,
            floor_median_s=results["floor"]["median_s"],
            prefect_client_retries=retries.count,
        )
        # The breakdown of the run whose time is the median one.
        parts = sorted(parts_by_run, key=lambda p: p["total_s"])[(len(parts_by_run) - 1) // 2]
        emit("server_in_process_breakdown", **common, **parts)
        print_breakdown(parts)

        note("server mode, CLI subprocess")
        env = dict(os.environ)
        results["cli"] = summary([time_cli(workspace, env, timeout=300) for _ in range(args.runs)])
        emit(
            "server_cli",
            **common,
            **results["cli"],
            budget_s=BUDGET_S,
            within_budget=results["cli"]["median_s"] <= BUDGET_S,
            floor_median_s=results["floor"]["median_s"],
            import_floor_median_s=import_floor(env),
        )
    finally:
        if server is not None:
            note("stopping prefect server")
            stop_group(server)

    if not args.skip_no_server and args.no_server_runs > 0:
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        runs = []
        for index in range(args.no_server_runs):
            note(f"no server: CLI run {index + 1} (Prefect starts a temporary server)")
            runs.append(time_cli(workspace, env, timeout=600))
        results["no_server"] = {"samples_s": [round(s, 3) for s in runs]}
        emit(
            "no_server_cli",
            **common,
            samples_s=[round(s, 3) for s in runs],
            note="run 1 also creates the temporary server's database in a fresh PREFECT_HOME",
            floor_median_s=results["floor"]["median_s"],
        )


def import_floor(env: dict[str, str], runs: int = 3) -> float:
    """Median time of a fresh interpreter importing the playbook (Prefect included)."""
    argv = [sys.executable, "-c", "import rearguard.playbooks.model_compromise"]
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, env=env, check=True)
        samples.append(time.perf_counter() - started)
    return round(statistics.median(samples), 3)


def report(args: argparse.Namespace, results: dict[str, dict[str, Any]]) -> None:
    """The one-line human summary, on standard error."""
    verdict = "OK" if results["in_process"]["median_s"] <= BUDGET_S else "MISSED"
    no_server = results.get("no_server", {}).get("samples_s")
    print(
        f"playbook {args.size_mib} MiB: server in-process median "
        f"{results['in_process']['median_s']:.2f} s (p90 {results['in_process']['p90_s']:.2f}), "
        f"CLI median {results['cli']['median_s']:.2f} s (p90 {results['cli']['p90_s']:.2f}), "
        f"no server {no_server or 'skipped'}, floor {results['floor']['median_s']:.2f} s; "
        f"outside the step bodies {results['floor']['outside_step_bodies_median_s']:.2f} s "
        f"plain vs {results['in_process']['outside_step_bodies_median_s']:.2f} s under Prefect; "
        f"budget {BUDGET_S} s in-process: {verdict}"
        + ("" if results["cli"]["median_s"] <= BUDGET_S else ", CLI over budget"),
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
