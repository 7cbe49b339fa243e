"""Plug-in playbooks: a package's ``rearguard.playbooks`` entry point adds an incident type.

Nothing is installed: the package and its ``.dist-info`` (the metadata pip would write) are
written to a temporary directory put on ``sys.path`` (or ``PYTHONPATH`` for the CLI), which is
where ``importlib.metadata`` finds installed distributions. The package is the README's example.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from scenarios import build_scenario, production_in_db, tamper_version

from rearguard.flows.opening import open_and_record
from rearguard.flows.run_playbook import run_playbook
from rearguard.models.enums import Severity
from rearguard.models.errors import ConfigurationError, NotFoundError
from rearguard.models.runtime import Runtime
from rearguard.playbooks.catalog import all_playbooks, get_playbook, load_flow

SPEC_MODULE = """
from rearguard.models.enums import AssetKind
from rearguard.playbooks.catalog import PlaybookSpec

SPEC = PlaybookSpec(
    type="guardrail_bypass",
    title="Guardrail prompt bypassed: take it out of trust, restore the last approved one",
    entrypoint="rg_guardrails.flow:guardrail_bypass",
    atlas_ids=("AML.T0054",),
    provisions=("5.3", "6.5", "12.1"),
    steps=("quarantine", "select_known_good", "rollback", "validate", "notify"),
    asset_kinds=(AssetKind.PROMPT,),
)
"""

FLOW_MODULE = """
from prefect import flow

from rearguard.flows.playbook_guard import playbook_guard
from rearguard.flows.steps import quarantine, rollback, select_known_good, validate


@flow(name="guardrail_bypass")
async def guardrail_bypass(incident_id: int) -> str:
    async with playbook_guard(incident_id) as outcome:
        await quarantine(incident_id)
        selected = await select_known_good(incident_id)
        await rollback(incident_id, label=selected.selected)
        await validate(incident_id)
        outcome.recovered()
    return outcome.status
"""

ENTRY_POINTS = """
[rearguard.playbooks]
guardrail_bypass = rg_guardrails:SPEC
broken_one = rg_not_installed:SPEC
not_a_spec = rg_guardrails:FLOW_NAME
"""


def write_plugin(root: Path) -> Path:
    """A package and the dist-info an install would leave, under ``root``."""
    package = root / "rg_guardrails"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(SPEC_MODULE + '\nFLOW_NAME = "not a spec"\n')
    (package / "flow.py").write_text(FLOW_MODULE)
    info = root / "rg_guardrails-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rg-guardrails\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return root


@pytest.fixture
def plugin_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = write_plugin(tmp_path / "site")
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in [m for m in sys.modules if m.split(".")[0] == "rg_guardrails"]:
        del sys.modules[name]


@pytest.mark.usefixtures("prefect_api_url")
def test_plugin_playbook_is_listed_and_runs_while_broken_ones_are_named(
    runtime: Runtime, tmp_path: Path, plugin_path: Path
) -> None:
    playbooks, problems = all_playbooks()
    assert "guardrail_bypass" in playbooks and "model_compromise" in playbooks
    assert playbooks["guardrail_bypass"].atlas_ids == ("AML.T0054",)
    lines = sorted(p.line() for p in problems)
    assert len(lines) == 2
    assert lines[0].startswith("plug-in playbook 'broken_one' (rg_not_installed:SPEC) not loaded:")
    assert "ModuleNotFoundError" in lines[0]
    assert lines[1] == (
        "plug-in playbook 'not_a_spec' (rg_guardrails:FLOW_NAME) not loaded: "
        "TypeError: expected a PlaybookSpec or a mapping, got str"
    )

    build_scenario(runtime, tmp_path, asset="guard-prompt", kind="prompt")
    tamper_version(runtime, "guard-prompt", "v3")
    incident_id = open_and_record(
        runtime=runtime,
        type="guardrail_bypass",
        asset="guard-prompt",
        severity=Severity.SEV2,
        since=None,
        summary="jailbreak got through",
        actor="oncall",
    )
    incident = run_playbook(runtime=runtime, incident_id=incident_id)

    assert str(incident.status) == "recovered", incident.reason
    assert incident.atlas_ids == ["AML.T0054"]
    assert production_in_db(runtime, "guard-prompt") == "v2"


def test_an_unknown_type_names_the_broken_plugin_and_a_bad_flow_is_one_error(
    plugin_path: Path,
) -> None:
    with pytest.raises(NotFoundError) as unknown:
        get_playbook("broken_one")
    assert "unknown incident type 'broken_one'" in str(unknown.value)
    assert "ModuleNotFoundError" in (unknown.value.hint or "")

    spec = get_playbook("guardrail_bypass")
    (plugin_path / "rg_guardrails" / "half.py").write_text("raise RuntimeError('half-written')\n")
    half_written = dataclasses.replace(spec, entrypoint="rg_guardrails.half:guardrail_bypass")
    with pytest.raises(ConfigurationError, match="RuntimeError: half-written"):
        load_flow(half_written)


def test_cli_lists_plugins_and_warns_in_one_line_per_broken_one(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path
) -> None:
    root = write_plugin(tmp_path / "site")

    listed = cli("playbook", "list", "--json", env={"PYTHONPATH": str(root)})

    assert listed.returncode == 0, listed.stderr
    types = [spec["type"] for spec in json.loads(listed.stdout)]
    assert types[-1] == "guardrail_bypass" and "prompt_tampering" in types
    warnings = [line for line in listed.stderr.splitlines() if line.strip()]
    assert len(warnings) == 2 and all(w.startswith("warning: plug-in playbook") for w in warnings)
    assert "Traceback" not in listed.stderr
