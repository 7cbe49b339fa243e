"""Readable on an 80-column terminal: tables cut free text with an ellipsis, never a status or
a time; a playbook run on a terminal prints one line per step and nothing of Prefect's; and
``status`` tells this home's serve from whatever else answers on its port."""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cli_helpers import run_in_terminal
from scenarios import add_version, approve, build_scenario, promote

from rearguard.flows.intake.published import PUBLISHED_FILE, PublishedServe, publish
from rearguard.flows.opening import open_and_record
from rearguard.models.enums import IncidentStatus, Severity
from rearguard.models.incidents.service import get_incident, set_incident_status
from rearguard.models.runtime import Runtime

pytestmark = pytest.mark.one_database

LONG_NAME = "fraud-detection-model-for-the-payments-team-eu-west-1"
LONG_REASON = "no known-good version of the model qualifies: " + "v1 fails verification; " * 6


def test_tables_at_80_columns_cut_free_text_never_a_status_or_a_time(  # type: ignore[no-untyped-def]
    narrow_cli, runtime: Runtime, tmp_path: Path
) -> None:
    add_version(
        runtime, tmp_path, "corpus-of-payments-2026-q3-with-chargebacks", "v1", kind="dataset"
    )
    for label in ("v1", "v2"):
        add_version(
            runtime,
            tmp_path,
            LONG_NAME,
            label,
            trained_on="corpus-of-payments-2026-q3-with-chargebacks@v1",
        )
    approve(runtime, LONG_NAME, "v1", by="alice, head of the machine-learning platform team")
    promote(runtime, LONG_NAME, "v2")
    for summary in ("first", "second"):
        open_and_record(
            runtime=runtime,
            type="model_compromise",
            asset=LONG_NAME,
            severity=Severity.SEV1,
            since=None,
            summary=summary,
            actor="oncall",
        )
    with runtime.db.session() as session:
        failed = get_incident(session=session, incident_id=1)
        set_incident_status(
            session=session,
            incident=failed,
            status=IncidentStatus.FAILED,
            actor="playbook:model_compromise",
            reason=LONG_REASON,
        )
        opened = {1: failed.opened_at, 2: get_incident(session=session, incident_id=2).opened_at}

    incidents = narrow_cli("incident", "list").stdout.splitlines()
    assets = narrow_cli("assets", "list").stdout.splitlines()
    versions = narrow_cli("assets", "show", LONG_NAME).stdout.splitlines()

    rows = {int(line.split()[0]): line for line in incidents[2:]}
    assert set(rows) == {1, 2}
    for incident_id, status in ((1, "failed"), (2, "open")):
        row = rows[incident_id]
        assert len(row) <= 80
        assert f" {status} " in row and f" {opened[incident_id]:%Y-%m-%d %H:%M} " in row
        assert "…" in row and LONG_NAME not in row  # the name is cut, visibly
    assert "…" in rows[1].rstrip()[-1] and LONG_REASON[:40] not in rows[1]
    (asset_row,) = [line for line in assets if line.startswith("fraud")]
    assert len(asset_row) <= 80 and " v2 " in asset_row and " candidate " in asset_row
    assert "…" in asset_row
    table = versions[versions.index(next(v for v in versions if v.startswith("version"))) :]
    table = table[: table.index("why:")]
    assert max(len(line) for line in table) <= 80
    for label, status in (("v2 *", "candidate"), ("v1", "known_good")):
        (row,) = [line for line in table if line.startswith(f"{label} ")]
        assert f" {status} " in row
    # Why each version has its status, and its lineage, are in the human output too.
    assert "  v1 known_good: approved by alice, head of the machine-learning platform team" in (
        versions
    )
    shown = json.loads(narrow_cli("assets", "show", LONG_NAME, "--json").stdout)
    assert {v["trained_on"] for v in shown["versions"]} == {
        "corpus-of-payments-2026-q3-with-chargebacks@v1"
    }
    assert any("corpus-o" in line and "…" in line for line in table)  # cut, but there


@pytest.fixture
def foreign_server() -> Iterator[int]:
    """Something that is not rearguard's intake answering ``/healthz`` on a loopback port."""

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"status": "ok", "instance": "somebody-else"}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_status_does_not_take_another_server_on_the_port_for_its_serve(  # type: ignore[no-untyped-def]
    narrow_cli, runtime: Runtime, foreign_server: int
) -> None:
    env = {"REARGUARD_INTAKE_PORT": str(foreign_server)}

    alone = json.loads(narrow_cli("status", "--json", env=env).stdout)["intake"]
    said = narrow_cli("status", env=env).stdout

    assert (alone["answers"], alone["ours"], alone["published"]) == (True, False, None)
    assert alone["scheduler"] is None and alone["playbooks"] is None
    assert "something else answers there: not this home's serve" in said
    assert "this home has no serve.json" in said

    # serve.json names that address, but the instance answering there is not the one it names.
    url = f"http://127.0.0.1:{foreign_server}"
    publish(runtime.settings.home, PublishedServe(url=url, instance="ours", pid=os.getpid()))
    assert (runtime.settings.home / PUBLISHED_FILE).stat().st_mode & 0o777 == 0o600
    named = json.loads(narrow_cli("status", "--json").stdout)["intake"]
    assert (named["url"], named["answers"], named["ours"]) == (f"{url}/healthz", True, False)
    assert "not this home's serve" in narrow_cli("status").stdout


def test_a_playbook_run_on_a_terminal_prints_one_line_per_step_and_nothing_of_prefects(
    cli_env: dict[str, str], runtime: Runtime, home: Path, tmp_path: Path
) -> None:
    build_scenario(runtime, tmp_path, tampered=True)
    # A new Prefect user's first import on a terminal, not in CI: when Prefect shows its notice.
    from prefect._internal.analytics.ci_detection import CI_ENV_VARS

    env = {k: v for k, v in cli_env.items() if k not in CI_ENV_VARS and k != "DO_NOT_TRACK"}
    env.update(
        PREFECT_HOME=str(tmp_path / "new-prefect-home"), COLUMNS="80", TERM="xterm", NO_COLOR="1"
    )

    written = run_in_terminal(
        ["incident", "open", "--type", "model_compromise", "--asset", "model-a"], env, home
    )

    assert "incident 1: recovered; model-a production -> v2 (known_good)" in written
    assert "Prefect collects" not in written and "telemetry" not in written
    assert "Traceback" not in written and " | WARNING | " not in written
    assert " | ERROR " not in written
    # Each step's line, once: what the spinner showed while it ran is gone from the screen.
    steps = Counter(line.split("✓ ")[1].split()[0] for line in written.splitlines() if "✓ " in line)
    assert steps == {
        "notify": 3,
        "quarantine": 1,
        "verify_integrity": 1,
        "select_known_good": 1,
        "await_approval": 1,
        "rollback": 1,
        "validate": 1,
    }
