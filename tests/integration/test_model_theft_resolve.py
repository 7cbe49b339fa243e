"""model_theft ends contained (a stolen model cannot be restored): a person resolves it with a
note; legal and privacy are told once, whether or not the credential hooks work."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from scenarios import add_version, approve, promote

from rearguard.models.runtime import Runtime

OPEN = ("incident", "open", "--type", "model_theft", "--asset", "m")


def sent(runtime: Runtime, incident_id: int) -> list[dict]:
    lines = runtime.settings.notification_file.read_text().splitlines()
    return [m for m in map(json.loads, lines) if m["incident_id"] == incident_id]


def legal_notices(runtime: Runtime, incident_id: int) -> list[dict]:
    return [m for m in sent(runtime, incident_id) if "UK GDPR" in m["body"]]


def setup_theft(runtime: Runtime, home: Path, tmp_path: Path, *, hook: bool) -> None:
    add_version(runtime, tmp_path, "m", "v1")
    approve(runtime, "m", "v1")
    promote(runtime, "m", "v1")
    toml = "[assets.m]\npersonal_data = true\n"
    if hook:
        argv = json.dumps([sys.executable, "-c", "print('rotated')"])
        toml = f'[hooks.rotate_credentials]\nargv = {argv}\ncredentials = ["api-key"]\n' + toml
    (home / "rearguard.toml").write_text(toml)


def test_a_contained_model_theft_is_resolved_with_a_note_and_legal_is_told_once(
    cli, runtime: Runtime, home: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    setup_theft(runtime, home, tmp_path, hook=True)

    done = cli(*OPEN)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "incident 1: contained" in done.stdout
    assert 'rearguard incident resolve 1 --note "how it was closed"' in done.stderr
    assert len(legal_notices(runtime, 1)) == 1
    (contained,) = [
        m for m in sent(runtime, 1) if "contained" in m["title"] and "UK GDPR" not in m["body"]
    ]
    # Nothing was quarantined: the message must not say so.
    assert "quarantined" not in contained["title"]
    assert (
        "Nothing was quarantined: production of m serves v1 (v1 is known_good)."
        in contained["body"]
    )

    rerun = cli("playbook", "run", "--incident", "1")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert len(legal_notices(runtime, 1)) == 1  # not sent again

    bare = cli("incident", "resolve", "1")
    assert bare.returncode == 2
    assert "ended contained; resolving it needs a note" in bare.stderr
    resolved = cli(
        "incident", "resolve", "1", "--note", "keys rotated, access logs reviewed", "--json"
    )
    assert resolved.returncode == 0, resolved.stderr
    assert json.loads(resolved.stdout)["status"] == "resolved"
    shown = json.loads(cli("incident", "show", "1", "--json").stdout)
    (decision,) = [e for e in shown["timeline"] if e["action"] == "incident.resolve"]
    assert decision["actor"] == "operator"
    assert decision["data"] == {"from": "contained", "note": "keys rotated, access logs reviewed"}


def test_the_legal_notice_goes_even_when_the_credential_hook_is_missing(
    cli, runtime: Runtime, home: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    setup_theft(runtime, home, tmp_path, hook=False)

    done = cli(*OPEN)

    assert done.returncode == 1, done.stdout + done.stderr
    assert "incident 1: failed" in done.stdout
    assert "rotate_credentials" in done.stdout
    (notice,) = legal_notices(runtime, 1)
    assert "within 72 hours" in notice["body"]
