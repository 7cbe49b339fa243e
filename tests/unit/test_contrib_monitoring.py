"""The shipped Prometheus alerting rules and Grafana dashboard: valid for their tools, and
about metrics that exist.

``promtool check rules`` (Debian package ``prometheus``) parses every rule and its PromQL as
Prometheus itself does; without it that test is skipped, saying so. Every ``rearguard_*`` name
the rules and the dashboard's panels query must be one ``GET /metrics`` exposes, checked against
the families the collector builds (a misspelt name would be an alert that can never fire, a
panel that stays empty); ``tests/integration/test_prometheus_scrape.py`` runs them all on a
real Prometheus scraping a real intake.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from contrib_queries import RULES, alert_rules, dashboard, metric_names, panel_queries

from rearguard.flows.intake.metrics import gauge_families, kept_families
from rearguard.models.metrics.snapshot import DrillState, Gauges, KeptCounters


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
    rules = alert_rules()
    assert len({rule["alert"] for rule in rules}) == len(rules) == 10
    exposed = exposed_names()
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        queried = metric_names(rule["expr"])
        if rule["alert"] != "RearguardDown":
            assert queried, rule["alert"]
        assert queried <= exposed, (rule["alert"], queried - exposed)


def test_every_panel_queries_metrics_rearguard_exposes_through_the_chosen_datasource() -> None:
    board = dashboard()
    (source,) = board["__inputs"]
    assert (source["name"], source["pluginId"]) == ("DS_PROMETHEUS", "prometheus")
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["current"]["value"] == "${DS_PROMETHEUS}"
    chosen = {"type": "prometheus", "uid": "${datasource}"}
    exposed = exposed_names()
    for panel in board["panels"]:
        assert panel["datasource"] == chosen, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == chosen, panel["title"]
            queried = metric_names(target["expr"])
            assert queried, panel["title"]
            assert queried <= exposed, (panel["title"], queried - exposed)
            assert 'job="$job"' in target["expr"], panel["title"]
    assert len(panel_queries()) == 8
