"""Exporting incidents: pick the format's writer, feed it the incident's facts, write the file."""

from __future__ import annotations

import importlib
from datetime import datetime
from pathlib import Path
from typing import TextIO

from sqlmodel import col, select

from rearguard.flows.exports.facts import IncidentFacts, Timeline, load_facts, load_timeline
from rearguard.flows.exports.formats import ExportFormat, file_name
from rearguard.flows.exports.output import atomic_text_file
from rearguard.models.config.home import PRIVATE_FILE_MODE, private_directory
from rearguard.models.db.engine import Database
from rearguard.models.db.tables import Incident

# Format -> module with write(facts, out); imported on use (the review formats load Jinja2).
_WRITERS = {
    ExportFormat.MD: "rearguard.flows.exports.review_md",
    ExportFormat.HTML: "rearguard.flows.exports.review_html",
    ExportFormat.JSONL: "rearguard.flows.exports.timeline_jsonl",
    ExportFormat.CSV: "rearguard.flows.exports.timeline_csv",
    ExportFormat.STIX: "rearguard.flows.exports.stix",
    ExportFormat.REPORT: "rearguard.flows.exports.report",
}

REVIEW_FORMATS = (ExportFormat.MD, ExportFormat.HTML)


def write_export(
    *,
    db: Database,
    incident_id: int,
    export_format: ExportFormat,
    out: TextIO,
    alias: str = "production",
) -> None:
    """Write one incident in one format to a text stream.

    Raises:
        NotFoundError: there is no such incident.
    """
    source = _source(db, incident_id, export_format, alias)
    importlib.import_module(_WRITERS[export_format]).write(source, out)


def _source(
    db: Database, incident_id: int, export_format: ExportFormat, alias: str
) -> IncidentFacts | Timeline:
    # The jsonl export streams the events as stored and needs nothing else about the incident.
    if export_format == ExportFormat.JSONL:
        return load_timeline(db, incident_id)
    return load_facts(db, incident_id, alias=alias)


def export_to_file(
    *,
    db: Database,
    incident_id: int,
    export_format: ExportFormat,
    path: Path,
    alias: str = "production",
) -> Path:
    """Write one incident in one format to a file, atomically; return the path."""
    source = _source(db, incident_id, export_format, alias)
    writer = importlib.import_module(_WRITERS[export_format])
    with atomic_text_file(path) as out:
        writer.write(source, out)
    return path


def write_reviews(
    *, db: Database, incident_id: int, directory: Path, alias: str = "production"
) -> list[Path]:
    """Write the Markdown and HTML review of an incident into a directory (created owner-only
    if missing), each file owner-only: a review holds the incident's details."""
    private_directory(directory)
    facts = load_facts(db, incident_id, alias=alias)
    written = []
    for export_format in REVIEW_FORMATS:
        path = directory / file_name(incident_id, export_format)
        with atomic_text_file(path, mode=PRIVATE_FILE_MODE) as out:
            importlib.import_module(_WRITERS[export_format]).write(facts, out)
        written.append(path)
    return written


def incident_ids(db: Database, *, since: datetime | None = None) -> list[int]:
    """The ids of the incidents opened at or after ``since`` (all when None), oldest first."""
    statement = select(Incident.id).order_by(col(Incident.id))
    if since is not None:
        statement = statement.where(col(Incident.opened_at) >= since)
    with db.read_session() as session:
        return [int(i) for i in session.exec(statement) if i is not None]
