"""Ways out of a dead end, each a chain event with who and why: release a false alarm, retire a
version, lift a denylisted digest, set or clear an asset's check."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from scenarios import (
    add_version,
    approve,
    build_scenario,
    production_on_disk,
    promote,
)
from sqlmodel import select

from rearguard.models.assets.versions import get_asset, get_version
from rearguard.models.db.tables import TimelineEvent
from rearguard.models.runtime import Runtime


def status_of(runtime: Runtime, asset: str, label: str) -> str:
    with runtime.db.read_session() as session:
        found = get_asset(session=session, name=asset)
        return str(get_version(session=session, asset=found, label=label).status)


def events(runtime: Runtime, action: str) -> list[TimelineEvent]:
    with runtime.db.read_session() as session:
        return list(session.exec(select(TimelineEvent).where(TimelineEvent.action == action)))


def test_a_released_false_alarm_version_can_then_be_approved_and_promoted(
    cli, runtime: Runtime, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    # Nothing was tampered with: v2 in production, the alarm was false.
    build_scenario(runtime, tmp_path, production="v2")
    opened = cli("incident", "open", "--type", "model_compromise", "--asset", "model-a")
    assert opened.returncode == 0, opened.stdout + opened.stderr
    assert status_of(runtime, "model-a", "v2") == "quarantined"
    assert production_on_disk(runtime, "model-a") == "v1"

    refused = cli("assets", "approve", "model-a", "v2", "--by", "alice")
    assert refused.returncode == 2 and "quarantined" in refused.stderr
    no_reason = cli("assets", "release", "model-a", "v2", "--by", "alice")
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    released = cli(
        "assets", "release", "model-a", "v2", "--by", "alice", "--reason", "false alarm", "--json"
    )
    assert released.returncode == 0, released.stderr
    assert json.loads(released.stdout)["after"] == "candidate"
    shown = json.loads(cli("assets", "show", "model-a", "--json").stdout)
    (v2,) = [v for v in shown["versions"] if v["label"] == "v2"]
    assert (v2["status"], v2["approved_by"]) == ("candidate", None)
    assert v2["status_reason"] == "released by alice: false alarm"

    assert cli("assets", "approve", "model-a", "v2", "--by", "bob").returncode == 0
    assert cli("assets", "promote", "model-a", "v2", "--by", "bob").returncode == 0
    assert status_of(runtime, "model-a", "v2") == "known_good"
    assert production_on_disk(runtime, "model-a") == "v2"
    (event,) = events(runtime, "version.candidate")
    assert (event.actor, event.version) == ("alice", "v2")
    assert json.loads(event.data)["reason"] == "released by alice: false alarm"
    assert cli("audit", "verify").returncode == 0


def test_a_version_whose_bytes_changed_is_not_released(
    cli, runtime: Runtime, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    build_scenario(runtime, tmp_path, tampered=True)
    assert (
        cli("incident", "open", "--type", "model_compromise", "--asset", "model-a").returncode == 0
    )

    refused = cli("assets", "release", "model-a", "v3", "--reason", "looks fine to me")

    assert refused.returncode == 3, refused.stderr
    assert "fails verification, so it stays quarantined" in refused.stderr
    assert status_of(runtime, "model-a", "v3") == "quarantined"
    candidate = cli("assets", "release", "model-a", "v1", "--reason", "x")
    assert candidate.returncode == 2 and "only a quarantined or suspect" in candidate.stderr


def test_retire_never_the_production_version(cli, runtime: Runtime, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    build_scenario(runtime, tmp_path, production="v2")

    refused = cli("assets", "retire", "model-a", "v2", "--reason", "old")
    assert refused.returncode == 2 and "is what production serves" in refused.stderr
    retired = cli("assets", "retire", "model-a", "v1", "--by", "carol", "--reason", "superseded")
    assert retired.returncode == 0, retired.stderr
    assert "known_good -> retired (by carol)" in retired.stdout
    assert status_of(runtime, "model-a", "v1") == "retired"
    promoted = cli("assets", "promote", "model-a", "v1")
    assert promoted.returncode == 2 and "retired" in promoted.stderr
    (event,) = events(runtime, "version.retired")
    assert event.actor == "carol" and "superseded" in json.loads(event.data)["reason"]


def test_the_denylist_is_listed_and_an_entry_lifted(cli, runtime: Runtime, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    vendor = b"vendor library, later cleared" * 8
    add_version(runtime, tmp_path, "m", "v1")
    add_version(runtime, tmp_path, "m", "v2", files={"w.bin": b"2", "libvendor.so": vendor})
    approve(runtime, "m", "v1")
    promote(runtime, "m", "v1")
    digest = hashlib.sha256(vendor).hexdigest()
    opened = cli("incident", "open", "--type", "supply_chain", "--digest", digest)
    assert opened.returncode == 0, opened.stdout + opened.stderr

    (entry,) = json.loads(cli("denylist", "list", "--json").stdout)
    assert entry["sha256"] == digest and entry["incident_id"] == 1
    assert digest in cli("denylist", "list").stdout
    removed = cli(
        "denylist", "remove", digest.upper(), "--by", "dana", "--reason", "vendor cleared"
    )
    assert removed.returncode == 0, removed.stderr
    assert json.loads(cli("denylist", "list", "--json").stdout) == []
    again = cli("denylist", "remove", digest, "--reason", "twice")
    assert again.returncode == 2 and "not on the denylist" in again.stderr
    (event,) = events(runtime, "denylist.removed")
    assert event.actor == "dana" and json.loads(event.data)["reason"] == "vendor cleared"
    # The version quarantined for it is released per version, once its bytes re-verify.
    assert status_of(runtime, "m", "v2") == "quarantined"
    released = cli("assets", "release", "m", "v2", "--reason", "vendor cleared")
    assert released.returncode == 0, released.stderr


def test_an_asset_check_is_set_and_cleared_without_a_version(
    cli, runtime: Runtime, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    build_scenario(runtime, tmp_path, production="v2")
    checks = tmp_path / "checks"
    checks.mkdir()
    (checks / "smoke.py").write_text("import sys\nsys.exit(0)\n")
    set_ = cli(
        "assets",
        "check",
        "model-a",
        "--set",
        f"{sys.executable} {checks / 'smoke.py'} $REARGUARD_ASSET_PATH",
        "--reason",
        "new smoke test",
    )
    assert set_.returncode == 0, set_.stderr
    shown = json.loads(cli("assets", "check", "model-a", "--json").stdout)
    assert str(checks / "smoke.py") in shown["validate_command"]
    assert cli("assets", "check", "model-a", "--clear", "--by", "erin").returncode == 0
    assert (
        json.loads(cli("assets", "check", "model-a", "--json").stdout)["validate_command"] is None
    )
    both = cli("assets", "check", "model-a", "--set", "true", "--clear")
    assert both.returncode == 2
    (was_set,) = events(runtime, "asset.check_set")
    (cleared,) = events(runtime, "asset.check_cleared")
    assert json.loads(was_set.data)["reason"] == "new smoke test" and was_set.actor == "operator"
    assert cleared.actor == "erin"
