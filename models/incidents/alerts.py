"""Recording alerts: each one a timeline event, opening an incident only when none is active.

An alert whose dedup key (its own key, else its type + asset) belongs to an active incident
attaches to it; otherwise it opens one through the same path as the CLI
(:func:`rearguard.models.incidents.service.open_asset_incident`), which claims the keys in the
database, so concurrent intake processes cannot open two. A resolved alert is recorded on its
incident and never opens one. Plain Python: the HTTP layer and the playbook dispatch live in
``flows``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session

from rearguard.models.audit.chain import append_event, lock_chain
from rearguard.models.audit.redaction import redact_optional, redact_text, redact_value
from rearguard.models.enums import AssetKind, EventKind, IncidentSource, Severity
from rearguard.models.errors import RearguardError
from rearguard.models.incidents.dedup import KeyHolder, key_holder, key_holders, type_asset_key
from rearguard.models.incidents.service import open_asset_incident
from rearguard.models.metrics.counters import count_alerts
from rearguard.models.names import storable, unstorable


@dataclass(frozen=True)
class IncomingAlert:
    """One alert as the intake understood it.

    ``problem`` is set when the alert could not be mapped to an incident type and asset: it is
    recorded, and opens nothing.
    """

    source: str
    status: str = "firing"
    type: str | None = None
    asset: str | None = None
    severity: Severity = Severity.SEV2
    summary: str = ""
    dedup_key: str | None = None
    since: datetime | None = None
    labels: dict[str, str] = field(default_factory=dict)
    asset_kinds: tuple[AssetKind, ...] = ()
    atlas_ids: tuple[str, ...] = ()
    problem: str | None = None

    def __post_init__(self) -> None:
        # Everything here came from outside. A text the database cannot hold (a NUL) would
        # fail the whole write batch, so the alert is refused here, before the batch, and
        # recorded with the character replaced. A secret in a label, the source or the dedup
        # key must reach neither the chain nor the incident row nor the dedup key table.
        texts = {
            "source": self.source,
            "type": self.type,
            "asset": self.asset,
            "summary": self.summary,
            "dedup key": self.dedup_key,
            **{f"label {key!r}": f"{key}{value}" for key, value in self.labels.items()},
        }
        reasons = ((what, unstorable(text or "")) for what, text in texts.items())
        problem = next((f"the {what} {why}" for what, why in reasons if why), None)
        if problem:
            object.__setattr__(self, "problem", problem)
            for name in ("source", "type", "asset", "summary", "dedup_key"):
                value = getattr(self, name)
                object.__setattr__(self, name, storable(value) if value else value)
            labels = {storable(k): storable(v) for k, v in self.labels.items()}
            object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "source", redact_text(self.source))
        object.__setattr__(self, "summary", redact_text(self.summary))
        object.__setattr__(self, "dedup_key", redact_optional(self.dedup_key))
        object.__setattr__(self, "labels", redact_value(self.labels))

    def dedup_keys(self) -> list[str]:
        """Its dedup keys, most specific first."""
        keys = [self.dedup_key] if self.dedup_key else []
        if self.type and self.asset:
            keys.append(type_asset_key(self.type, self.asset))
        return keys


@dataclass(frozen=True)
class AlertOutcome:
    """What became of one alert: ``opened``, ``attached``, ``resolved``, ``unmatched`` (a
    resolved alert with no incident) or ``rejected`` (``error`` says why)."""

    action: str
    incident_id: int | None = None
    error: str | None = None


def record_alerts(
    *,
    session: Session,
    alerts: Sequence[IncomingAlert],
    actor: str,
    alias: str,
    window_s: float,
) -> list[AlertOutcome]:
    """Record alerts in the caller's transaction, one outcome per alert, in order.

    Args:
        session: an open write session.
        alerts: the alerts, mapped.
        actor: who records them (e.g. ``intake``).
        alias: the production alias name.
        window_s: how long after resolution an incident still takes its alerts.

    Returns:
        The outcomes. A rejected alert is recorded and does not stop the others.
    """
    connection = session.connection()
    # From here until commit no other writer can claim a key or resolve an incident (both
    # append to the chain), so what this transaction learns about a key stays true in it.
    lock_chain(connection)
    holders = _Holders(session, window_s=window_s)
    holders.prefetch(key for alert in alerts for key in alert.dedup_keys())
    outcomes: list[AlertOutcome] = []
    for alert in alerts:
        if alert.problem:
            outcome = AlertOutcome("rejected", error=alert.problem)
        elif alert.status == "resolved":
            holder = holders.find(alert.dedup_keys(), active_only=False)
            outcome = AlertOutcome("resolved" if holder else "unmatched", _id(holder))
        else:
            outcome = _fire(session, alert, holders, actor=actor, alias=alias, window_s=window_s)
        _record(session, alert, outcome, actor=actor)
        outcomes.append(outcome)
    count_alerts(session, [o.action for o in outcomes])
    return outcomes


def _id(holder: KeyHolder | None) -> int | None:
    return holder.incident_id if holder else None


class _Holders:
    """The key holders one transaction has seen: a storm repeats a few keys thousands of times."""

    def __init__(self, session: Session, *, window_s: float) -> None:
        self._session = session
        self._window_s = window_s
        self._known: dict[str, KeyHolder | None] = {}

    def prefetch(self, keys: Iterable[str]) -> None:
        """Look up many keys at once (a batch's keys, before its alerts are recorded)."""
        wanted = [key for key in keys if key not in self._known]
        if wanted:
            connection = self._session.connection()
            self._known.update(key_holders(connection, wanted, window_s=self._window_s))

    def find(self, keys: list[str], *, active_only: bool = True) -> KeyHolder | None:
        for key in keys:
            if key not in self._known:
                connection = self._session.connection()
                self._known[key] = key_holder(connection, key, window_s=self._window_s)
            holder = self._known[key]
            if holder and (holder.active or not active_only):
                return holder
        return None

    def opened(self, keys: list[str], incident_id: int) -> None:
        for key in keys:
            self._known[key] = KeyHolder(incident_id, active=True)


def _fire(
    session: Session,
    alert: IncomingAlert,
    holders: _Holders,
    *,
    actor: str,
    alias: str,
    window_s: float,
) -> AlertOutcome:
    holder = holders.find(alert.dedup_keys())
    if holder:
        return AlertOutcome("attached", holder.incident_id)
    assert alert.type and alert.asset  # a mapped alert always has both
    savepoint = session.begin_nested()
    try:
        opening = open_asset_incident(
            session=session,
            type=alert.type,
            asset=alert.asset,
            asset_kinds=alert.asset_kinds,
            atlas_ids=alert.atlas_ids,
            alias=alias,
            actor=actor,
            severity=alert.severity,
            since=alert.since,
            summary=alert.summary,
            source=IncidentSource.ALERT,
            dedup_key=alert.dedup_key,
            defer_to_holder=True,
            window_s=window_s,
        )
    except RearguardError as exc:
        savepoint.rollback()
        return AlertOutcome("rejected", error=exc.message)
    if opening.holder is not None:
        # Another transaction claimed a key between our read and our claim: join its incident.
        savepoint.rollback()
        return AlertOutcome("attached", opening.holder.incident_id)
    savepoint.commit()
    assert opening.incident is not None and opening.incident.id is not None
    holders.opened(alert.dedup_keys(), opening.incident.id)
    return AlertOutcome("opened", opening.incident.id)


def _record(session: Session, alert: IncomingAlert, outcome: AlertOutcome, *, actor: str) -> None:
    data: dict[str, Any] = {
        "source": alert.source,
        "status": alert.status,
        "type": alert.type,
        "severity": str(alert.severity),
        "dedup_key": alert.dedup_key,
        "labels": alert.labels,
        "summary": alert.summary,
    }
    if outcome.error:
        data["error"] = outcome.error
    append_event(
        session,
        kind=EventKind.ALERT,
        action=f"alert.{outcome.action}",
        actor=actor,
        incident_id=outcome.incident_id,
        asset=alert.asset,
        data=data,
    )
