"""``rearguard demo``: a whole model-compromise incident on a throwaway home, in a minute."""

from __future__ import annotations

import json
import os
import pickle
import struct
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.rule import Rule

from rearguard.flows.cli.context import err, invocation, out, runtime
from rearguard.models.enums import AssetKind, Severity
from rearguard.models.errors import EXIT_FAILED, UsageError

ASSET = "demo-model"
APPROVER = "alice (ml-platform lead)"

# Reads the safetensors header the way a serving system would, without loading any pickle.
_VALIDATOR = (
    "import json, os, struct, sys; "
    "p = os.path.join(os.environ['REARGUARD_ASSET_PATH'], 'model.safetensors'); "
    "f = open(p, 'rb'); n = struct.unpack('<Q', f.read(8))[0]; h = json.loads(f.read(n)); "
    "sys.exit(0 if 'weight' in h else 1)"
)


def write_safetensors(path: Path, *, values: list[float]) -> None:
    """Write a real safetensors file holding one float32 tensor named ``weight``."""
    data = struct.pack(f"<{len(values)}f", *values)
    header = {
        "weight": {"dtype": "F32", "shape": [len(values)], "data_offsets": [0, len(data)]},
        "__metadata__": {"format": "pt"},
    }
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def build_demo_versions(root: Path) -> dict[str, Path]:
    """Create three versions of a small model: safetensors weights, a pickle, a config."""
    versions: dict[str, Path] = {}
    for index, label in enumerate(("v1", "v2", "v3"), start=1):
        folder = root / label
        folder.mkdir(parents=True)
        write_safetensors(
            folder / "model.safetensors", values=[index * 0.5 + i for i in range(256)]
        )
        vocabulary = {"<pad>": 0, "<unk>": 1, **{f"tok{i}": i + 2 for i in range(50 * index)}}
        # A benign pickle (a plain dict), as tokenizers often ship; it is scanned, never loaded.
        (folder / "tokenizer.pkl").write_bytes(pickle.dumps(vocabulary, protocol=4))
        (folder / "config.json").write_text(json.dumps({"layers": 2, "release": label}))
        versions[label] = folder
    return versions


def demo(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option(help="Empty directory to run the demo in (default: a new temp directory)."),
    ] = None,
) -> None:
    """Register a model, tamper with production, and watch rearguard roll it back."""
    from rearguard.flows.cli.incident import (  # lazy: CLI start-up
        print_outcome,
        print_timeline,
        run_with_progress,
    )
    from rearguard.flows.opening import open_and_record  # lazy: CLI start-up
    from rearguard.models.assets.versions import (  # lazy: CLI start-up
        approve_version,
        promote_version,
        register_version,
    )
    from rearguard.models.audit.chain import (  # lazy: CLI start-up
        events_for_incident,
        verify_stored_chain,
    )
    from rearguard.models.incidents.service import get_incident  # lazy: CLI start-up

    chosen = home or invocation(ctx).home
    if chosen is None:
        chosen = Path(tempfile.mkdtemp(prefix="rearguard-demo-"))
    elif chosen.exists() and any(chosen.iterdir()):
        raise UsageError(f"{chosen} is not empty", hint="give the demo an empty or new directory")
    # Always the demo home's own SQLite file, even when REARGUARD_DATABASE_URL names a real one.
    invocation(ctx).move_to(home=chosen, database_url=f"sqlite:///{chosen / 'rearguard.db'}")
    # And the home's local store, even when the settings name an MLflow registry: the demo
    # tampers with what it registers.
    os.environ["REARGUARD_REGISTRY_BACKEND"] = "local"
    rt = runtime(ctx)
    actor = "demo"
    alias = rt.settings.registry.alias

    out.print(Rule("rearguard demo"))
    out.print(f"home: {chosen}")
    sources = build_demo_versions(chosen / "demo-sources")
    for label, folder in sources.items():
        register_version(
            db=rt.db,
            registry=rt.registry,
            name=ASSET,
            source=folder,
            label=label,
            kind=AssetKind.MODEL,
            actor=actor,
            validate_command=f"{sys.executable} -c {json.dumps(_VALIDATOR)}",
        )
        out.print(f"registered {ASSET}@{label} (model.safetensors, tokenizer.pkl, config.json)")
    for label in ("v1", "v2"):
        approve_version(db=rt.db, registry=rt.registry, name=ASSET, label=label, by=APPROVER)
        out.print(f"approved {ASSET}@{label} as known_good by {APPROVER}")
    promote_version(
        db=rt.db, registry=rt.registry, name=ASSET, label="v3", alias=alias, actor=actor
    )
    out.print(f"promoted {ASSET}@v3 to {alias} (not yet approved: a hurried release)")

    tampered = rt.registry.version_location(asset=ASSET, label="v3") / "model.safetensors"
    _tamper(tampered)
    out.print(f"[red]attacker flipped bytes in the stored v3 weights[/] ({tampered})")

    out.print(Rule("incident"))
    incident_id = open_and_record(
        runtime=rt,
        type="model_compromise",
        asset=ASSET,
        severity=Severity.SEV1,
        since=None,
        summary="Model monitor: output distribution shifted after the v3 release",
        actor=actor,
    )
    err.print(f"incident {incident_id} opened (model_compromise, sev1); running its playbook")
    incident = run_with_progress(rt, incident_id)

    out.print(Rule("timeline"))
    with rt.db.read_session() as session:
        print_timeline(events_for_incident(session=session, incident_id=incident_id))
        report = verify_stored_chain(session)
        incident = get_incident(session=session, incident_id=incident_id)
    out.print(Rule("result"))
    print_outcome(rt, incident)
    out.print(
        f"audit chain: {'intact' if report.ok else 'BROKEN'}, {report.events} events; "
        f"{alias} alias: {rt.registry.alias_location(asset=ASSET, alias=alias)}"
    )
    evidence = chosen / "evidence" / f"incident-{incident_id}"
    out.print(f"forensic copy of v3 as found: {escape(str(evidence))}")
    out.print(f"explore: rearguard --home {chosen} incident show {incident_id}")
    if str(incident.status) != "recovered":
        raise typer.Exit(EXIT_FAILED)


def _tamper(path: Path) -> None:
    """Flip bytes in a stored, read-only file the way an attacker with disk access would."""
    path.chmod(0o644)
    with path.open("r+b") as handle:
        handle.seek(-64, 2)
        chunk = bytearray(handle.read(64))
        handle.seek(-64, 2)
        handle.write(bytes(b ^ 0xFF for b in chunk))
    path.chmod(0o444)
