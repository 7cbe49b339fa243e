"""Signed models as an operator meets them on the command line: what each refusal says, and its
exit status (no Prefect needed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cli_helpers import rearguard
from scenarios import configure, write_source
from signing_helpers import ec_key, oms_sign, shown

from rearguard.models.assets.versions import register_version
from rearguard.models.enums import AssetKind
from rearguard.models.integrity.signatures import signing_policy
from rearguard.models.runtime import Runtime

pytestmark = pytest.mark.one_database

ASSET = "fraud-model"


def one_line_error(stderr: str) -> str:
    """The error line of a refusal, after checking that it is all there is (and its hint)."""
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr and len(lines) <= 2, stderr
    assert lines[0].startswith("error: "), stderr
    return lines[0].removeprefix("error: ")


def test_an_asset_that_requires_signatures_from_registration_to_verification(
    runtime: Runtime, home: Path, tmp_path: Path
) -> None:
    private, public = ec_key(tmp_path, "publisher")
    configure(
        runtime,
        home,
        f'[signing]\ntrusted_public_keys = ["{public}"]\n\n'
        f"[assets.{ASSET}]\nrequire_signature = true\n",
    )
    files = {"model.safetensors": b"weights " * 64, "config.json": b'{"layers": 2}'}
    signed = write_source(tmp_path, ASSET, "v1", files)
    oms_sign(signed, private)
    unsigned = write_source(tmp_path, ASSET, "v2", {**files, "config.json": b'{"layers": 3}'})
    key = f"key {shown(public)}"

    policy = signing_policy(runtime.settings, ASSET)
    for label, folder in (("v1", signed), ("v2", unsigned)):
        register_version(
            db=runtime.db,
            registry=runtime.registry,
            name=ASSET,
            source=folder,
            label=label,
            kind=AssetKind.MODEL,
            actor="pat",
            signing=policy,
        )

    refused = rearguard(runtime, "assets", "approve", ASSET, "v2", "--by", "alice")
    assert refused.returncode == 3
    assert one_line_error(refused.stderr) == (
        f"{ASSET}@v2: signature unsigned: none, and [assets.{ASSET}] require_signature expects "
        f"one by {key} ({public})"
    )

    loose = tmp_path / "loose.pem"
    shutil.copyfile(private, loose)
    loose.chmod(0o640)
    refused = rearguard(
        runtime, "assets", "sign", ASSET, "v2", "--key", str(loose), "--by", "carol"
    )
    assert refused.returncode == 2
    assert one_line_error(refused.stderr) == (
        f"the private key {loose} is readable by others (mode 640)"
    )

    signed_now = rearguard(
        runtime, "assets", "sign", ASSET, "v2", "--key", str(private), "--by", "carol"
    )
    assert signed_now.returncode == 0, signed_now.stderr
    assert f"signed {ASSET}@v2: signature verified: signed by {key}" in signed_now.stdout

    malformed = tmp_path / "truncated.sig"
    malformed.write_text((signed / "model.sig").read_text()[:100])
    refused = rearguard(
        runtime, "assets", "register", ASSET, str(unsigned), "--version", "v3",
        "--signature", str(malformed), "--by", "pat",
    )  # fmt: skip
    assert refused.returncode == 2
    assert one_line_error(refused.stderr).startswith(
        f"{malformed}: not an OMS signature bundle: not JSON"
    )

    # v2's new signature removed from the store (as someone with disk access could): verify
    # fails it, and only it.
    (home / "store" / "assets" / ASSET / "versions" / "v2" / "model.sig").unlink()
    verified = rearguard(runtime, "assets", "verify", ASSET)
    assert verified.returncode == 3
    assert f"ok   {ASSET}@v1: 2 files" in verified.stdout
    assert f"signature verified: signed by {key}" in verified.stdout
    assert f"FAIL {ASSET}@v2: 2 files" in verified.stdout
    assert "signature unsigned: none, and" in verified.stdout
