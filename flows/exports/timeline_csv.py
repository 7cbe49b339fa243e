"""The ``csv`` export: the timeline for spreadsheets (RFC 4180, UTF-8, one row per event).

A cell that a spreadsheet would run as a formula (one starting with ``=``, ``+``, ``-``, ``@``,
a tab or a carriage return) is prefixed with ``'``, as OWASP recommends against CSV injection:
an incident summary is typed by people, and an export must not turn into code when opened.
"""

from __future__ import annotations

import csv
from typing import TextIO

from rearguard.flows.exports.facts import IncidentFacts
from rearguard.models.audit.chain import canonical_json

COLUMNS = (
    "seq",
    "time_utc",
    "kind",
    "action",
    "actor",
    "asset",
    "version",
    "detail",
    "data",
    "redacted",
    "prev_hash",
    "hash",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(text: str | None) -> str:
    """A text cell, defused if a spreadsheet would read it as a formula."""
    if not text:
        return ""
    return "'" + text if text.startswith(_FORMULA_START) else text


def write(facts: IncidentFacts, out: TextIO) -> None:
    """Write an incident's timeline as CSV with a header row."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for event in facts.events():
        writer.writerow(
            (
                event.seq,
                event.ts,
                cell(event.kind),
                cell(event.action),
                cell(event.actor),
                cell(event.asset),
                cell(event.version),
                cell(event.detail),
                cell(canonical_json(event.data)),
                "yes" if event.redacted else "",
                event.prev_hash,
                event.hash,
            )
        )
