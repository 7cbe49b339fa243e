"""The ``html`` export: the post-incident review as one self-contained HTML file.

No script, no external resource (styles inline, the chart inline SVG), a Content-Security-Policy
that forbids loading anything, so it works offline, prints, and stays inert whatever text an
incident holds (every value is escaped by Jinja2's autoescape).
"""

from __future__ import annotations

from typing import TextIO

from rearguard.flows.exports.chart import timeline_svg
from rearguard.flows.exports.facts import IncidentFacts
from rearguard.flows.exports.render import render


def write(facts: IncidentFacts, out: TextIO) -> None:
    """Write the review of an incident as HTML."""
    render("review.html.j2", facts, out, as_html=True, chart=timeline_svg(facts))
