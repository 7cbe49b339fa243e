"""The export formats and their file names (light: the CLI imports it at start-up)."""

from __future__ import annotations

from enum import StrEnum


class ExportFormat(StrEnum):
    """What ``rearguard export --format`` can write."""

    MD = "md"
    HTML = "html"
    JSONL = "jsonl"
    CSV = "csv"
    STIX = "stix"
    REPORT = "report"


_SUFFIXES = {
    ExportFormat.MD: ".md",
    ExportFormat.HTML: ".html",
    ExportFormat.JSONL: ".jsonl",
    ExportFormat.CSV: ".csv",
    ExportFormat.STIX: ".stix.json",
    ExportFormat.REPORT: ".report.json",
}


def file_name(incident_id: int, export_format: ExportFormat) -> str:
    """The file an incident's export is written to inside a directory."""
    return f"incident-{incident_id}{_SUFFIXES[export_format]}"
