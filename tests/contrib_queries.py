"""What contrib/ ships for Prometheus and Grafana, read as their users' tools read them: the
alerting rules, the dashboard's panel queries, and the metric names they are about."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CONTRIB = Path(__file__).resolve().parents[1] / "contrib"
RULES = CONTRIB / "prometheus" / "rearguard-rules.yml"
DASHBOARD = CONTRIB / "grafana" / "rearguard-dashboard.json"


@dataclass(frozen=True)
class PanelQuery:
    """One query of a dashboard panel: Grafana runs it at the range's end (``instant``) or
    over the range."""

    panel: str
    expr: str
    instant: bool


def alert_rules() -> list[dict[str, Any]]:
    """The rules of the one group of the rules file."""
    (group,) = yaml.safe_load(RULES.read_text())["groups"]
    return list(group["rules"])


def dashboard() -> dict[str, Any]:
    """The dashboard as Grafana imports it."""
    return dict(json.loads(DASHBOARD.read_text()))


def panel_queries() -> list[PanelQuery]:
    """Every query of every panel, in the dashboard's order."""
    return [
        PanelQuery(panel["title"], target["expr"], bool(target.get("instant")))
        for panel in dashboard()["panels"]
        for target in panel["targets"]
    ]


def metric_names(expr: str) -> set[str]:
    """The ``rearguard_*`` names a PromQL expression reads."""
    return set(re.findall(r"\brearguard_[a-z_]+", expr))
