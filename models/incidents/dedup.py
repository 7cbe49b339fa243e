"""Dedup keys: which incident an alert's key belongs to, enforced by the database.

One row per key (its primary key) in ``incident_dedup_key``. A key is *active* while its
incident is not resolved, and for ``window_s`` seconds after it is. Claiming a key inserts the
row (``ON CONFLICT DO NOTHING``) or takes over a row whose incident is no longer active with a
compare-and-set ``UPDATE``, so two transactions (in one process or several) can never both
claim the same key: the loser sees the winner's incident instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from rearguard.models.db.tables import Incident, IncidentDedupKey, table_of
from rearguard.models.enums import IncidentStatus
from rearguard.models.errors import ConflictError

_KEYS = table_of(IncidentDedupKey)
_INCIDENTS = table_of(Incident)
_MAX_CLAIM_ATTEMPTS = 5
_LOOKUP_CHUNK = 500


def type_asset_key(incident_type: str, asset: str) -> str:
    """The dedup key of every alert for one incident type on one asset."""
    return f"type-asset:{incident_type}:{asset}"


@dataclass(frozen=True)
class KeyHolder:
    """The incident a key belongs to, and whether new alerts still attach to it."""

    incident_id: int
    active: bool


def key_holder(connection: Connection, key: str, *, window_s: float) -> KeyHolder | None:
    """Return the incident holding ``key``, or None when no incident ever did."""
    return key_holders(connection, [key], window_s=window_s)[key]


def key_holders(
    connection: Connection, keys: Iterable[str], *, window_s: float
) -> dict[str, KeyHolder | None]:
    """Return the incident holding each key (None when no incident ever did), in one query
    per ``_LOOKUP_CHUNK`` keys: an alert storm's batch asks for a few keys many times."""
    wanted = list(dict.fromkeys(keys))
    found: dict[str, KeyHolder | None] = dict.fromkeys(wanted)
    for start in range(0, len(wanted), _LOOKUP_CHUNK):
        rows = connection.execute(
            select(
                _KEYS.c.dedup_key, _KEYS.c.incident_id, _INCIDENTS.c.status, _INCIDENTS.c.updated_at
            )
            .select_from(_KEYS.outerjoin(_INCIDENTS, _INCIDENTS.c.id == _KEYS.c.incident_id))
            .where(_KEYS.c.dedup_key.in_(wanted[start : start + _LOOKUP_CHUNK]))
        )
        for row in rows:
            if row.incident_id is not None:
                active = _is_active(row.status, row.updated_at, window_s)
                found[row.dedup_key] = KeyHolder(int(row.incident_id), active)
    return found


def _is_active(status: str | None, updated_at: datetime | None, window_s: float) -> bool:
    if status is None:
        return False  # the incident row is gone: the key is free
    if status != IncidentStatus.RESOLVED:
        return True
    if updated_at is None or window_s <= 0:
        return False
    resolved_at = updated_at if updated_at.tzinfo else updated_at.replace(tzinfo=UTC)
    return datetime.now(UTC) - resolved_at < timedelta(seconds=window_s)


def claim_key(connection: Connection, key: str, *, window_s: float) -> KeyHolder | None:
    """Claim ``key`` for an incident about to be opened in this transaction.

    Returns:
        None when the key is now this transaction's (call :func:`bind_key` once the incident
        has an id), else the active incident that holds it.
    """
    for _ in range(_MAX_CLAIM_ATTEMPTS):
        holder = key_holder(connection, key, window_s=window_s)
        if holder is None:
            insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
            inserted = connection.execute(
                insert(_KEYS)
                .values(dedup_key=key, incident_id=None, claimed_at=datetime.now(UTC))
                .on_conflict_do_nothing(index_elements=["dedup_key"])
                # RETURNING: psycopg reports no rowcount for this statement.
                .returning(_KEYS.c.dedup_key)
            )
            if inserted.first() is not None:
                return None
            continue  # another transaction inserted it first: read who holds it
        if holder.active:
            return holder
        taken = connection.execute(
            update(_KEYS)
            .where(_KEYS.c.dedup_key == key, _KEYS.c.incident_id == holder.incident_id)
            .values(incident_id=None, claimed_at=datetime.now(UTC))
        )
        if taken.rowcount == 1:
            return None
    # Only reachable if the key keeps changing hands under us.
    raise ConflictError(f"dedup key {key!r} changed hands {_MAX_CLAIM_ATTEMPTS} times; retry")


def bind_key(connection: Connection, key: str, incident_id: int) -> None:
    """Point a key this transaction claimed at its incident."""
    connection.execute(
        update(_KEYS).where(_KEYS.c.dedup_key == key).values(incident_id=incident_id)
    )
