"""Every playbook says what it did: its last lines and its notifications name the assets and
versions that the timeline records as moved or quarantined, claim a validation only when one
ran, and print one line per step run, in words, fit for an 80-column terminal.

One test per catalog entry: each builds its scenario through the registry services, runs
``rearguard incident open`` in this process (the real command, under the session's Prefect
server), and reads the oracle from the timeline's state events (``alias.moved``,
``version.quarantined``) and the ``validate`` outcomes, not from what the messages are built of.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from scenarios import ALIAS, add_version, approve, build_scenario, configure, promote

from rearguard.models.assets.versions import get_asset, get_version
from rearguard.models.audit.chain import events_for_incident
from rearguard.models.db.tables import TimelineEvent
from rearguard.models.runtime import Runtime
from rearguard.playbooks.catalog import CATALOG

EVIL = b"\x7fELF backdoored vendor library" * 16
NOT_V3 = (
    "import os, pathlib, sys; root = pathlib.Path(os.environ['REARGUARD_ASSET_PATH']); "
    "sys.exit(any(b'v3' in p.read_bytes() for p in root.rglob('*') if p.is_file()))"
)
REPRS = ("['", "{'", "=None", "=True", "=False")


def check(script: str) -> str:
    """A validation command (no shell) running ``script`` with this interpreter."""
    return f"{sys.executable} -c {json.dumps(script)}"


# Each scenario builds what its playbook needs and returns `incident open`'s inputs.
Scenario = Callable[[Runtime, Path, Path], list[str]]


def model_compromise(runtime: Runtime, root: Path, home: Path) -> list[str]:
    build_scenario(runtime, root, asset="model-a", tampered=True)  # no validation check
    return ["--asset", "model-a"]


def prompt_tampering(runtime: Runtime, root: Path, home: Path) -> list[str]:
    build_scenario(
        runtime, root, asset="guard", kind="prompt", tampered=True, validate=check(NOT_V3)
    )
    return ["--asset", "guard"]


def config_tampering(runtime: Runtime, root: Path, home: Path) -> list[str]:
    build_scenario(runtime, root, asset="serving", kind="config", tampered=True)
    return ["--asset", "serving"]


def degradation(runtime: Runtime, root: Path, home: Path) -> list[str]:
    # v3 serves, fails its check: made suspect, not quarantined.
    build_scenario(runtime, root, asset="ranker", validate=check(NOT_V3), validate_all=True)
    return ["--asset", "ranker"]


def supply_chain(runtime: Runtime, root: Path, home: Path) -> list[str]:
    for label in ("v1", "v2"):
        extra = {"libvendor.so": EVIL} if label == "v2" else {}
        add_version(runtime, root, "model-a", label, files={"w.bin": label.encode(), **extra})
        approve(runtime, "model-a", label)
    promote(runtime, "model-a", "v2")
    add_version(runtime, root, "prompt-b", "v1", kind="prompt", files={"s.txt": b"1", "x": EVIL})
    return ["--digest", hashlib.sha256(EVIL).hexdigest()]


def data_poisoning(runtime: Runtime, root: Path, home: Path) -> list[str]:
    add_version(runtime, root, "corpus", "v1", kind="dataset")
    time.sleep(0.01)  # registration times are what `since` separates
    since = datetime.now(UTC).isoformat()
    add_version(runtime, root, "corpus", "v2", kind="dataset")
    for label in ("v1", "v2"):
        add_version(runtime, root, "model-a", label, trained_on=f"corpus@{label}")
        approve(runtime, "model-a", label)
    promote(runtime, "model-a", "v2")
    return ["--dataset", "corpus", "--since", since]


def model_theft(runtime: Runtime, root: Path, home: Path) -> list[str]:
    add_version(runtime, root, "model-m", "v1")
    approve(runtime, "model-m", "v1")
    promote(runtime, "model-m", "v1")
    argv = json.dumps([sys.executable, "-c", "print('rotated')"])
    configure(runtime, home, f"[hooks.rotate_credentials]\nargv = {argv}\n")
    return ["--asset", "model-m"]


SCENARIOS: dict[str, tuple[Scenario, str, list[tuple[str, str, str]]]] = {
    # type: (scenario, how it ends, the alias moves it must make: asset, from, to)
    "model_compromise": (model_compromise, "recovered", [("model-a", "v3", "v2")]),
    "prompt_tampering": (prompt_tampering, "recovered", [("guard", "v3", "v2")]),
    "config_tampering": (config_tampering, "recovered", [("serving", "v3", "v2")]),
    "degradation": (degradation, "recovered", [("ranker", "v3", "v2")]),
    "supply_chain": (supply_chain, "recovered", [("model-a", "v2", "v1")]),
    "data_poisoning": (data_poisoning, "recovered", [("model-a", "v2", "v1")]),
    "model_theft": (model_theft, "contained", []),
}


def timeline(runtime: Runtime) -> list[TimelineEvent]:
    with runtime.db.read_session() as session:
        return events_for_incident(session=session, incident_id=1)


def status_of(runtime: Runtime, asset: str, label: str) -> str:
    with runtime.db.read_session() as session:
        found = get_asset(session=session, name=asset)
        return str(get_version(session=session, asset=found, label=label).status)


def sent(runtime: Runtime) -> dict[str, dict[str, Any]]:
    """The file channel's messages of incident 1, by event (legal's notice under "legal")."""
    lines = runtime.settings.notification_file.read_text().splitlines()
    found: dict[str, dict[str, Any]] = {}
    for message in map(json.loads, lines):
        legal = "UK GDPR" in message["body"] or "personal data" in message["body"]
        found["legal" if legal else message["event"]] = message
    return found


@pytest.mark.parametrize("incident_type", sorted(CATALOG))
def test_each_playbook_says_what_its_timeline_records(  # type: ignore[no-untyped-def]
    incident_type: str,
    narrow_cli,
    runtime: Runtime,
    home: Path,
    tmp_path: Path,
    prefect_api_url: str,
) -> None:
    scenario, ending, expected_moves = SCENARIOS[incident_type]
    inputs = scenario(runtime, tmp_path, home)

    # On the session's Prefect server, as the command finds it (no background server left
    # behind for 15 minutes).
    opened = narrow_cli(
        "incident",
        "open",
        "--type",
        incident_type,
        *inputs,
        env={"PREFECT_API_URL": prefect_api_url},
    )

    assert opened.returncode == 0, opened.stdout + opened.stderr
    events = timeline(runtime)
    moves = [
        (e.asset, json.loads(e.data)["from"], json.loads(e.data)["to"])
        for e in events
        if e.action == "alias.moved"
    ]
    assert moves == expected_moves
    quarantined = [f"{e.asset}@{e.version}" for e in events if e.action == "version.quarantined"]
    validated = [
        f"{e.asset}@{json.loads(e.data)['result']['version']}"
        for e in events
        if e.kind == "outcome"
        and e.action == "validate"
        and "skipped" not in json.loads(e.data)["result"]
    ]

    # The last lines: how it ended, every alias it moved and to what, what it quarantined
    # and what passed its validation check.
    first, *rest = opened.stdout.splitlines()
    assert first.startswith(f"incident 1: {ending}; ")
    why: dict[str, list[str]] = {}
    for line in rest:  # "  <label, 13 wide> <text>"
        why.setdefault(line[:15].strip(), []).append(line[16:])
    for asset, _, to in moves:
        assert f"{asset} {ALIAS} -> {to} (known_good)" in first
    assert why.get("moved", []) == [f"{a} {ALIAS}: {w} -> {t}" for a, w, t in moves]
    assert why.get("quarantined", []) == ([", ".join(quarantined)] if quarantined else [])
    assert why.get("validated", []) == ([", ".join(validated)] if validated else [])

    # The notifications say the same.
    messages = sent(runtime)
    end = messages[ending]
    for asset, was, to in moves:
        assert f"{asset} {ALIAS} -> {to}" in end["title"]
        assert f"{ALIAS} of {asset} now serves {to}" in end["body"]
        assert f"in place of {was} ({status_of(runtime, asset, was)})" in end["body"]
    every_body = " ".join(m["title"] + " " + m["body"] for m in messages.values())
    for name in quarantined:
        assert name in messages["contained"]["title"] + messages["contained"]["body"]
    claimed = re.findall(r"(\S+@\S+) passed its validation check", every_body)
    assert claimed == validated
    assert "passed validation" not in every_body
    if not quarantined:
        assert "quarantined" not in messages.get("contained", end)["title"]

    # One line per step run, in words.
    runs = Counter(e.action for e in events if e.kind == "outcome" and "step" in json.loads(e.data))
    lines = Counter(
        line.split()[1] for line in opened.stderr.splitlines() if line[:4] in ("  ✓ ", "  ✗ ")
    )
    assert lines == runs
    assert not [line for line in opened.stderr.splitlines() if line.startswith("  … ")]
    assert "Traceback" not in opened.stderr
    assert not [r for r in REPRS if r in opened.stderr]

    # incident show, at 80 columns: a table no wider, every event in words, the same end.
    shown = narrow_cli("incident", "show", "1")
    assert shown.returncode == 0, shown.stderr
    printed = shown.stdout.splitlines()
    # The table ends where the tampering playbooks' diff (printed as recorded) or the end begins.
    end_of_table = min(
        i for i, line in enumerate(printed) if line == first or line.startswith("what the")
    )
    table = printed[1:end_of_table]
    assert table and max(len(line) for line in table) <= 80
    assert not [r for r in REPRS if r in shown.stdout]
    assert printed[-len(rest) - 1 :] == [first, *rest]
