"""Incidents as ``rearguard incident list`` shows them, read with plain SQL through the
database driver (:mod:`rearguard.models.db.direct`): no SQLAlchemy, so the command starts in a
fraction of the time. A row has the fields of the ``incident`` table, by the same names."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from rearguard.models.db.direct import DirectReader, json_value, utc_moment
from rearguard.models.enums import IncidentSource, IncidentStatus, Severity


@dataclass(frozen=True)
class IncidentRow:
    """One incident as it is recorded (the ``incident`` table's columns)."""

    id: int
    type: str
    severity: Severity
    status: IncidentStatus
    asset_name: str | None
    since: datetime | None
    summary: str
    source: IncidentSource
    dedup_key: str | None
    atlas_ids: list[str]
    opened_by: str
    opened_at: datetime
    updated_at: datetime
    reason: str | None
    state: dict[str, Any]

    @classmethod
    def of(cls, row: tuple[Any, ...]) -> IncidentRow:
        """The incident of a row of :data:`COLUMNS`, each value as the table model reads it."""
        values = dict(zip(COLUMNS, row, strict=True))
        return cls(
            **{
                **values,
                "severity": Severity(values["severity"]),
                "status": IncidentStatus(values["status"]),
                "source": IncidentSource(values["source"]),
                "since": utc_moment(values["since"]) if values["since"] is not None else None,
                "opened_at": utc_moment(values["opened_at"]),
                "updated_at": utc_moment(values["updated_at"]),
                "atlas_ids": list(json_value(values["atlas_ids"])),
                "state": dict(json_value(values["state"])),
            }
        )


COLUMNS = tuple(field.name for field in fields(IncidentRow))
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM incident"  # noqa: S608 - constant column names


def list_incident_rows(
    *, reader: DirectReader, include_drills: bool = False, limit: int = 100
) -> list[IncidentRow]:
    """Incidents, newest first (at most ``limit``); recovery drills' only with
    ``include_drills``: those :func:`rearguard.models.incidents.service.list_incidents` gives.
    """
    if include_drills:
        found = reader.rows(f"{_SELECT} ORDER BY id DESC LIMIT ?", limit)
    else:
        found = reader.rows(
            f"{_SELECT} WHERE source <> ? ORDER BY id DESC LIMIT ?",
            IncidentSource.DRILL.value,
            limit,
        )
    return [IncidentRow.of(row) for row in found]
