"""The ``md`` export: the post-incident review as Markdown."""

from __future__ import annotations

from typing import TextIO

from rearguard.flows.exports.facts import IncidentFacts
from rearguard.flows.exports.render import render


def write(facts: IncidentFacts, out: TextIO) -> None:
    """Write the review of an incident as Markdown."""
    render("review.md.j2", facts, out, as_html=False)
