"""Prometheus metrics (``GET /metrics``), read from the database at each scrape.

A custom collector on a registry of the app's own (no process-global registry: two apps in one
process, a drill's beside the intake's, never mix their figures). Each scrape reads one
snapshot in one read transaction: the kept counters (their families rebuilt only when they
changed) and a few indexed gauges, never a recount of the incidents (``bench_metrics.py``).
Behind the intake's bearer token (``read`` scope) unless ``[intake] metrics_public = true``.
"""

from __future__ import annotations

import threading
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
from rearguard.models.metrics.snapshot import (
    Gauges,
    KeptCounters,
    counters_version,
    read_counters,
    read_gauges,
)

PREFIX = "rearguard_"


def _counter(family: Family, kept: KeptCounters) -> CounterMetricFamily:
    metric = CounterMetricFamily(PREFIX + family.name, family.doc, labels=family.labels)
    for sample in kept.counter(family):
        metric.add_metric(sample.values, sample.value)
    return metric


def _histogram(family: Family, kept: KeptCounters) -> HistogramMetricFamily:
    metric = HistogramMetricFamily(PREFIX + family.name, family.doc, labels=family.labels)
    for sample in kept.histogram(family):
        metric.add_metric(sample.values, sample.buckets, sample.sum)
    return metric


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, value=value)


def _gauges(name: str, doc: str, label: str, values: Mapping[str, float]) -> GaugeMetricFamily:
    metric = GaugeMetricFamily(PREFIX + name, doc, labels=[label])
    for key, value in sorted(values.items()):
        metric.add_metric([key], value)
    return metric


def kept_families(kept: KeptCounters) -> list[Metric]:
    """The families of the kept counters, as Prometheus exposes them."""
    return [
        _histogram(f, kept) if f.kind == "histogram" else _counter(f, kept)
        for f in counters.FAMILIES
    ]


def gauge_families(gauges: Gauges) -> list[Metric]:
    """The families of what is waiting now, the drills and the audit chain."""
    drills = gauges.drills
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
    found = [
        _gauges(
            "incidents_unresolved",
            "Incidents not resolved yet, by status",
            "status",
            {k: float(v) for k, v in gauges.unresolved.items()},
        ),
        _gauge(
            "approvals_pending",
            "Approval requests waiting for a decision",
            gauges.approvals_pending,
        ),
        _gauge(
            "approvals_overdue",
            "Approval requests waiting past their deadline",
            gauges.approvals_overdue,
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
            {k: float(v) for k, v in gauges.outbox_pending.items()},
        ),
        _gauges(
            "outbox_oldest_pending_age_seconds",
            "Age of the oldest notification waiting, by channel",
            "channel",
            gauges.outbox_oldest_pending_s,
        ),
        _gauge(
            "audit_chain_head_seq",
            "Sequence number of the audit chain's last event",
            gauges.chain_head_seq,
        ),
        _gauge(
            "audit_checkpoints_unpublished",
            "Checkpoint publications to a sink still waiting",
            gauges.checkpoints_unpublished,
        ),
    ]
    if gauges.last_checkpoint_age_s is not None:
        found.append(
            _gauge(
                "audit_last_checkpoint_age_seconds",
                "Seconds since the latest signed checkpoint of the audit chain",
                gauges.last_checkpoint_age_s,
            )
        )
    return found


class RearguardCollector:
    """Reads the metrics from one database at each scrape.

    The families of the kept counters are built again only when the counters changed
    (:func:`~rearguard.models.metrics.snapshot.counters_version`, one aggregate over their few
    hundred rows); the gauges are read every time.

    Args:
        db: the database.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = threading.Lock()
        self._kept: tuple[tuple[int, float], list[Metric]] = ((-1, -1.0), [])

    def collect(self) -> Iterator[Metric]:
        """The kept counters' families and the gauges', read in one read transaction."""
        with self.db.read_session() as session:
            version = counters_version(session=session)
            with self._lock:
                known, kept = self._kept
            if version != known:
                kept = kept_families(read_counters(session=session))
                with self._lock:
                    self._kept = (version, kept)
            gauges = read_gauges(session=session)
        yield from kept
        yield from gauge_families(gauges)


def metrics_registry(db: Database) -> CollectorRegistry:
    """A registry of its own holding the collector of ``db``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RearguardCollector(db))
    return registry
