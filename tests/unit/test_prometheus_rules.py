"""The shipped Prometheus alerting rules: valid for Prometheus, and about metrics that exist.

``promtool check rules`` (Debian package ``prometheus``) parses every rule and its PromQL as
Prometheus itself does; without it that test is skipped, saying so. Every ``rearguard_*`` name
the rules query must be one ``GET /metrics`` exposes, checked against the families the
collector builds (a misspelt name would be an alert that can never fire).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from rearguard.flows.intake.metrics import gauge_families, kept_families
from rearguard.models.metrics.snapshot import DrillState, Gauges, KeptCounters

RULES = Path(__file__).resolve().parents[2] / "contrib" / "prometheus" / "rearguard-rules.yml"


def test_promtool_accepts_the_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package `prometheus`)")
    checked = subprocess.run(
        [promtool, "check", "rules", str(RULES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 10 rules found" in checked.stdout


def exposed_names() -> set[str]:
    """Every sample name a scrape can hold (each gauge given a value, every histogram part)."""
    gauges = Gauges(
        unresolved={"open": 0},
        approvals_pending=0,
        approvals_overdue=0,
        outbox_pending={"slack": 1},
        outbox_oldest_pending_s={"slack": 1.0},
        drills={"weekly": DrillState({"pass": 1}, 1.0, None)},
        chain_head_seq=1,
        last_checkpoint_age_s=1.0,
        checkpoints_unpublished=0,
    )
    names = set()
    for family in kept_families(KeptCounters({})) + gauge_families(gauges):
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names |= {family.name + suffix for suffix in ("_bucket", "_count", "_sum")}
    return names


def test_every_rule_is_about_a_metric_rearguard_exposes() -> None:
    document = yaml.safe_load(RULES.read_text())
    (group,) = document["groups"]
    rules = group["rules"]
    assert len({rule["alert"] for rule in rules}) == len(rules) == 10
    exposed = exposed_names()
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        queried = set(re.findall(r"\brearguard_[a-z_]+", rule["expr"]))
        if rule["alert"] != "RearguardDown":
            assert queried, rule["alert"]
        assert queried <= exposed, (rule["alert"], queried - exposed)
