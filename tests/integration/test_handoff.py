"""The hand-off: with ``rearguard serve`` running for the home, ``incident open``,
``playbook run``, ``drills run`` and ``approve`` run in serve and print what they print when
run here, with the same exit status; without a serve that takes them, they run here.

A handed-off command runs in serve's process, on serve's Prefect server: the shell that asks
has a Prefect API nobody answers at (:data:`NO_PREFECT_HERE`), so a command that ran there
instead would fail.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cli_helpers import open_compromise, run_in_terminal
from intake_helpers import TOKEN, incidents, running_serve, timeline_actions
from scenarios import build_scenario

from rearguard.flows.prefect_infra.server import free_loopback_port
from rearguard.models.drills.service import add_drill
from rearguard.models.runtime import Runtime

OPEN = tuple(open_compromise("model-a"))
ONCE = (  # the steps of model_compromise that run once (notify runs three times)
    "quarantine",
    "verify_integrity",
    "select_known_good",
    "await_approval",
    "rollback",
    "validate",
)
USAGE_ERROR = ("incident", "open", "--asset", "model-a")  # no --type
NO_PREFECT_HERE = {"PREFECT_API_URL": "http://127.0.0.1:9/api"}
Result = subprocess.CompletedProcess[str]


def untimed(result: Result) -> tuple[int, str, str]:
    """A command's exit status and output, the time each step took left out."""
    return result.returncode, result.stdout, re.sub(r"\(\d+\.\d\ds\)", "(…)", result.stderr)


def test_commands_handed_to_serve_print_and_end_as_they_would_here(
    cli, cli_env: dict[str, str], home: Path, runtime: Runtime, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    build_scenario(runtime, tmp_path, tampered=True)
    port = free_loopback_port()
    serve_env = {**cli_env, "REARGUARD_INTAKE_TOKENS": TOKEN, "REARGUARD_INTAKE_PORT": str(port)}
    url = f"http://127.0.0.1:{port}"
    published = home / "serve.json"
    with running_serve(
        "--no-scheduler", env=serve_env, home=home, port=port, timeout=120
    ) as serving:
        assert published.stat().st_mode & 0o777 == 0o600
        assert json.loads(published.read_text())["token"]

        # Two responders at once: one incident, its playbook run once, in serve.
        with ThreadPoolExecutor(2) as pool:
            both = list(pool.map(lambda _: cli(*OPEN, env=NO_PREFECT_HERE), range(2)))
        assert [r.returncode for r in both] == [0, 0], [r.stderr for r in both]
        attached, opened = sorted(both, key=lambda r: "running its playbook" in r.stderr)
        assert opened.stdout.startswith("incident 1: recovered; model-a production -> v2")
        assert opened.stderr.startswith(
            "incident 1 opened (model_compromise, sev2); running its playbook\n"
        )
        assert "  ✓ rollback           production: v3 -> v2 (" in opened.stderr
        assert "[notify sev2] Incident 1 recovered: model-a production -> v2" in opened.stderr
        assert "already recovered: attached to it" in attached.stdout or (
            "already open: attached to it" in attached.stdout
        )
        assert [i.id for i in incidents(runtime)] == [1]
        assert timeline_actions(runtime, 1).count("rollback") == 2  # intent, outcome: one run

        # The same lines and exit status as here: a rerun, an attach, an error, a usage error.
        rerun = ("playbook", "run", "--incident", "1")
        cli(*rerun, env=NO_PREFECT_HERE)  # the first rerun may still deliver a notification
        assert untimed(cli(*rerun, env=NO_PREFECT_HERE)) == untimed(cli(*rerun, "--local"))
        # On a terminal: a spinner while each step runs, then its line, once.
        screen = run_in_terminal(
            list(rerun), {**cli_env, **NO_PREFECT_HERE, "COLUMNS": "80", "TERM": "xterm"}, home
        )
        assert "incident 1: recovered; model-a production -> v2 (known_good)" in screen
        steps = [line.split("✓ ")[1].split()[0] for line in screen.splitlines() if "✓ " in line]
        assert Counter(steps) == {"notify": 3, **dict.fromkeys(ONCE, 1)}, screen
        for args in (
            (*OPEN, "--json"),
            ("incident", "open", "--type", "model_compromise", "--asset", "model-z"),
            USAGE_ERROR,
        ):
            handed, here = cli(*args, env=NO_PREFECT_HERE), cli(*args, "--local")
            assert untimed(handed) == untimed(here), args
        assert [i.id for i in incidents(runtime)] == [1]
        approve = cli("approve", "1", "--code", "123456", env=NO_PREFECT_HERE)
        assert approve.returncode == 2
        assert approve.stderr.startswith("error: incident 1 is not waiting for an approval\n")

        with runtime.db.session() as session:
            add_drill(
                session=session,
                name="weekly",
                playbook="model_compromise",
                asset="model-a",
                cron="0 9 * * MON",
                timezone="UTC",
                rto_s=None,
                actor="test",
            )
        drilled = cli("drills", "run", "weekly", env=NO_PREFECT_HERE)
        assert drilled.returncode == 0, drilled.stderr
        assert "drill weekly run 1: pass; recovered in " in drilled.stdout

        # A token serve does not know: it takes nothing; the command runs here.
        served = json.loads(published.read_text())
        published.write_text(json.dumps({**served, "token": "not-the-token"}))
        refused = cli(*USAGE_ERROR)
        assert refused.returncode == 2
        assert refused.stderr.splitlines()[:2] == [
            f"note: this home's serve ({url}) refused the hand-off token (forbidden); "
            "running the command here",
            "Usage: rearguard incident open [OPTIONS]",
        ]

        # Other settings than serve's: the command runs here, with its own.
        published.write_text(json.dumps(served))
        other = cli(*USAGE_ERROR, env={"REARGUARD_PLAYBOOK_SETTLE_S": "5"})
        assert other.returncode == 2
        assert other.stderr.splitlines()[:2] == [
            f"note: this home's serve ({url}) did not take the command: serve runs with other "
            "settings than this command (another environment or rearguard.toml); running the "
            "command here",
            "Usage: rearguard incident open [OPTIONS]",
        ]
        stderr = serving.stop()
    assert serving.process.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr

    # serve gone, its serve.json left behind (killed, its process gone): no serve; the command
    # runs here, once, and says nothing of it.
    published.write_text(json.dumps(served))
    stale = cli(*OPEN)
    assert stale.returncode == 0, stale.stderr
    assert "note:" not in stale.stderr
    assert "attached to it" in stale.stdout
    assert [i.id for i in incidents(runtime)] == [1]
