"""The ``rearguard`` command as a user runs it: a real subprocess on the test's home and database.

Output is asserted through ``--json`` where the command has it, exit codes always. Bad input must
give exit 2, exactly one ``error:`` line (and at most a ``hint:``) on standard error, no
traceback, and leave the registry, the database and the store exactly as they were.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shlex
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from scenarios import MODEL_COMPROMISE_STEPS, build_scenario, tamper, write_source
from sqlalchemy import select
from sqlmodel import SQLModel

from rearguard.models.assets.versions import register_version
from rearguard.models.enums import AssetKind
from rearguard.models.names import MAX_ROW_ID
from rearguard.models.runtime import Runtime
from rearguard.playbooks.catalog import CATALOG

Result = subprocess.CompletedProcess[str]


# -- helpers ----------------------------------------------------------------------------------


def ok(result: Result) -> Result:
    """Assert a command succeeded without a traceback."""
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    return result


def as_json(result: Result) -> Any:
    """The parsed standard output of a successful ``--json`` command."""
    return json.loads(ok(result).stdout)


def assert_error(result: Result, needle: str, *, code: int = 2) -> str:
    """Assert the one-line error contract and return the error line."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "no error message"
    assert lines[0].startswith("error: "), lines
    assert all(line.startswith("hint: ") for line in lines[1:]), lines
    assert len(lines) <= 2, lines
    assert needle in lines[0], lines[0]
    return lines[0]


def weights(label: str) -> dict[str, bytes]:
    """Distinct model weights per version."""
    return {"weights.bin": f"weights {label}".encode() * 100}


def seed(runtime: Runtime, root: Path, *, asset: str = "model-a", approved: bool = True) -> None:
    """In-process setup: v1, v2 (approved unless told not to) and v3 in production."""
    build_scenario(runtime, root, asset=asset, approved=("v1", "v2") if approved else ())


def stored(home: Path, asset: str, label: str, relative: str = "weights.bin") -> Path:
    """A stored file of a version."""
    return home / "store" / "assets" / asset / "versions" / label / relative


def on_disk_production(home: Path, asset: str) -> str:
    """The version the production symlink serves."""
    return Path(os.readlink(home / "store" / "assets" / asset / "production")).name


def snapshot(runtime: Runtime, home: Path) -> dict[str, Any]:
    """Every database row and every path (with symlink targets) under the home's state dirs."""
    rows: dict[str, list[tuple[str, ...]]] = {}
    with runtime.db.read_session() as session:
        for name, table in SQLModel.metadata.tables.items():
            found = session.execute(select(table)).all()
            rows[name] = sorted(tuple(str(value) for value in row) for row in found)
    paths = []
    for top in ("store", "evidence"):
        for path in sorted((home / top).rglob("*")):
            target = os.readlink(path) if path.is_symlink() else None
            paths.append((str(path.relative_to(home)), target))
    return {"rows": rows, "paths": paths}


def malicious_pickle(sentinel: Path) -> bytes:
    """A pickle that would create ``sentinel`` if anything ever loaded it."""

    class Payload:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return (os.system, (f"touch {shlex.quote(str(sentinel))}",))

    return pickle.dumps({"vocab": ["a"], "hook": Payload()}, protocol=4)


def edit_event(database_url: str, seq: int, actor: str) -> None:
    """Alter one stored timeline event directly in the database, bypassing rearguard."""
    statement = "UPDATE timeline_event SET actor = {mark} WHERE seq = {mark}"
    if database_url.startswith("sqlite:///"):
        connection = sqlite3.connect(database_url.removeprefix("sqlite:///"))
        with connection:
            connection.execute(statement.format(mark="?"), (actor, seq))
        connection.close()
        return
    import psycopg

    with psycopg.connect(database_url) as connection:
        connection.execute(statement.format(mark="%s"), (actor, seq))


# -- whole flows ------------------------------------------------------------------------------


def test_register_approve_promote_verify_and_recover(  # type: ignore[no-untyped-def]
    cli, home: Path, tmp_path: Path
) -> None:
    for label in ("v1", "v2", "v3"):
        source = write_source(tmp_path, "model-a", label, weights(label))
        kind = ["--kind", "model"] if label == "v1" else []
        registered = as_json(
            cli("assets", "register", "model-a", str(source), "--version", label, *kind, "--json")
        )
        assert registered["asset"] == "model-a" and registered["version"] == label
        assert registered["kind"] == "model"
        assert registered["files"] == [
            {
                "path": "weights.bin",
                "sha256": hashlib.sha256(weights(label)["weights.bin"]).hexdigest(),
                "size": len(weights(label)["weights.bin"]),
            }
        ]
    for label in ("v1", "v2"):
        approved = ok(cli("assets", "approve", "model-a", label, "--by", "alice"))
        assert f"model-a@{label} is known_good (approved by alice)" in approved.stdout
    ok(cli("assets", "promote", "model-a", "v3"))

    assert as_json(cli("assets", "list", "--json")) == [
        {
            "name": "model-a",
            "kind": "model",
            "production": "v3",
            "production_status": "candidate",
            "production_reason": None,
            "trained_on": None,
            "versions": 3,
            "known_good": 2,
        }
    ]
    shown = as_json(cli("assets", "show", "model-a", "--json"))
    assert shown["production"] == "v3"
    assert {v["label"]: v["status"] for v in shown["versions"]} == {
        "v1": "known_good",
        "v2": "known_good",
        "v3": "candidate",
    }
    assert {v["label"]: v["approved_by"] for v in shown["versions"]} == {
        "v1": "alice",
        "v2": "alice",
        "v3": None,
    }
    assert Path(shown["alias_location"]).resolve() == stored(home, "model-a", "v3").parent
    verified = as_json(cli("assets", "verify", "--json"))
    assert verified["ok"] is True
    assert sorted(v["version"] for v in verified["versions"]) == ["v1", "v2", "v3"]

    tamper(stored(home, "model-a", "v3"))
    failing = cli("assets", "verify", "model-a")
    assert failing.returncode == 3, failing.stderr
    assert "FAIL model-a@v3" in failing.stdout
    assert "weights.bin: sha256 mismatch" in failing.stdout
    assert "1 of 3 version(s) failed verification" in failing.stderr

    opened = as_json(
        cli(
            "incident",
            "open",
            "--type",
            "model_compromise",
            "--asset",
            "model-a",
            "--severity",
            "sev1",
            "--summary",
            "drift after the v3 release",
            "--json",
        )
    )
    assert opened["status"] == "recovered"
    assert opened["production"] == "v2"
    assert opened["state"] == {"compromised": "v3", "selected": "v2"}
    assert opened["severity"] == "sev1" and opened["summary"] == "drift after the v3 release"
    assert on_disk_production(home, "model-a") == "v2"

    incident = as_json(cli("incident", "show", str(opened["id"]), "--json"))
    assert incident["status"] == "recovered" and incident["production"] == "v2"
    timeline = incident["timeline"]
    steps = [(e["kind"], e["action"]) for e in timeline if e["kind"] in ("intent", "outcome")]
    assert steps == [
        (kind, step) for step in MODEL_COMPROMISE_STEPS for kind in ("intent", "outcome")
    ]
    seqs = [e["seq"] for e in incident["timeline"]]
    assert seqs == sorted(seqs)
    listed = as_json(cli("incident", "list", "--json"))
    assert [(i["id"], i["status"], i["asset"]) for i in listed] == [
        (opened["id"], "recovered", "model-a")
    ]
    playbooks = as_json(cli("playbook", "list", "--json"))
    (compromise,) = [p for p in playbooks if p["type"] == "model_compromise"]
    assert compromise["steps"] == list(CATALOG["model_compromise"].steps)
    assert "AML.T0018" in compromise["atlas_ids"]

    chain = as_json(cli("audit", "verify", "--json"))
    assert chain["ok"] is True and chain["first_bad"] is None
    assert chain["events"] == chain["last_seq"] == incident["timeline"][-1]["seq"]

    after = as_json(cli("assets", "show", "model-a", "--json"))
    assert {v["label"]: v["status"] for v in after["versions"]} == {
        "v1": "known_good",
        "v2": "known_good",
        "v3": "quarantined",
    }


def test_incident_open_exits_1_when_no_known_good(  # type: ignore[no-untyped-def]
    cli, runtime: Runtime, home: Path, tmp_path: Path
) -> None:
    seed(runtime, tmp_path, approved=False)
    tamper(stored(home, "model-a", "v3"))

    result = cli("incident", "open", "--type", "model_compromise", "--asset", "model-a")

    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    assert "incident 1: failed; model-a production -> v3" in result.stdout
    assert (
        "reason: no known-good version of model-a qualifies: the asset has no known-good version"
        in result.stdout
    )
    assert on_disk_production(home, "model-a") == "v3"
    shown = as_json(cli("incident", "show", "1", "--json"))
    assert shown["status"] == "failed" and shown["production"] == "v3"
    assert shown["reason"].startswith("no known-good version of model-a qualifies")


def test_verify_and_approve_name_a_dangerous_pickle(  # type: ignore[no-untyped-def]
    cli, runtime: Runtime, home: Path, tmp_path: Path
) -> None:
    sentinel = tmp_path / "PWNED"
    files = {"weights.bin": b"w", "tokenizer.pkl": malicious_pickle(sentinel)}
    evil = write_source(tmp_path, "model-a", "v1", files)
    registered = cli(
        "assets", "register", "model-a", str(evil), "--version", "v1", "--kind", "model"
    )
    # Registered for the record, as suspect: the scan found what would run on load.
    assert registered.returncode == 3, registered.stderr
    assert "status suspect" in registered.stdout and "registered as suspect" in registered.stderr

    refused = cli("assets", "approve", "model-a", "v1", "--by", "alice")
    line = assert_error(refused, "model-a@v1 fails verification", code=3)
    assert "tokenizer.pkl @" in line and "dangerous posix.system" in line

    verified = cli("assets", "verify", "--json")
    assert verified.returncode == 3
    (report,) = json.loads(verified.stdout)["versions"]
    assert report["ok"] is False and report["status"] == "suspect"
    assert any(p.startswith("tokenizer.pkl @") and "posix.system" in p for p in report["problems"])
    assert report["findings"][0]["construct"] == "posix.system"
    human = cli("assets", "verify", "model-a")
    assert human.returncode == 3
    assert "tokenizer.pkl" in human.stdout and "posix.system" in human.stdout
    assert not sentinel.exists(), "the pickle was loaded"


def test_audit_verify_names_an_edited_event(  # type: ignore[no-untyped-def]
    cli, runtime: Runtime, database_url: str, tmp_path: Path
) -> None:
    seed(runtime, tmp_path)
    intact = as_json(cli("audit", "verify", "--json"))
    assert intact["ok"] is True and intact["events"] >= 5

    edit_event(database_url, 3, "mallory")

    broken = cli("audit", "verify")
    assert broken.returncode == 3, (broken.stdout, broken.stderr)
    assert "Traceback" not in broken.stdout + broken.stderr
    assert "audit chain broken at event 3: hash does not match its content" in broken.stderr
    report = json.loads(cli("audit", "verify", "--json").stdout)
    assert report["ok"] is False
    assert report["first_bad"]["seq"] == 3
    assert report["events"] == 2


# -- bad input --------------------------------------------------------------------------------

BAD_INPUT = {
    "unknown asset": (["assets", "show", "nope"], "unknown asset 'nope'"),
    "unknown asset verify": (["assets", "verify", "nope"], "unknown asset 'nope'"),
    "unknown version approve": (
        ["assets", "approve", "model-a", "v9", "--by", "al"],
        "asset 'model-a' has no version 'v9'",
    ),
    "unknown version promote": (
        ["assets", "promote", "model-a", "v9"],
        "asset 'model-a' has no version 'v9'",
    ),
    "unknown incident type": (
        ["incident", "open", "--type", "ransomware", "--asset", "model-a"],
        "unknown incident type 'ransomware'",
    ),
    "incident on unknown asset": (
        ["incident", "open", "--type", "model_compromise", "--asset", "nope"],
        "unknown asset 'nope'",
    ),
    "unknown incident id": (["incident", "show", "999"], "unknown incident 999"),
    "playbook run unknown incident": (
        ["playbook", "run", "--incident", "999"],
        "unknown incident 999",
    ),
    "missing path": (
        ["assets", "register", "model-a", "{missing}", "--version", "v9"],
        "does not exist",
    ),
    "symlink escaping its root": (
        ["assets", "register", "model-a", "{escaping}", "--version", "v9"],
        "outside",
    ),
    "malformed since": (
        ["incident", "open", "--type", "model_compromise", "--asset", "model-a", "--since", "noon"],
        "invalid --since 'noon'",
    ),
    "since in the future": (
        [
            "incident",
            "open",
            "--type",
            "model_compromise",
            "--asset",
            "model-a",
            "--since",
            "2999-01-01T00:00:00Z",
        ],
        "is in the future",
    ),
    "label registered twice": (
        ["assets", "register", "model-a", "{source}", "--version", "v1"],
        "model-a@v1 is already registered",
    ),
    "invalid asset name": (
        ["assets", "register", "../x", "{source}", "--version", "v1", "--kind", "model"],
        "invalid asset name '../x'",
    ),
    "invalid version label": (
        ["assets", "register", "model-a", "{source}", "--version", "../../v9"],
        "invalid version label '../../v9'",
    ),
    # One argument cannot exceed 128 KiB on Linux (MAX_ARG_STRLEN), so not the full megabyte.
    "hostile huge summary": (
        [
            "incident",
            "open",
            "--type",
            "model_compromise",
            "--asset",
            "model-a",
            "--summary",
            "{huge}",
        ],
        "the summary is 120000 characters; at most 10000",
    ),
    "wrong kind for the playbook": (
        ["incident", "open", "--type", "model_compromise", "--asset", "dataset-a"],
        "model_compromise handles model, prompt, config assets; 'dataset-a' is a dataset",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_exit_2_and_changes_nothing(  # type: ignore[no-untyped-def]
    cli, runtime: Runtime, home: Path, tmp_path: Path, case: str
) -> None:
    seed(runtime, tmp_path)
    register_version(
        db=runtime.db,
        registry=runtime.registry,
        name="dataset-a",
        source=write_source(tmp_path, "dataset-a", "d1", {"rows.csv": b"a,b\n1,2\n"}),
        label="d1",
        kind=AssetKind.DATASET,
        actor="test",
    )
    escaping = write_source(tmp_path, "escape", "v9", {"weights.bin": b"w"})
    (escaping / "passwd").symlink_to("/etc/passwd")
    values = {
        "missing": str(tmp_path / "does-not-exist"),
        "escaping": str(escaping),
        "source": str(write_source(tmp_path, "again", "v1", {"weights.bin": b"other"})),
        "huge": "A" * 120_000,
    }
    args, needle = BAD_INPUT[case]
    before = snapshot(runtime, home)

    result = cli(*[arg.format(**values) for arg in args])

    assert_error(result, needle)
    assert result.stdout == ""
    assert snapshot(runtime, home) == before


ID_PAST_ANY_ROW = str(MAX_ROW_ID + 1)
OUT_OF_RANGE = {
    "incident show": ["incident", "show", ID_PAST_ANY_ROW],
    "incident resolve": ["incident", "resolve", ID_PAST_ANY_ROW],
    "export": ["export", ID_PAST_ANY_ROW, "--format", "jsonl"],
    "approve": ["approve", ID_PAST_ANY_ROW, "--as", "alice"],
    "playbook run": ["playbook", "run", "--incident", ID_PAST_ANY_ROW],
    "approvals of one incident": ["approvals", "list", "--incident", ID_PAST_ANY_ROW],
    "notifications of one incident": ["notifications", "list", "--incident", "0"],
    "limit of none": ["notifications", "list", "--limit", "0"],
    "limit past any row": ["approvals", "list", "--limit", ID_PAST_ANY_ROW],
}


@pytest.mark.parametrize("case", list(OUT_OF_RANGE))
def test_numbers_no_row_can_have_are_usage_errors(cli, case: str) -> None:  # type: ignore[no-untyped-def]
    result = cli(*OUT_OF_RANGE[case])

    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Invalid value for" in result.stderr
    assert "internal error" not in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_the_largest_id_a_row_can_have_is_an_unknown_incident(cli) -> None:  # type: ignore[no-untyped-def]
    assert_error(cli("incident", "show", str(MAX_ROW_ID)), f"unknown incident {MAX_ROW_ID}")


def test_malformed_config_file_in_the_home_is_one_line_exit_2(
    cli_env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    (home / "rearguard.toml").write_text("[registry\nalias = 'production'\n")

    # Run from elsewhere: the file is found through REARGUARD_HOME, not the working directory.
    result = run_cli("assets", "list", env=cli_env, cwd=tmp_path)

    assert_error(result, f"cannot read {home / 'rearguard.toml'}")
    assert result.stdout == ""
    assert "hint: fix or remove the file" in result.stderr


def test_empty_registry_lists_and_verifies_nothing(cli) -> None:  # type: ignore[no-untyped-def]
    listed = ok(cli("assets", "list"))
    assert "no assets registered yet" in listed.stderr
    assert as_json(cli("assets", "list", "--json")) == []
    verified = ok(cli("assets", "verify"))
    assert "nothing to verify" in verified.stderr


def embedded_env(prefect_api_url: str) -> dict[str, str]:
    """The environment of a user with no rearguard settings, on the session's Prefect server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REARGUARD_")}
    return {**env, "PREFECT_API_URL": prefect_api_url, "COLUMNS": "200"}


def test_help_lists_the_command_groups(prefect_api_url: str) -> None:
    result = ok(run_cli("--help", env=embedded_env(prefect_api_url)))
    for group in ("assets", "incident", "playbook", "audit", "demo"):
        assert group in result.stdout


def test_demo_recovers_on_its_own_database(  # type: ignore[no-untyped-def]
    cli, cli_env: dict[str, str], mlflow_env: dict[str, str], tmp_path: Path
) -> None:
    # The environment names the test's database and an MLflow registry; the demo must write
    # nothing into either.
    demo_home = tmp_path / "demo"

    env = {**cli_env, **mlflow_env}
    result = ok(run_cli("demo", "--home", str(demo_home), env=env, cwd=tmp_path))

    assert "incident 1: recovered; demo-model production -> v2" in result.stdout
    assert "audit chain: intact" in result.stdout
    link = demo_home / "store" / "assets" / "demo-model" / "production"
    assert Path(os.readlink(link)).name == "v2"
    assert (demo_home / "rearguard.db").is_file()
    own_env = {k: v for k, v in cli_env.items() if k != "REARGUARD_DATABASE_URL"}
    chain = as_json(run_cli("--home", str(demo_home), "audit", "verify", "--json", env=own_env))
    assert chain["ok"] is True and chain["events"] > 0
    assert as_json(cli("assets", "list", "--json")) == []
    from mlflow import MlflowClient

    assert (
        MlflowClient(mlflow_env["REARGUARD_REGISTRY_TRACKING_URI"]).search_registered_models() == []
    )


def test_demo_refuses_a_non_empty_home(prefect_api_url: str, tmp_path: Path) -> None:
    env = embedded_env(prefect_api_url)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")

    result = run_cli("demo", "--home", str(tmp_path / "busy"), env=env, cwd=tmp_path)

    assert_error(result, "is not empty")
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["keep.txt"]
