"""What rearguard keeps in its home is its owner's alone, whatever the umask: the home 0700,
the database, the evidence, the reviews and the notifications file without group or other
bits; and an SMTP login that would send its password in clear is refused unless allowed."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from notification_helpers import new_incident
from scenarios import build_scenario

from rearguard.flows.exports.export import write_reviews
from rearguard.models.assets.versions import get_asset, get_version, manifest_of
from rearguard.models.config.settings import load_settings
from rearguard.models.errors import ConfigurationError
from rearguard.models.recovery.evidence import preserve_evidence
from rearguard.models.runtime import Runtime
from rearguard.notifications.dispatcher import Dispatcher
from rearguard.notifications.factory import build_channel
from rearguard.notifications.notify import notify


@pytest.fixture
def usual_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def private(path: Path) -> bool:
    """No permission for the group or others."""
    return mode(path) & 0o077 == 0


def test_the_home_and_everything_in_it_are_the_owners_alone(
    usual_umask: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "fresh" / "home"
    monkeypatch.chdir(tmp_path)
    runtime = Runtime.from_settings(load_settings(home=home))
    try:
        assert mode(home) == 0o700
        assert mode(home.parent) == 0o755  # only the home itself is made private
        build_scenario(runtime, tmp_path / "src", asset="model-a")
        database = home / "rearguard.db"
        assert private(database)
        assert all(private(p) for p in home.glob("rearguard.db-*")), list(home.iterdir())

        incident_id = new_incident(runtime)
        notify(runtime=runtime, incident_id=incident_id, event="opened")
        with Dispatcher(settings=runtime.settings, db=runtime.db) as dispatcher:
            dispatcher.drain(wait_s=5)
        assert private(runtime.settings.notification_file)

        reviews = write_reviews(db=runtime.db, incident_id=incident_id, directory=home / "reviews")
        assert private(home / "reviews") and all(private(p) for p in reviews)

        with runtime.db.read_session() as session:
            version = get_version(
                session=session, asset=get_asset(session=session, name="model-a"), label="v3"
            )
            manifest = manifest_of(session=session, version=version)
        evidence = home / "evidence" / "incident-1"
        preserve_evidence(
            registry=runtime.registry,
            asset="model-a",
            label="v3",
            manifest=manifest,
            destination=evidence,
            incident_id=incident_id,
        )
        kept = [evidence, *evidence.rglob("*")]
        assert len(kept) > 2 and all(private(p) for p in kept), [(p, oct(mode(p))) for p in kept]
    finally:
        for dirpath, _dirs, _files in os.walk(tmp_path):
            Path(dirpath).chmod(0o755)  # let pytest remove the read-only evidence
        runtime.db.dispose()


def test_an_existing_home_keeps_the_mode_its_owner_gave_it(
    usual_umask: None, tmp_path: Path
) -> None:
    home = tmp_path / "shared"
    home.mkdir(mode=0o750)
    load_settings(home=home)
    assert mode(home) == 0o750


def test_smtp_login_in_clear_is_refused_unless_allowed_and_then_warned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    toml = '[notifications.email]\nhost = "mail.internal"\nport = 25\nsecurity = "none"\n'
    toml += 'username = "rearguard"\n'
    (tmp_path / "rearguard.toml").write_text(toml)
    with pytest.raises(ConfigurationError, match="password in clear") as refused:
        build_channel("email", load_settings(home=tmp_path))
    assert "allow_plaintext_auth" in (refused.value.hint or "")

    (tmp_path / "rearguard.toml").write_text(toml + "allow_plaintext_auth = true\n")
    with caplog.at_level(logging.WARNING):
        build_channel("email", load_settings(home=tmp_path))
    assert "the password travels in clear" in caplog.text

    # Without a login nothing secret travels: no refusal, no warning.
    caplog.clear()
    (tmp_path / "rearguard.toml").write_text(toml.replace('username = "rearguard"\n', ""))
    build_channel("email", load_settings(home=tmp_path))
    assert "clear" not in caplog.text
