"""prefect.yaml declares the deployments `rearguard deploy` registers from the catalog."""

from __future__ import annotations

from pathlib import Path

import yaml

from rearguard.playbooks.catalog import CATALOG

PREFECT_YAML = Path(__file__).resolve().parents[2] / "prefect.yaml"


def test_prefect_yaml_has_one_deployment_per_catalog_playbook_with_its_module_path() -> None:
    declared = yaml.safe_load(PREFECT_YAML.read_text())
    found = {d["name"]: d["entrypoint"] for d in declared["deployments"]}
    assert found == {t: spec.entrypoint.replace(":", ".") for t, spec in CATALOG.items()}
    assert declared["pull"] == []  # workers import the installed package; no source to fetch
    assert {d["work_pool"]["name"] for d in declared["deployments"]} == {"rearguard"}


def test_prefect_yaml_describes_each_deployment_with_its_catalog_title() -> None:
    declared = yaml.safe_load(PREFECT_YAML.read_text())
    described = {d["name"]: d["description"] for d in declared["deployments"]}
    assert described == {t: spec.title for t, spec in CATALOG.items()}
