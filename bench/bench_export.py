"""Benchmark: exporting an incident with 100,000 timeline events, against its floor.

Budgets: ``jsonl`` <= 2 s, ``html`` <= 5 s, peak memory <= 300 MB for each.

Setup: a temporary home with a real asset (three registered versions, two approved, the third
promoted), an incident opened on it, and ``--events`` timeline events recorded through
``rearguard.models.audit.chain.append_event`` in transactions of 10,000: the playbook's steps
(intent, state changes, outcome) and, in between, repeated alert events of the kind an alert storm
deduplicated onto one incident leaves (each with a fingerprint, labels and a summary).

Each figure runs in a fresh Python process, so its peak resident memory (``ru_maxrss``) is its
own: the process imports rearguard, opens the database, then is timed from loading the
incident's facts to the last byte written to a file. One JSON line per figure:

- ``floor``: the same process streaming the same rows from the database and ``json.dumps``-ing
  each as a dict, in a loop (no file written): what touching every row as JSON costs here.
- ``jsonl``, ``html`` (the budgets), and ``md``, ``csv``, ``stix``, ``report`` for reference.
- ``verify_jsonl`` (reference): ``verify_file`` on the exported jsonl.

Each figure reports its best time over ``--rounds`` rounds (the formats and the floor
interleaved), the highest peak RSS, the RSS the process had before the export began (the
interpreter and its imports), the output size, and ``ok`` against its budget.

Run: ``.venv/bin/python bench/bench_export.py [--events 100000] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BUDGETS_S = {"jsonl": 2.0, "html": 5.0}
RSS_BUDGET_MB = 300.0
BATCH = 10_000
ASSET = "bench-model"
STEPS = ("quarantine", "verify_integrity", "select_known_good", "rollback", "validate", "notify")


def emit(figure: str, **fields: Any) -> None:
    """Print one figure as a JSON line on standard output."""
    load = round(os.getloadavg()[0], 2)
    record = {"bench": "export", "figure": figure, **fields, "load_1m": load}
    print(json.dumps(record), flush=True)


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- setup ------------------------------------------------------------------------------------


def build(home: Path, database_url: str | None, events: int) -> int:
    """Create the asset, the incident and its events; return the incident id."""
    from rearguard.models.assets.versions import approve_version, promote_version, register_version
    from rearguard.models.audit.chain import append_event
    from rearguard.models.config.settings import load_settings
    from rearguard.models.enums import EventKind, Severity
    from rearguard.models.incidents.service import get_incident, open_incident, set_incident_status
    from rearguard.models.runtime import Runtime

    rt = Runtime.from_settings(load_settings(home=home, database_url=database_url))
    for label in ("v1", "v2", "v3"):
        source = home / "sources" / label
        source.mkdir(parents=True)
        (source / "weights.bin").write_bytes(f"weights {label}".encode() * 1000)
        register_version(
            db=rt.db,
            registry=rt.registry,
            name=ASSET,
            source=source,
            label=label,
            kind="model",
            actor="bench",
        )
    for label in ("v1", "v2"):
        approve_version(db=rt.db, registry=rt.registry, name=ASSET, label=label, by="alice")
    promote_version(
        db=rt.db, registry=rt.registry, name=ASSET, label="v3", alias="production", actor="bench"
    )
    with rt.db.session() as session:
        incident = open_incident(
            session=session,
            type="model_compromise",
            actor="bench",
            asset_name=ASSET,
            severity=Severity.SEV1,
            summary="alert storm: output drift on bench-model",
            atlas_ids=["AML.T0018", "AML.T0031"],
            state={"compromised": "v3"},
        )
        incident_id = int(incident.id or 0)
    actor = "playbook:model_compromise"
    # The steps spread over the run, the alert events filling the rest.
    step_every = max(events // (len(STEPS) + 1), 1)
    written = 1
    step = 0
    while written < events:
        with rt.db.session() as session:
            for _ in range(min(BATCH, events - written)):
                if written % step_every == 0 and step < len(STEPS):
                    name = STEPS[step]
                    append_event(
                        session,
                        kind=EventKind.INTENT,
                        action=name,
                        actor=actor,
                        incident_id=incident_id,
                        asset=ASSET,
                        data={"step": name, "arguments": {}},
                    )
                    append_event(
                        session,
                        kind=EventKind.OUTCOME,
                        action=name,
                        actor=actor,
                        incident_id=incident_id,
                        asset=ASSET,
                        data={"step": name, "ok": True, "seconds": 0.01, "result": {"n": step}},
                    )
                    if name == "quarantine":
                        set_incident_status(
                            session=session,
                            incident=get_incident(session=session, incident_id=incident_id),
                            status="contained",
                            actor=actor,
                        )
                        written += 1
                    step += 1
                    written += 2
                    continue
                append_event(
                    session,
                    kind=EventKind.STATE,
                    action="alert.repeated",
                    actor="intake:alertmanager",
                    incident_id=incident_id,
                    asset=ASSET,
                    data={
                        "fingerprint": f"{written:016x}",
                        "labels": {"alertname": "OutputDrift", "model": ASSET, "env": "prod"},
                        "summary": "output distribution drift above threshold",
                        "value": written % 97 / 10,
                    },
                )
                written += 1
    with rt.db.session() as session:
        set_incident_status(
            session=session,
            incident=get_incident(session=session, incident_id=incident_id),
            status="recovered",
            actor=actor,
        )
    rt.db.dispose()
    return incident_id


# -- one measurement, in a child process -------------------------------------------------------


def child(args: argparse.Namespace) -> None:
    """Run one figure in this (fresh) process and print its result as JSON."""
    from rearguard.models.db.engine import Database

    db = Database(args.database_url)
    out = Path(args.out)
    if args.figure == "floor":
        from rearguard.flows.exports.facts import iter_rows

        rss_before = peak_rss_mb()
        started = time.perf_counter()
        size = 0
        dumps = json.dumps
        for row in iter_rows(db, args.incident):
            size += len(dumps(row._asdict()))
        seconds = time.perf_counter() - started
    elif args.figure == "verify_jsonl":
        from rearguard.flows.exports.timeline_jsonl import verify_file

        rss_before = peak_rss_mb()
        started = time.perf_counter()
        report = verify_file(out)
        seconds = time.perf_counter() - started
        assert report.ok, report.problem
        size = out.stat().st_size
    else:
        import rearguard.flows.exports.review_html
        import rearguard.flows.exports.stix  # noqa: F401  (imports outside the timing)
        from rearguard.flows.exports.export import export_to_file
        from rearguard.flows.exports.formats import ExportFormat

        rss_before = peak_rss_mb()
        started = time.perf_counter()
        export_to_file(
            db=db, incident_id=args.incident, export_format=ExportFormat(args.figure), path=out
        )
        seconds = time.perf_counter() - started
        size = out.stat().st_size
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_rss_mb": peak_rss_mb(),
                "rss_before_mb": rss_before,
                "bytes": size,
            }
        )
    )


def run_child(figure: str, database_url: str, incident: int, out: Path) -> dict[str, Any]:
    """Run one figure in a fresh interpreter; return its measurements."""
    result = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            figure,
            "--database-url",
            database_url,
            "--incident",
            str(incident),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"{figure} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    """Build the incident, then time every figure against its floor."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", default=None, help="a scratch database (default: SQLite)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--incident", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.figure = args.child
        child(args)
        return

    home = Path(tempfile.mkdtemp(prefix="rearguard-bench-export-"))
    database_url = args.database_url or f"sqlite:///{home / 'rearguard.db'}"
    try:
        started = time.perf_counter()
        incident = build(home, args.database_url, args.events)
        emit("setup", events=args.events, seconds=round(time.perf_counter() - started, 2))
        figures = ["floor", "jsonl", "html", "md", "csv", "stix", "report"]
        results: dict[str, list[dict[str, Any]]] = {f: [] for f in [*figures, "verify_jsonl"]}
        out = {f: home / f"export.{f}" for f in figures}
        for _ in range(args.rounds):
            for figure in figures:
                results[figure].append(run_child(figure, database_url, incident, out[figure]))
            results["verify_jsonl"].append(
                run_child("verify_jsonl", database_url, incident, out["jsonl"])
            )
        floor = min(r["seconds"] for r in results["floor"])
        floor_rss = max(r["peak_rss_mb"] for r in results["floor"])
        for figure, samples in results.items():
            best = min(r["seconds"] for r in samples)
            rss = max(r["peak_rss_mb"] for r in samples)
            budget = BUDGETS_S.get(figure)
            emit(
                figure,
                events=args.events,
                seconds=round(best, 3),
                floor_seconds=round(floor, 3),
                ratio_to_floor=round(best / floor, 2),
                budget_s=budget,
                peak_rss_mb=round(rss, 1),
                floor_peak_rss_mb=round(floor_rss, 1),
                rss_before_export_mb=round(max(r["rss_before_mb"] for r in samples), 1),
                rss_budget_mb=RSS_BUDGET_MB if budget else None,
                bytes=samples[-1]["bytes"],
                ok=(best <= budget and rss <= RSS_BUDGET_MB) if budget else None,
            )
    finally:
        if args.keep:
            print(f"kept {home}", file=sys.stderr)
        else:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
