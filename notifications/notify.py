"""The notify step's body, and delivering what a playbook run queued.

The step only writes: the ``notify.<event>`` timeline event and the outbox rows, in one
transaction. Delivery happens after the playbook (:func:`deliver_after_run`) or from
``rearguard notifications dispatch``, so a Slack outage never holds up a rollback.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session

from rearguard.models.assets.versions import alias_version, get_asset, get_version
from rearguard.models.audit.chain import events_for_incident
from rearguard.models.db.tables import Incident
from rearguard.models.errors import NotFoundError
from rearguard.models.incidents.service import get_incident, update_state
from rearguard.models.recovery.effects import effects_of
from rearguard.models.recovery.results import LegalNotice, Notified, Skipped
from rearguard.models.runtime import Runtime
from rearguard.notifications.dispatcher import Dispatcher
from rearguard.notifications.factory import ChannelPool
from rearguard.notifications.outbox import enqueue


def notify(
    *,
    runtime: Runtime,
    incident_id: int,
    event: str,
    if_status: str | None = None,
    roles: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Notified | Skipped:
    """Queue the notification of an incident's event for every routed channel.

    Idempotent: a rerun for the same incident state queues nothing new.

    Args:
        runtime: the process runtime.
        incident_id: the incident.
        event: the template's event (opened, contained, recovered, failed...).
        if_status: announce only while the incident has this status, so that a rerun does not
            announce ``opened`` for an incident that is contained by now.
        roles: stakeholder roles to reach besides the routed ones (``legal``, ``privacy``,
            ``data_owner``...).
        extra: further facts for the template (``detail``: a paragraph that replaces the
            default one); never secrets.

    Returns:
        What was queued for which target, or skipped (with why) when the incident is no longer
        in ``if_status``.
    """
    with runtime.db.read_session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        if if_status is not None and incident.status != if_status:
            return Skipped(skipped=f"the incident is {incident.status}", event=event)
        production, facts = _asset_facts(runtime, session, incident)
        facts.update(_run_facts(session, incident, event))
    return _queue(
        runtime,
        incident,
        production=production,
        event=event,
        roles=roles,
        extra={**facts, **(extra or {})},
    )


def _asset_facts(
    runtime: Runtime, session: Session, incident: Incident
) -> tuple[str | None, dict[str, Any]]:
    """What the incident's asset serves in production now (None if unknown), and what became
    of the version production served when the incident opened (``compromised_status``), as it
    is now: a message must not say "quarantined" of a version that was left alone."""
    if not incident.asset_name:
        return None, {}
    facts: dict[str, Any] = {}
    # An asset the registry does not know must not stop the notification.
    with contextlib.suppress(NotFoundError):
        asset = get_asset(session=session, name=incident.asset_name)
        current = alias_version(session=session, asset=asset, alias=runtime.settings.registry.alias)
        compromised = incident.state.get("compromised")
        if compromised:
            found = get_version(session=session, asset=asset, label=compromised)
            facts["compromised_status"] = str(found.status)
        return (current.label if current else None), facts
    return None, facts


def _run_facts(session: Session, incident: Incident, event: str) -> dict[str, Any]:
    """What the incident's runs did so far, as its timeline records it, for the event's message.

    ``quarantined`` (``asset@label``) for ``contained`` and the end events; for the end events
    (``recovered``, ``failed``) also ``moved`` (each alias move: asset, from, to, and the
    status the version moved away from has now) and ``validated`` (``asset@label`` of the
    versions that passed their validation command). Only the facts an event's message uses, so
    that a rerun in the same state queues the same message (the outbox deduplicates on them).
    """
    if event not in ("contained", "recovered", "failed"):
        return {}
    effects = effects_of(events_for_incident(session=session, incident_id=int(incident.id or 0)))
    facts: dict[str, Any] = {"quarantined": list(effects.quarantined)}
    if event == "contained":
        return facts
    facts["validated"] = list(effects.validated)
    facts["moved"] = [
        {
            "asset": move.asset,
            "from": move.from_,
            "to": move.to,
            "from_status": _status_of(session, move.asset, move.from_),
        }
        for move in effects.moves
    ]
    return facts


def _status_of(session: Session, asset: str, label: str | None) -> str | None:
    if label is None:
        return None
    with contextlib.suppress(NotFoundError):  # a version since removed from the registry
        found = get_asset(session=session, name=asset)
        return str(get_version(session=session, asset=found, label=label).status)
    return None


def _queue(
    runtime: Runtime,
    incident: Incident,
    *,
    production: str | None,
    event: str,
    roles: list[str] | None,
    extra: dict[str, Any] | None,
) -> Notified:
    """Write the ``notify.<event>`` event and its outbox rows, in one transaction."""
    with runtime.db.transaction() as connection:
        queued = enqueue(
            connection,
            settings=runtime.settings,
            incident=incident,
            event=event,
            actor=f"playbook:{incident.type}",
            production=production,
            extra=extra,
            # A drill's playbook tells only the drill destinations, never legal or owners.
            roles=() if str(incident.source) == "drill" else (roles or ()),
        )
    return Notified(event=event, receipts=queued.targets, queued=queued.rows)


# UK GDPR Art. 33(1): notify the ICO within 72 hours of becoming aware of a personal-data breach.
REGULATOR_DEADLINE_HOURS = 72


def notify_legal(*, runtime: Runtime, incident_id: int) -> LegalNotice | Skipped:
    """Tell legal and privacy of a possible exfiltration, with the regulator deadline if it applies.

    When the incident's asset is marked ``personal_data = true`` (``[assets.NAME]``), the
    message states the 72-hour deadline of UK GDPR Art. 33 for notifying the regulator,
    counted from when the incident was opened, and the deadline is recorded on the incident.

    Sent once per incident: the incident's state records it (``legal_notified``), so a rerun
    of the playbook, whatever the incident's status by then, does not send it again.

    Returns:
        What was queued, whether the asset touches personal data, the deadline (or None);
        skipped when legal and privacy were already told.
    """
    with runtime.db.read_session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        production, facts = _asset_facts(runtime, session, incident)
        facts.update(_run_facts(session, incident, "contained"))
    sent = incident.state.get("legal_notified")
    if sent:
        return Skipped(skipped=f"legal and privacy were told at {sent}", event="contained")
    personal = runtime.settings.hooks.personal_data(incident.asset_name)
    deadline = None
    if personal:
        due = incident.opened_at + timedelta(hours=REGULATOR_DEADLINE_HOURS)
        deadline = due.astimezone(UTC).isoformat(timespec="minutes")
        detail = (
            f"{incident.asset_name} touches personal data: if personal data was taken, the "
            f"regulator (ICO) must be notified within {REGULATOR_DEADLINE_HOURS} hours of "
            f"becoming aware (UK GDPR Art. 33), by {deadline} at the latest."
        )
    else:
        detail = (
            f"{incident.asset_name} is not marked as touching personal data; check whether "
            "anything exfiltrated with it did."
        )
    queued = _queue(
        runtime,
        incident,
        production=production,
        event="contained",
        roles=["legal", "privacy"],
        extra={**facts, "detail": detail, "regulator_deadline": deadline},
    )
    with runtime.db.session() as session:
        update_state(
            session=session,
            incident=get_incident(session=session, incident_id=incident_id),
            legal_notified=datetime.now(UTC).isoformat(timespec="seconds"),
        )
    return LegalNotice(
        event=queued.event,
        receipts=queued.receipts,
        queued=queued.queued,
        personal_data=personal,
        regulator_deadline=deadline,
    )


def deliver_after_run(runtime: Runtime, *, incident_id: int) -> None:
    """Deliver an incident's queued notifications, waiting at most ``dispatch_wait_s``.

    Called when a playbook run has ended. A channel that is down (failed twice in a row, not
    a rate limit) is not waited for; whatever is still waiting stays in the outbox for
    ``rearguard notifications dispatch``. How it went is reported to the runtime's reporters
    as the step ``notifications``.
    """
    wait_s = runtime.settings.notifications.dispatch_wait_s
    try:
        pool = ChannelPool(
            runtime.settings, secret_blocks=runtime.secret_blocks, console=runtime.console
        )
        with Dispatcher(settings=runtime.settings, db=runtime.db, pool=pool) as dispatcher:
            report = dispatcher.drain(wait_s=wait_s, incident_id=incident_id, stop_when_down=True)
    except Exception as exc:  # the outbox keeps them; a delivery problem never fails the run
        runtime.report("notifications", "fail", f"not delivered yet: {type(exc).__name__}")
        return
    if report.pending or report.failed:
        hint = "; `rearguard notifications dispatch` retries" if report.pending else ""
        runtime.report("notifications", "fail", report.describe() + hint)
