"""The real Prometheus scraping a running intake: every Grafana panel of contrib/ answers with a
figure, and the shipped alerting rules load and fire.

The Debian ``prometheus`` binary scrapes the intake (uvicorn on loopback, behind the read
token, as the README's scrape config says) every second, with ``contrib/prometheus``'s rules
loaded. A first state is scraped: an incident contained, recovered and resolved, a drill that
passed, alerts taken, deduplicated and refused, a signed checkpoint. Then everything moves
again: an alert opens an incident whose playbook recovers it (its notifications delivered to
a file, refused for good by a webhook), a drill passes and one fails over its RTO, and
notifications wait. Once a scrape after that has been stored, every panel query runs through
Prometheus's HTTP API, with Grafana's variables given values, and must answer with a figure
other than zero: a panel on a metric the intake does not expose, or on a counter that never
moves, would stay empty.
"""

from __future__ import annotations

import math
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from contrib_queries import RULES, alert_rules, dashboard, metric_names, panel_queries
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from intake_helpers import TOKEN, live_intake, native, post, running_server, wait_for
from key_helpers import write_key_pair
from notification_helpers import WebhookReceiver, make_runtime
from scenarios import build_scenario, ended_run, weekly_drill

from rearguard.flows.prefect_infra.server import free_loopback_port
from rearguard.flows.run_playbook import run_playbook
from rearguard.models.audit.checkpoints import make_checkpoint
from rearguard.models.config.audit import AuditSettings
from rearguard.models.db.tables import Incident
from rearguard.models.drills.service import get_drill
from rearguard.models.enums import IncidentStatus
from rearguard.models.incidents.resolution import resolve_incident
from rearguard.models.incidents.service import set_incident_status
from rearguard.models.recovery.results import Notified
from rearguard.models.runtime import Runtime
from rearguard.notifications.notify import notify

PROMETHEUS = shutil.which("prometheus")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.one_database,
    pytest.mark.skipif(
        PROMETHEUS is None,
        reason="the Prometheus server is not installed (apt-get install prometheus)",
    ),
]
JOB = "rearguard"
# What Grafana puts in a panel's query: the job picked, the dashboard's time range, and the
# rate window it derives from the scrape interval (1 s here).
GRAFANA = {"$job": JOB, "$__range": "1h", "$__rate_interval": "15s"}


@contextmanager
def prometheus(tmp_path: Path, intake: str) -> Iterator[str]:
    """A Prometheus scraping the intake at ``intake`` (host:port) every second, with the
    shipped rules; yield its URL."""
    (tmp_path / "read-token").write_text(TOKEN)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["{RULES}"]
scrape_configs:
  - job_name: {JOB}
    static_configs:
      - targets: ["{intake}"]
    authorization:
      credentials_file: {tmp_path / "read-token"}
"""
    )
    address = f"127.0.0.1:{free_loopback_port()}"
    assert PROMETHEUS
    command = [
        PROMETHEUS,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
        f"--web.listen-address={address}",
        "--log.level=warn",
    ]
    with running_server(
        command,
        ready_url=f"http://{address}/-/ready",
        log=tmp_path / "prometheus.log",
        what="Prometheus",
    ):
        yield f"http://{address}"


def api(url: str, path: str, **params: Any) -> Any:
    """The ``data`` of a Prometheus HTTP API answer."""
    answer = httpx.get(f"{url}/api/v1/{path}", params=params, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def scraped_after(url: str, moment: float) -> float | None:
    """The time of the intake's latest successful scrape if it started after ``moment``."""
    found = api(url, "query", query=f'up{{job="{JOB}"}}[10s]')["result"]
    if not found:
        return None
    stamp, value = found[0]["values"][-1]
    return float(stamp) if value == "1" and float(stamp) > moment else None


def figures(url: str, expr: str, *, instant: bool, start: float, end: float) -> list[float]:
    """Every value a query answers, as Grafana asks it: at ``end``, or from start to end."""
    if instant:
        series = api(url, "query", query=expr, time=end)["result"]
        return [float(s["value"][1]) for s in series]
    start = end - math.ceil(end - start)  # a step at ``end``, or its scrape would not count
    series = api(url, "query_range", query=expr, start=start, end=end, step=1)["result"]
    return [float(value) for s in series for _, value in s["values"]]


def grafana_expr(expr: str) -> str:
    """A panel's query with Grafana's variables replaced by values."""
    for variable, value in GRAFANA.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, expr
    return expr


def before_the_first_scrape(runtime: Runtime, intake_url: str, key: Path) -> int:
    """A first state with a series in every family the panels read; the first incident's id."""
    alerts = f"{intake_url}/v1/incidents"
    first = post(alerts, native("model-a")).json()["incident_id"]
    assert post(alerts, native("model-a")).json()["action"] == "attached"
    assert post(alerts, native("no-such-model")).status_code == 422
    with runtime.db.session() as session:
        incident = session.get(Incident, first)
        assert incident is not None
        for status in (IncidentStatus.CONTAINED, IncidentStatus.RECOVERED):
            set_incident_status(session=session, incident=incident, status=status, actor="bob")
        resolve_incident(session=session, incident_id=first, actor="alice")
        ended_run(session, weekly_drill(session), status="pass", recovery_s=12.5)
    assert make_checkpoint(db=runtime.db, settings=AuditSettings(signing_key=key), reason="test")
    return int(first)


def everything_moves(runtime: Runtime, intake_url: str, first: int) -> None:
    """An incident from an alert recovered by its playbook, drills passing and failing,
    notifications waiting."""
    opened = post(f"{intake_url}/v1/incidents", native("model-a")).json()
    assert opened["action"] == "opened"
    ran = run_playbook(runtime=runtime, incident_id=opened["incident_id"])
    assert ran.status == "recovered"
    with runtime.db.session() as session:
        drill = get_drill(session=session, name="weekly")
        ended_run(session, drill, status="pass", recovery_s=30.0)
        ended_run(session, drill, status="fail", recovery_s=420.0)  # the latest, over its RTO
    # These wait: only a playbook's end (of its own incident) or a dispatcher delivers.
    queued = notify(runtime=runtime, incident_id=first, event="opened")
    assert isinstance(queued, Notified) and queued.queued == 2


def assert_every_panel_answers(url: str, *, start: float, end: float) -> None:
    """Each panel's queries answer a figure other than zero; the job variable finds the job."""
    for query in panel_queries():
        expr = grafana_expr(query.expr)
        found = figures(url, expr, instant=query.instant, start=start, end=end)
        assert any(math.isfinite(v) and v != 0 for v in found), (query.panel, expr, found)
    (job,) = (v for v in dashboard()["templating"]["list"] if v["name"] == "job")
    matched = re.fullmatch(r"label_values\((\w+), (\w+)\)", job["definition"])
    assert matched, job["definition"]
    metric, label = matched.groups()
    assert api(url, f"label/{label}/values", **{"match[]": metric}) == [JOB]


def assert_every_name_was_scraped(url: str) -> None:
    """Every metric a rule or a panel reads is one Prometheus stored from the scrapes."""
    stored = set(api(url, "label/__name__/values"))
    for rule in alert_rules():
        assert metric_names(rule["expr"]) <= stored, rule["alert"]
    for query in panel_queries():
        assert metric_names(query.expr) <= stored, query.panel


def firing(url: str) -> set[str]:
    """The alerts Prometheus's rule evaluation says are firing."""
    return {
        a["labels"]["alertname"] for a in api(url, "alerts")["alerts"] if a["state"] == "firing"
    }


@pytest.mark.usefixtures("prefect_api_url")
def test_prometheus_scraping_the_intake_answers_every_panel_and_loads_every_rule(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key, _ = write_key_pair(
        Ed25519PrivateKey.generate(), tmp_path / "checkpoint.pem", tmp_path / "checkpoint.pub"
    )
    port = free_loopback_port()
    # Prometheus first: it takes seconds to scrape a new target, the set-up's time.
    with (
        prometheus(tmp_path, f"127.0.0.1:{port}") as url,
        WebhookReceiver() as refusing,  # the runtime signs with another secret: 401
    ):
        started = time.time()
        runtime = make_runtime(
            home,
            database_url,
            monkeypatch,
            toml=f"""
[notifications]
channels = ["file", "webhook"]

[notifications.webhook]
url = "{refusing.url}"
""",
            env={"REARGUARD_WEBHOOK_SECRET": "not-the-receivers-secret"},
        )
        build_scenario(runtime, tmp_path, tampered=True)
        with live_intake(runtime, run_playbooks=False, port=port) as intake_url:
            first = before_the_first_scrape(runtime, intake_url, key)
            moment = time.time()
            wait_for(lambda: scraped_after(url, moment), timeout=30, what="a first scrape")
            everything_moves(runtime, intake_url, first)
            moment = time.time()
            end = wait_for(lambda: scraped_after(url, moment), timeout=30, what="a new scrape")

            assert_every_panel_answers(url, start=started, end=end)
            assert_every_name_was_scraped(url)
            (group,) = api(url, "rules")["groups"]
            assert {r["name"] for r in group["rules"]} == {r["alert"] for r in alert_rules()}
            assert {r["health"] for r in group["rules"]} == {"ok"}
            wanted = {"RearguardDrillFailed", "RearguardDrillOverRTO"}
            wait_for(lambda: wanted <= firing(url), timeout=30, what=f"{wanted} to fire")
    assert refusing.rejected > 0
