"""One entry per incident type: what the sweep, drills, exports and `incident open` read."""

from __future__ import annotations

import pytest

from rearguard.models.enums import AssetKind, IncidentStatus
from rearguard.models.errors import UsageError
from rearguard.models.incidents.types import (
    INCIDENT_TYPES,
    ExportProfile,
    IncidentType,
    Input,
    SweepRule,
    check_entry,
    step_name,
    sweep_type,
)
from rearguard.models.schemas import PlaybookRead
from rearguard.playbooks.catalog import CATALOG, PlaybookSpec


def test_the_catalog_is_the_incident_types_registry_not_a_copy() -> None:
    assert CATALOG is INCIDENT_TYPES
    assert PlaybookSpec is IncidentType


@pytest.mark.parametrize(
    ("kind", "tampered", "expected"),
    [
        (AssetKind.MODEL, True, "model_compromise"),
        (AssetKind.PROMPT, True, "prompt_tampering"),
        (AssetKind.CONFIG, True, "config_tampering"),
        (AssetKind.DATASET, True, None),
        (AssetKind.MODEL, False, "supply_chain"),
        (AssetKind.DATASET, False, "supply_chain"),
    ],
)
def test_the_sweep_opens_the_type_whose_entry_claims_the_failure(
    kind: AssetKind, tampered: bool, expected: str | None
) -> None:
    found = sweep_type(kind=kind, tampered=tampered)
    assert (found.type if found else None) == expected


def test_every_built_in_type_can_be_drilled_and_says_what_a_pass_is() -> None:
    aims = {t: spec.drill_rule().aims_for for t, spec in INCIDENT_TYPES.items()}
    assert aims.pop("model_theft") == IncidentStatus.CONTAINED
    assert set(aims.values()) == {IncidentStatus.RECOVERED}
    assert INCIDENT_TYPES["degradation"].drill_rule().needs_validation


def test_a_type_without_a_drill_rule_is_refused_naming_the_drillable_ones() -> None:
    plain = IncidentType(
        type="plain",
        title="t",
        entrypoint="m:f",
        atlas_ids=(),
        provisions=(),
        steps=(),
        asset_kinds=(AssetKind.MODEL,),
    )
    with pytest.raises(UsageError, match="cannot be drilled") as caught:
        plain.drill_rule()
    assert "model_compromise" in (caught.value.hint or "")
    assert plain.profile == ExportProfile()
    assert "reputational" in INCIDENT_TYPES["model_compromise"].profile.oecd_harm_types


def test_inputs_are_typed_and_the_playbook_list_shows_them() -> None:
    assert INCIDENT_TYPES["supply_chain"].inputs == (Input.DIGEST,)
    assert INCIDENT_TYPES["data_poisoning"].needs(Input.SINCE)
    shown = PlaybookRead.of(INCIDENT_TYPES["data_poisoning"]).json_value()
    assert shown["inputs"] == ["dataset", "since"]
    assert shown["drill_aims_for"] == "recovered"


def test_tampering_steps_are_the_model_compromise_steps_plus_the_diff() -> None:
    compromise = list(INCIDENT_TYPES["model_compromise"].steps)
    for tampering in ("prompt_tampering", "config_tampering"):
        steps = list(INCIDENT_TYPES[tampering].steps)
        steps.remove("record_diff")
        assert steps == compromise
    for spec in INCIDENT_TYPES.values():
        assert spec.steps[0] == "notify:opened"
        assert spec.steps[-1] == f"notify:{spec.drill_rule().aims_for}"


def test_a_recorded_step_is_named_by_what_it_notifies_or_runs() -> None:
    assert step_name("notify", {"event": "contained", "roles": None}) == "notify:contained"
    assert step_name("run_hook", {"hook": "retrain", "asset": "m"}) == "run_hook:retrain"
    assert step_name("rollback", {"label": "v2"}) == "rollback"


def test_a_plugin_mapping_with_an_unknown_input_or_a_sweep_rule_is_refused() -> None:
    fields = {
        "type": "x_type",
        "title": "t",
        "entrypoint": "m:f",
        "atlas_ids": [],
        "provisions": [],
        "steps": [],
        "asset_kinds": ["model"],
    }
    assert check_entry({**fields, "inputs": ["digest"]}).inputs == (Input.DIGEST,)
    with pytest.raises(ValueError, match=r"digest\|file"):
        check_entry({**fields, "inputs": ["digest|file"]})
    with pytest.raises(ValueError, match="sweep rules are for built-in types"):
        check_entry({**fields, "sweep": SweepRule(dangerous_file=True)})
