"""What findings mean for trust: registration makes a flagged version suspect, approval and
promotion refuse it, and a person's per-asset allowance is recorded with who and why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import col, select

from rearguard.models.assets.versions import (
    approve_version,
    get_asset,
    get_version,
    promote_version,
    register_version,
)
from rearguard.models.config.settings import load_settings
from rearguard.models.db.tables import TimelineEvent
from rearguard.models.enums import AssetKind, VersionStatus
from rearguard.models.errors import ConfigurationError, IntegrityViolation, UsageError
from rearguard.models.integrity.scan.findings import Location, Severity
from rearguard.models.integrity.scan.policy import ScanPolicy, policy_for
from rearguard.models.runtime import Runtime

# A protocol 2 pickle of an instance of a class that is not on the allow-list.
CUSTOM_CLASS = b"\x80\x02cmypkg.models\nModel\n)\x81}X\x01\x00\x00\x00wK\x01sb."
SYSTEM = b"\x80\x02cposix\nsystem\nX\x02\x00\x00\x00id\x85R."

ALLOWANCE = """
[assets.model.scanning]
allow = ["mypkg.models.Model", "posix.system"]
allowed_by = "Dana Reviewer"
reason = "our own model class, reviewed in SEC-123"
"""


def register(runtime: Runtime, source: Path, label: str, policy: ScanPolicy | None = None):
    return register_version(
        db=runtime.db,
        registry=runtime.registry,
        name="model",
        source=source,
        label=label,
        kind=AssetKind.MODEL,
        actor="tester",
        policy=policy,
    )


def events(runtime: Runtime, action: str) -> list[tuple[str, dict]]:
    """(actor, data) of the timeline's events with this action, in order."""
    with runtime.db.read_session() as session:
        rows = session.exec(
            select(TimelineEvent)
            .where(TimelineEvent.action == action)
            .order_by(col(TimelineEvent.seq))
        )
        return [(row.actor, json.loads(row.data)) for row in rows]


def settings_with(home: Path, text: str):
    (home / "rearguard.toml").write_text(text)
    return load_settings(home=home)


def test_a_flagged_version_is_registered_as_suspect_and_can_never_be_approved(
    runtime: Runtime, make_version
) -> None:
    result = register(runtime, make_version("v1", {"weights.dat": SYSTEM}), "v1")

    assert result.status == VersionStatus.SUSPECT
    with runtime.db.read_session() as session:
        version = get_version(
            session=session, asset=get_asset(session=session, name="model"), label="v1"
        )
        assert version.status == VersionStatus.SUSPECT
        assert "posix.system" in (version.status_reason or "")
    ((_, registered),) = events(runtime, "asset.registered")
    assert registered["status"] == "suspect"
    assert registered["scan"]["findings"][0]["construct"] == "posix.system"
    with pytest.raises(IntegrityViolation, match=r"posix\.system"):
        approve_version(db=runtime.db, registry=runtime.registry, name="model", label="v1", by="a")


def test_an_unknown_class_blocks_approval_and_promotion_by_default(
    runtime: Runtime, make_version
) -> None:
    result = register(runtime, make_version("v1", {"model.bin": CUSTOM_CLASS}), "v1")

    assert result.status == VersionStatus.SUSPECT
    assert result.scan is not None
    assert [f.severity for f in result.scan.findings] == [Severity.UNKNOWN]
    with pytest.raises(IntegrityViolation, match=r"mypkg\.models\.Model"):
        approve_version(db=runtime.db, registry=runtime.registry, name="model", label="v1", by="a")
    with pytest.raises(UsageError, match="suspect"):
        promote_version(
            db=runtime.db,
            registry=runtime.registry,
            name="model",
            label="v1",
            alias="production",
            actor="a",
        )


def test_a_persons_allowance_is_used_and_recorded_with_who_and_why(
    runtime: Runtime, make_version, home: Path
) -> None:
    policy = policy_for(settings_with(home, ALLOWANCE), "model")

    result = register(runtime, make_version("v1", {"model.bin": CUSTOM_CLASS}), "v1", policy)
    approve_version(
        db=runtime.db,
        registry=runtime.registry,
        name="model",
        label="v1",
        by="alice",
        policy=policy,
    )

    assert result.status == VersionStatus.CANDIDATE
    ((actor, allowed),) = events(runtime, "scan.allowed")
    assert actor == "alice"
    assert allowed["allowed_by"] == "Dana Reviewer"
    assert allowed["reason"] == "our own model class, reviewed in SEC-123"
    assert [f["construct"] for f in allowed["findings"]] == ["mypkg.models.Model"]
    ((_, registered),) = events(runtime, "asset.registered")
    assert registered["scan"]["allowed"]["allowed_by"] == "Dana Reviewer"


def test_an_allowance_never_accepts_a_dangerous_finding(home: Path) -> None:
    policy = policy_for(settings_with(home, ALLOWANCE), "model")
    where = Location("model.bin")

    dangerous = where.finding(
        construct="posix.system", severity=Severity.DANGEROUS, reason="runs commands"
    )
    unknown = where.finding(
        construct="mypkg.models.Model", severity=Severity.UNKNOWN, reason="not allowed"
    )

    assert policy.blocks(dangerous) and not policy.accepts(dangerous)
    assert policy.accepts(unknown) and not policy.blocks(unknown)
    assert policy_for(load_settings(home=home), "other-asset").blocks(unknown)


@pytest.mark.parametrize(
    "table",
    [
        '[assets.model.scanning]\nallow = ["mypkg.Model"]\n',
        '[assets.model.scanning]\nallow = ["mypkg.Model"]\nallowed_by = "Dana"\n',
        '[assets.model.scanning]\nallow = ["nodot"]\nallowed_by = "D"\nreason = "r"\n',
    ],
    ids=["no-who", "no-why", "not-a-dotted-name"],
)
def test_an_allowance_must_say_who_and_why(home: Path, table: str) -> None:
    with pytest.raises(ConfigurationError):
        settings_with(home, table)


def test_scanning_settings_choose_what_blocks(home: Path) -> None:
    settings = settings_with(home, '[scanning]\nblock = ["dangerous"]\n')
    unknown = Location("f").finding(construct="m.C", severity=Severity.UNKNOWN, reason="r")

    assert not policy_for(settings, "model").blocks(unknown)


def test_second_opinions_are_recorded_with_engine_name_and_version(
    runtime: Runtime, make_version, home: Path
) -> None:
    pytest.importorskip("picklescan")
    from importlib.metadata import version

    policy = policy_for(settings_with(home, '[scanning]\nengines = ["picklescan"]\n'), "model")

    result = register(runtime, make_version("v1", {"weights.dat": SYSTEM}), "v1", policy)

    assert result.scan is not None
    ((_, registered),) = events(runtime, "asset.registered")
    assert registered["scan"]["opinions"] == [
        {
            "engine": "picklescan",
            "version": version("picklescan"),
            "file": "weights.dat",
            "verdict": "flagged",
            "detail": "posix.system",
        }
    ]
    # A second opinion is recorded, never decisive: rearguard's own finding made it suspect.
    assert registered["status"] == "suspect"
