"""Resolving an incident: a person closes it once the response is over.

Which incidents can be resolved:

- ``recovered``: the playbook restored a known-good state; a note is optional.
- ``failed``: the playbook could not finish; people dealt with it by hand, so a note saying how
  is required.
- ``contained`` by a playbook that ends there (``model_theft``: a stolen model cannot be
  restored): resolved with a note saying how it was closed.
- ``open``, and ``contained`` mid-run: refused. The playbook has not concluded (it may be
  running, or was interrupted); resolving now would race with it. Run it to its end first
  (``rearguard playbook run --incident ID``); an incident it cannot recover becomes ``failed``,
  which can then be resolved with a note.
- ``resolved``: refused; an incident is resolved once.

The note is redacted before it is recorded (a secret pasted into it never reaches the chain).
The resolution is two timeline events in one transaction: the person's decision (with the
note) and the state change.
"""

from __future__ import annotations

from sqlmodel import Session, select

from rearguard.models.audit.chain import append_event
from rearguard.models.audit.redaction import redact_text
from rearguard.models.db.tables import Incident
from rearguard.models.enums import EventKind, IncidentStatus
from rearguard.models.errors import ConflictError, NotFoundError, UsageError
from rearguard.models.incidents.service import set_incident_status

_MAX_NOTE = 10_000


def resolve_incident(
    *, session: Session, incident_id: int, actor: str, note: str | None = None
) -> Incident:
    """Resolve an incident in the caller's transaction.

    Args:
        session: an open write session.
        incident_id: the incident.
        actor: the person resolving it.
        note: how it was closed (required when the playbook failed).

    Returns:
        The incident, now ``resolved``.

    Raises:
        NotFoundError: there is no such incident.
        ConflictError: it is already resolved, or its playbook has not concluded.
        UsageError: a failed incident without a note, or a note that is too long.
    """
    # FOR UPDATE: two concurrent resolves on PostgreSQL serialise here (SQLite's write
    # transaction already holds the database lock).
    incident = session.exec(
        select(Incident).where(Incident.id == incident_id).with_for_update()
    ).first()
    if incident is None:
        raise NotFoundError(f"unknown incident {incident_id}", hint="see `rearguard incident list`")
    status = IncidentStatus(incident.status)
    note = (note or "").strip() or None
    if status == IncidentStatus.RESOLVED:
        raise ConflictError(f"incident {incident_id} is already resolved")
    concluded = incident.state.get("concluded") == str(IncidentStatus.CONTAINED)
    if status == IncidentStatus.OPEN or (status == IncidentStatus.CONTAINED and not concluded):
        raise ConflictError(
            f"incident {incident_id} is {status}: its playbook has not concluded",
            hint=f"run it to its end first: rearguard playbook run --incident {incident_id}",
        )
    if status in (IncidentStatus.FAILED, IncidentStatus.CONTAINED) and note is None:
        ended = "failed" if status == IncidentStatus.FAILED else "ended contained"
        raise UsageError(
            f"incident {incident_id} {ended}; resolving it needs a note saying how it was closed",
            hint='add --note "..."',
        )
    if note is not None and len(note) > _MAX_NOTE:
        raise UsageError(f"the note is {len(note)} characters; at most {_MAX_NOTE}")
    append_event(
        session,
        kind=EventKind.DECISION,
        action="incident.resolve",
        actor=actor,
        incident_id=incident.id,
        asset=incident.asset_name,
        data={"from": str(status), "note": redact_text(note) if note else None},
    )
    set_incident_status(
        session=session,
        incident=incident,
        status=IncidentStatus.RESOLVED,
        actor=actor,
        reason=incident.reason,
    )
    return incident
