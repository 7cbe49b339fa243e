"""Prometheus metrics (``GET /metrics``), read from the database at each scrape.

A custom collector on a registry of the app's own (no process-global registry: two apps in one
process, a drill's beside the intake's, never mix their figures). Each scrape reads one
:class:`~rearguard.models.metrics.snapshot.MetricsSnapshot` in one read transaction: the kept
counters and a few indexed gauges, never a recount of the incidents (``bench_metrics.py``).
Behind the intake's bearer token (``read`` scope) unless ``[intake] metrics_public = true``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from rearguard.models.db.engine import Database
from rearguard.models.metrics import counters
from rearguard.models.metrics.counters import Family
from rearguard.models.metrics.snapshot import MetricsSnapshot, read_metrics

PREFIX = "rearguard_"


def _counter(family: Family, snapshot: MetricsSnapshot) -> CounterMetricFamily:
    metric = CounterMetricFamily(PREFIX + family.name, family.doc, labels=family.labels)
    for sample in snapshot.counter(family):
        metric.add_metric(sample.values, sample.value)
    return metric


def _histogram(family: Family, snapshot: MetricsSnapshot) -> HistogramMetricFamily:
    metric = HistogramMetricFamily(PREFIX + family.name, family.doc, labels=family.labels)
    for sample in snapshot.histogram(family):
        metric.add_metric(sample.values, sample.buckets, sample.sum)
    return metric


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, value=value)


def _gauges(name: str, doc: str, label: str, values: Mapping[str, float]) -> GaugeMetricFamily:
    metric = GaugeMetricFamily(PREFIX + name, doc, labels=[label])
    for key, value in sorted(values.items()):
        metric.add_metric([key], value)
    return metric


def families(snapshot: MetricsSnapshot) -> list[Metric]:
    """Every metric family of a snapshot, as Prometheus exposes it."""
    kept: list[Metric] = [
        _histogram(f, snapshot) if f.kind == "histogram" else _counter(f, snapshot)
        for f in counters.FAMILIES
    ]
    drills = snapshot.drills
    runs = CounterMetricFamily(
        PREFIX + "drill_runs",
        "Drill runs that ended, by result (pass, fail, missed)",
        labels=["drill", "result"],
    )
    for name, state in sorted(drills.items()):
        for result, count in sorted(state.runs.items()):
            runs.add_metric([name, result], count)
    margins = {n: s.rto_margin_s for n, s in drills.items() if s.rto_margin_s is not None}
    passes = {n: s.last_pass.timestamp() for n, s in drills.items() if s.last_pass is not None}
    gauges = [
        _gauges(
            "incidents_unresolved",
            "Incidents not resolved yet, by status",
            "status",
            {k: float(v) for k, v in snapshot.unresolved.items()},
        ),
        _gauge(
            "approvals_pending",
            "Approval requests waiting for a decision",
            snapshot.approvals_pending,
        ),
        _gauge(
            "approvals_overdue",
            "Approval requests waiting past their deadline",
            snapshot.approvals_overdue,
        ),
        runs,
        _gauges(
            "drill_rto_margin_seconds",
            "The RTO minus the recovery time of a drill's latest run against an RTO",
            "drill",
            margins,
        ),
        _gauges(
            "drill_last_pass_timestamp_seconds",
            "When a drill last passed (Unix time)",
            "drill",
            passes,
        ),
        _gauges(
            "outbox_pending",
            "Notifications waiting to be delivered, by channel",
            "channel",
            {k: float(v) for k, v in snapshot.outbox_pending.items()},
        ),
        _gauges(
            "outbox_oldest_pending_age_seconds",
            "Age of the oldest notification waiting, by channel",
            "channel",
            snapshot.outbox_oldest_pending_s,
        ),
        _gauge(
            "audit_chain_head_seq",
            "Sequence number of the audit chain's last event",
            snapshot.chain_head_seq,
        ),
        _gauge(
            "audit_checkpoints_unpublished",
            "Checkpoint publications to a sink still waiting",
            snapshot.checkpoints_unpublished,
        ),
    ]
    if snapshot.last_checkpoint_age_s is not None:
        gauges.append(
            _gauge(
                "audit_last_checkpoint_age_seconds",
                "Seconds since the latest signed checkpoint of the audit chain",
                snapshot.last_checkpoint_age_s,
            )
        )
    return kept + gauges


class RearguardCollector:
    """Reads the metrics from one database at each scrape.

    Args:
        db: the database.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[Metric]:
        """One snapshot's families."""
        with self.db.read_session() as session:
            snapshot = read_metrics(session=session)
        yield from families(snapshot)


def metrics_registry(db: Database) -> CollectorRegistry:
    """A registry of its own holding the collector of ``db``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RearguardCollector(db))
    return registry
