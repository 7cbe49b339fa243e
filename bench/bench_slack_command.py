"""Benchmark: how soon the ``/rearguard`` slash command is answered.

Budget: Slack's own, 3 s for the acknowledgement; in practice a small fraction of it.

The bench makes one home (SQLite) with one small model asset and serves the intake app with
uvicorn on a loopback port in this process (``run_playbooks=False``: the answer never waits
for the playbook, which runs in serve's playbook process). Each request is signed as Slack
signs it and sent over one keep-alive HTTP connection; the clock runs from sending the request
to reading the whole answer.

Figures, one JSON line each on standard output (median, p90 and max over the runs):

- ``open``: ``/rearguard open model_compromise ASSET sev2 ...``, a new incident each time (the
  previous one is resolved, untimed): signature check, replay record, dedup claim, incident and
  events written, the ephemeral answer.
- ``status``: ``/rearguard status ID``.
- ``help``: ``/rearguard help``: the signature check and replay record alone, plus the help.
- ``floor_healthz``: ``GET /healthz`` on the same server and connection: the HTTP round trip.

Run: ``.venv/bin/python bench/bench_slack_command.py [--runs 50]``
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import uvicorn
from bench_approval import add_asset

SECRET = "bench-signing-secret"
BUDGET_S = 3.0
SETTINGS = """
[notifications]
channels = ["file"]

[approvals.slack_users]
U0BENCH = "alice"

[slack_commands]
allow = { open = ["alice"] }
"""
_TRIGGERS = itertools.count(1)


def emit(figure: str, seconds: list[float]) -> None:
    """Print one figure as a JSON line."""
    ordered = sorted(seconds)
    record = {
        "bench": "slack_command",
        "figure": figure,
        "median_s": round(statistics.median(ordered), 5),
        "p90_s": round(ordered[int(0.9 * (len(ordered) - 1))], 5),
        "max_s": round(ordered[-1], 5),
        "runs": len(ordered),
        "budget_s": BUDGET_S,
        "load_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(record), flush=True)


def signed(text: str) -> tuple[bytes, dict[str, str]]:
    """A slash command's body and Slack's headers for it."""
    from rearguard.notifications.slack_interactions import sign

    body = urlencode(
        {
            "user_id": "U0BENCH",
            "command": "/rearguard",
            "text": text,
            "response_url": "https://hooks.slack.com/commands/T0/1/x",
            "trigger_id": f"{next(_TRIGGERS)}.bench",
        }
    ).encode()
    stamp = str(int(time.time()))
    return body, {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": sign(secret=SECRET, timestamp=stamp, body=body),
    }


def serve(app: Any) -> tuple[uvicorn.Server, threading.Thread, str]:
    """The app on uvicorn, 127.0.0.1, a free port."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, f"http://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="rg-bench-slash-"))
    os.environ["REARGUARD_SLACK_SIGNING_SECRET"] = SECRET
    os.chdir(root)
    (root / "rearguard.toml").write_text(SETTINGS)
    try:
        from rearguard.flows.intake.app import create_app
        from rearguard.models.config.intake import IntakeSettings
        from rearguard.models.config.settings import load_settings
        from rearguard.models.enums import IncidentStatus
        from rearguard.models.incidents.service import get_incident, set_incident_status
        from rearguard.models.runtime import Runtime

        rt = Runtime.from_settings(load_settings(home=root / "home"))
        add_asset(rt, root, "bench-model")
        app = create_app(rt, intake=IntakeSettings(tokens=["bench"]), run_playbooks=False)
        server, thread, url = serve(app)
        figures: dict[str, list[float]] = {"open": [], "status": [], "help": [], "healthz": []}
        with httpx.Client(base_url=url) as client:

            def timed(figure: str, text: str | None) -> dict[str, Any]:
                if text is None:
                    started = time.perf_counter()
                    answer = client.get("/healthz")
                else:
                    body, headers = signed(text)
                    started = time.perf_counter()
                    answer = client.post("/v1/slack/commands", content=body, headers=headers)
                figures[figure].append(time.perf_counter() - started)
                assert answer.status_code == 200, answer.text
                return dict(answer.json())

            for index in range(args.runs + 1):  # the first round warms up, untimed
                reply = timed("open", f"open model_compromise bench-model sev2 bench {index}")
                incident_id = int(reply["text"].split("*")[1])
                timed("status", f"status {incident_id}")
                timed("help", "help")
                timed("healthz", None)
                with rt.db.session() as session:
                    set_incident_status(
                        session=session,
                        incident=get_incident(session=session, incident_id=incident_id),
                        status=IncidentStatus.RESOLVED,
                        actor="bench",
                    )
                if index == 0:
                    for seconds in figures.values():
                        seconds.clear()
        server.should_exit = True
        thread.join(30)
        rt.db.dispose()
        for figure in ("open", "status", "help"):
            emit(figure, figures[figure])
        emit("floor_healthz", figures["healthz"])
        median = statistics.median(figures["open"])
        print(
            f"# open answered in {median * 1000:.1f} ms median (budget {BUDGET_S:g} s); "
            f"HTTP floor {statistics.median(figures['healthz']) * 1000:.1f} ms",
            file=sys.stderr,
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
