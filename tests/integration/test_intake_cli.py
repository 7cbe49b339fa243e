"""``rearguard serve`` as a user runs it: refuses an open bind, serves, runs the drill
scheduler, shows in ``rearguard status``, stops on SIGTERM."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import pytest
from intake_helpers import AUTH, TOKEN, incidents, native, running_serve, wait_for
from scenarios import build_scenario

from rearguard.flows.prefect_infra.server import free_loopback_port
from rearguard.models.drills.service import add_drill, list_runs
from rearguard.models.incidents.approvals import list_requests
from rearguard.models.runtime import Runtime


def test_serve_refuses_auth_off_on_a_public_address(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("serve", "--host", "0.0.0.0", env={"REARGUARD_INTAKE_AUTH": "off"})
    assert result.returncode == 2
    assert "auth is off but it would listen on 0.0.0.0" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_an_address_it_cannot_have_at_once(cli) -> None:  # type: ignore[no-untyped-def]
    env = {"REARGUARD_INTAKE_TOKENS": TOKEN}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        in_use = cli("serve", "--port", str(port), env=env, timeout=30)
    unknown = cli("serve", "--host", "no-such-host.invalid", env=env, timeout=30)
    out_of_range = cli("serve", "--port", "70000", env=env, timeout=30)

    assert in_use.returncode == 2, in_use.stderr
    assert in_use.stderr.splitlines()[0] == (
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
    assert unknown.returncode == 2, unknown.stderr
    assert unknown.stderr.startswith("error: cannot listen on no-such-host.invalid:8088: ")
    for refused in (in_use, unknown):
        assert "listening" not in refused.stderr and "Traceback" not in refused.stderr
    assert out_of_range.returncode == 2
    assert "Invalid value for '--port'" in out_of_range.stderr


def test_serve_accepts_events_runs_drills_and_stops_gracefully_on_sigterm(
    cli, cli_env: dict[str, str], home: Path, runtime: Runtime, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    build_scenario(runtime, tmp_path)
    with runtime.db.session() as session:
        add_drill(
            session=session,
            name="every-second",
            playbook="model_compromise",
            asset="model-a",
            cron="* * * * * *",
            timezone="UTC",
            rto_s=None,
            actor="test",
        )
    port = free_loopback_port()
    env = {
        **cli_env,
        "REARGUARD_INTAKE_TOKENS": f"other,{TOKEN}",
        "REARGUARD_INTAKE_PORT": str(port),
    }
    with running_serve(env=env, home=home, port=port, timeout=60) as serving:
        url = f"http://127.0.0.1:{port}"
        refused = httpx.post(f"{url}/v1/incidents", json=native("model-a"))
        assert refused.status_code == 401
        unknown = httpx.post(f"{url}/v1/incidents", json=native("model-z"), headers=AUTH)
        assert unknown.status_code == 422
        assert unknown.json()["detail"] == "unknown asset 'model-z'"
        assert httpx.get(f"{url}/healthz").json()["requests"] == {"accepted": 0, "refused": 2}

        def drilled() -> list:
            with runtime.db.read_session() as session:
                return [r for r in list_runs(session=session) if r.status in ("pass", "fail")]

        # The scheduler runs in the intake's process: the drill due every second fires.
        first = wait_for(drilled, timeout=90, what="a drill run by serve's scheduler")[0]
        assert (first.trigger, first.status) == ("schedule", "pass"), first.reason
        shown = cli("status", "--json", env=env)
        assert shown.returncode == 0, shown.stderr
        status = json.loads(shown.stdout)
        assert status["intake"]["answers"] is True
        # It is this home's serve: the instance id it published answers at its address.
        published = home / "serve.json"
        assert published.stat().st_mode & 0o777 == 0o600
        assert status["intake"]["ours"] is True
        assert status["intake"]["published"]["url"] == f"http://127.0.0.1:{port}"
        instance = json.loads(published.read_text())["instance"]
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json()["instance"] == instance
        assert status["intake"]["scheduler"] == {"running": True, "drills": 1}
        assert status["intake"]["dispatch"] == "inline"
        assert status["intake"]["playbooks"] == {
            "started": 0,
            "finished": 0,
            "errors": 0,
            "restarts": 0,
        }
        assert "playbooks  inline, 8 at a time: 0 started" in cli("status", env=env).stdout
        assert [d["name"] for d in status["drills"]] == ["every-second"]
        assert status["prefect"] == {"api_url": cli_env["PREFECT_API_URL"], "answers": True}
        assert status["database"]["current"] is True
        stderr = serving.stop()
    assert serving.process.returncode == 0, stderr
    assert f"listening on http://127.0.0.1:{port}" in stderr
    assert TOKEN not in stderr
    assert not published.exists()


def _processes_of(home: Path) -> list[int]:
    """The processes still running on ``home`` (REARGUARD_HOME in their environment)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"REARGUARD_HOME={home}".encode() in environ:
            found.append(int(entry.name))
    return found


@pytest.mark.one_database
def test_a_local_prefect_server_that_cannot_start_ends_serve_in_one_line(
    cli, cli_env: dict[str, str], home: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """serve starts its playbook process while its Prefect server starts: when the server
    exits instead, serve ends with that one line, exit 2, and leaves nothing running."""
    env = {
        **cli_env,
        "PREFECT_API_URL": "",  # not set: serve starts its own server
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_DATABASE_CONNECTION_URL": "bogus://nowhere",  # the server exits
        "REARGUARD_INTAKE_TOKENS": TOKEN,
    }
    ended = cli("serve", "--port", "0", env=env, timeout=180)
    assert ended.returncode == 2, ended.stderr
    assert "error: the local Prefect server exited with 1" in ended.stderr
    assert "Traceback" not in ended.stderr
    assert not (home / "prefect-server.json").exists()
    assert not (home / "serve.json").exists()
    wait_for(lambda: not _processes_of(home), timeout=30, what="serve's processes to end")


@pytest.mark.one_database
def test_commands_use_the_local_prefect_server_that_serve_started(
    cli, cli_env: dict[str, str], home: Path, runtime: Runtime, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Without a Prefect API of the user's, ``serve`` starts one and publishes it in the home;
    ``incident open`` in another shell, run there (not handed to serve), runs its playbook
    there (no temporary server), and ``status`` names it. It is gone, and no longer named,
    once serve stops."""
    build_scenario(runtime, tmp_path, tampered=True)
    port = free_loopback_port()
    prefect_home = tmp_path / "prefect-home"  # no profiles.toml: no API URL configured
    env = {
        **cli_env,
        "PREFECT_API_URL": "",  # not set
        "PREFECT_HOME": str(prefect_home),
        "REARGUARD_INTAKE_TOKENS": TOKEN,
        "REARGUARD_INTAKE_PORT": str(port),
    }
    published = home / "prefect-server.json"
    with running_serve("--no-scheduler", env=env, home=home, port=port, timeout=180) as serving:
        record = json.loads(published.read_text())
        api_url = record["api_url"]
        assert api_url.startswith("http://127.0.0.1:")
        assert Path(record["ca_file"]).is_file()

        opened = cli(
            *("incident", "open", "--type", "model_compromise", "--asset", "model-a"),
            "--local",
            env=env,
        )
        assert opened.returncode == 0, opened.stderr
        assert "temporary" not in opened.stderr
        (incident,) = incidents(runtime)
        incident_id = incident.id
        runs = httpx.post(
            f"{api_url}/flow_runs/filter",
            json={"flow_runs": {"name": {"any_": [f"incident-{incident_id}"]}}},
            timeout=10,
        ).json()
        assert [(r["name"], r["state_type"]) for r in runs] == [
            (f"incident-{incident_id}", "COMPLETED")
        ]

        status = json.loads(cli("status", "--json", env=env).stdout)
        assert status["prefect"] == {
            "api_url": api_url,
            "answers": True,
            "local": True,
            "pid": record["server_pid"],
            "idle_stop_s": None,  # serve's: it stops with serve
        }
        assert "the local server of `rearguard serve`" in cli("status", env=env).stdout
        stderr = serving.stop()
    assert serving.process.returncode == 0, stderr
    assert not published.exists()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{api_url}/health", timeout=2)
    status = json.loads(cli("status", "--json", env=env).stdout)
    assert status["prefect"]["api_url"] is None
    assert "rearguard serve" in status["prefect"]["note"]


def test_serve_says_how_each_playbook_ended_in_one_line_without_tracebacks(
    cli_env: dict[str, str], home: Path, runtime: Runtime, tmp_path: Path
) -> None:
    """A playbook that cannot recover is an expected end, said once on serve's console; the
    console copies of Prefect's run records (with three tracebacks) stay in Prefect's API."""
    build_scenario(runtime, tmp_path, approved=())  # nothing known-good to roll back to
    port = free_loopback_port()
    env = {**cli_env, "REARGUARD_INTAKE_TOKENS": TOKEN, "REARGUARD_INTAKE_PORT": str(port)}
    with running_serve("--no-scheduler", env=env, home=home, port=port, timeout=60) as serving:
        url = f"http://127.0.0.1:{port}"
        opened = httpx.post(f"{url}/v1/incidents", json=native("model-a"), headers=AUTH).json()

        def ended() -> bool:
            health = httpx.get(f"{url}/healthz").json()
            return health["playbooks"]["finished"] == 1

        wait_for(ended, timeout=90, what="the playbook's end")
        stderr = serving.stop()
    assert serving.process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "Task run failed" not in stderr
    said = [line for line in stderr.splitlines() if f"incident {opened['incident_id']}:" in line]
    assert len(said) == 1, stderr
    assert "model_compromise on model-a: failed (no known-good version of model-a" in said[0]


def test_ctrl_c_lets_the_running_playbook_end_without_a_traceback(
    cli_env: dict[str, str], home: Path, runtime: Runtime, tmp_path: Path
) -> None:
    """Ctrl+C in serve's terminal reaches every process of its group, the playbook process
    too: serve stops, and the playbook it had started still ends, once, said in one line."""
    build_scenario(runtime, tmp_path, tampered=True)
    port = free_loopback_port()
    env = {**cli_env, "REARGUARD_INTAKE_TOKENS": TOKEN, "REARGUARD_INTAKE_PORT": str(port)}
    with running_serve("--no-scheduler", env=env, home=home, port=port, timeout=60) as serving:
        url = f"http://127.0.0.1:{port}"
        opened = httpx.post(f"{url}/v1/incidents", json=native("model-a"), headers=AUTH).json()
        stderr = serving.stop(ctrl_c=True)
    assert serving.process.returncode == 130, stderr  # interrupted, as shells count it
    assert "Traceback" not in stderr and "died" not in stderr, stderr
    said = [line for line in stderr.splitlines() if f"incident {opened['incident_id']}:" in line]
    assert len(said) == 1 and "model_compromise on model-a: recovered" in said[0], stderr
    assert [(i.id, str(i.status)) for i in incidents(runtime)] == [
        (opened["incident_id"], "recovered")
    ]


def test_a_stop_held_by_a_pending_approval_says_so_and_ends_when_it_is_decided(
    cli, cli_env: dict[str, str], home: Path, runtime: Runtime, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Ctrl+C while a playbook waits for a person: serve says what it waits for; the approval,
    given from another shell, lets the playbook recover and serve exit."""
    build_scenario(runtime, tmp_path, tampered=True)
    (home / "rearguard.toml").write_text(
        "[approvals]\nallow_self_asserted = true\n"
        '[[approvals.rules]]\napprovers = ["alice"]\nsteps = ["rollback"]\ntimeout_s = 600\n'
    )
    port = free_loopback_port()
    env = {**cli_env, "REARGUARD_INTAKE_TOKENS": TOKEN, "REARGUARD_INTAKE_PORT": str(port)}
    with running_serve("--no-scheduler", env=env, home=home, port=port, timeout=60) as serving:
        url = f"http://127.0.0.1:{port}"
        opened = httpx.post(f"{url}/v1/incidents", json=native("model-a"), headers=AUTH).json()
        incident_id = opened["incident_id"]

        def pending() -> list:
            with runtime.db.read_session() as session:
                return list_requests(session=session, status="pending", incident_id=incident_id)

        wait_for(pending, timeout=60, what="the approval request")
        serving.ctrl_c()
        wait_for(
            lambda: any("waiting for 1 playbook(s)" in line for line in serving.lines),
            timeout=30,
            what="serve to say what its stop waits for",
        )
        assert serving.process.poll() is None, "serve must not leave the playbook behind"
        approved = cli("approve", str(incident_id), "--as", "alice", env=env)
        assert approved.returncode == 0, approved.stderr
        stderr = serving.wait()  # it was stopping already
    assert serving.process.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    assert f"incident {incident_id}: model_compromise on model-a: recovered" in stderr
    assert [(i.id, str(i.status)) for i in incidents(runtime)] == [(incident_id, "recovered")]
