"""What the two review documents share: the Jinja2 environments, filters and the context.

The HTML environment autoescapes everything; the Markdown one escapes user text with the
``md`` filter so that a summary cannot inject markup (``<script>``, links, table breaks) into a
document that a Markdown renderer turns into HTML. Templates stream: the timeline table is
rendered from a generator, one event at a time.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

import jinja2
from markupsafe import Markup

from rearguard.flows.exports.facts import EventView, IncidentFacts, RedactionCounter
from rearguard.flows.exports.references import (
    ATLAS_URL,
    CODE_OF_PRACTICE,
    atlas_name,
    provision,
)

_ATLAS_ID = re.compile(r"^AML\.T[0-9]{4}(\.[0-9]{3})?$")
# What could make Markdown text into markup: raw HTML and autolinks (< >), entities (&),
# attributes' quotes, links and images ([ ]), table cells (|), code, emphasis and
# strike-through. Each becomes an HTML character reference, which every renderer decodes to the
# character as text: CommonMark honours backslash escapes for all of them, but Python-Markdown
# (MkDocs, many wikis) does not for < and >, and passes ``\<script>`` on as a tag.
# Intraword underscores (model_compromise) are literal in CommonMark and stay as they are.
# Nothing to do unless one of these is present (most timeline cells hold none).
_MD_QUICK = re.compile(r"""[\\`*\[\]<>|~_&"'\r\n\t\f\v]""")
_MD_SPECIAL = re.compile(r"""[\\`*\[\]<>|~&"']|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])""")
_MD_REFERENCE = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}
# A line that starts like a block (a heading, a list, a rule, a setext underline) would be one.
_MD_BLOCK_START = re.compile(r"^(?:[#=+-]|\d+[.)])")


def duration(seconds: float | None) -> str:
    """A duration for people: ``340 ms``, ``9.42 s``, ``4 min 03 s``, ``3 h 04 min``, ``2 d 03 h``.

    None is shown as ``-``.
    """
    if seconds is None:
        return "-"
    sign, s = ("-" if seconds < 0 else ""), abs(seconds)
    if s < 1:
        return f"{sign}{s * 1000:.0f} ms"
    if s < 60:
        return f"{sign}{s:.2f} s"
    whole = round(s)
    if s < 3600:
        return f"{sign}{whole // 60} min {whole % 60:02d} s"
    if s < 86400:
        return f"{sign}{whole // 3600} h {whole % 3600 // 60:02d} min"
    return f"{sign}{whole // 86400} d {whole % 86400 // 3600:02d} h"


def when(moment: datetime | str | None) -> str:
    """A moment for people: ``2026-11-25 03:00:00.123 UTC``."""
    if moment is None:
        return "-"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def md(text: Any) -> str:
    """Escape text for Markdown: no markup, no raw HTML, no table breaks, one line."""
    if text is None:
        return ""
    value = str(text)
    if _MD_QUICK.search(value) is None and _MD_BLOCK_START.match(value) is None:
        return value
    value = _MD_SPECIAL.sub(_reference, " ".join(value.split()))
    start = _MD_BLOCK_START.match(value)
    if start:
        mark = start.group(0)
        value = mark[:-1] + f"&#{ord(mark[-1])};" + value[len(mark) :]
    return value


def _reference(match: re.Match[str]) -> str:
    char = match.group(0)
    return _MD_REFERENCE.get(char) or f"&#{ord(char)};"


def code(text: Any) -> str:
    """A Markdown code span that holds any text: a fence longer than its backtick runs, one
    line, pipes escaped for tables."""
    value = " ".join(str(text or "").split())
    longest = max((len(run) for run in re.findall(r"`+", value)), default=0)
    fence = "`" * (longest + 1)
    # In a table a pipe ends the cell even inside a code span; ``\|`` is the one escape
    # there that both GFM and Python-Markdown's tables read as a pipe.
    return f"{fence} {value.replace('|', chr(92) + '|')} {fence}"


def short(digest: str | None, length: int = 12) -> str:
    """The first characters of a hash."""
    return (digest or "")[:length]


def _environment(*, as_html: bool) -> jinja2.Environment:
    # Markdown is not HTML: its templates escape every user value with the md or code filter.
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("rearguard.flows.exports", "templates"),
        autoescape=as_html,  # noqa: S701
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(duration=duration, when=when, md=md, code=code, short=short)
    return env


def render(
    template: str,
    facts: IncidentFacts,
    out: TextIO,
    *,
    as_html: bool,
    chart: Markup | None = None,
) -> None:
    """Render a review template for an incident, streaming into ``out``.

    Args:
        template: the template's name.
        facts: the incident's facts.
        out: where the text goes.
        as_html: HTML (escaped, the timeline as table rows) rather than Markdown.
        chart: the timeline chart an HTML review shows (``chart.timeline_svg``).
    """
    context = review_context(facts)
    if as_html:
        context["chart"] = chart
        context["timeline_rows"] = html_rows(context["events"])
    else:
        context["timeline_rows"] = md_rows(context["events"])
    stream = _environment(as_html=as_html).get_template(template).generate(**context)
    buffer: list[str] = []
    size = 0
    for chunk in stream:
        buffer.append(chunk)
        size += len(chunk)
        if size > 1 << 16:
            out.write("".join(buffer))
            buffer.clear()
            size = 0
    out.write("".join(buffer))


def html_rows(events: Iterator[EventView], *, per_chunk: int = 200) -> Iterator[Markup]:
    """The timeline table's rows, every value HTML-escaped, in chunks.

    Built here rather than in the template, with the standard library's ``html.escape``
    (``& < > " '``, as autoescape does): a fifth of the cost of Jinja's per-expression
    machinery, which matters for an incident with 100,000 events.
    """
    esc = html.escape
    chunk: list[str] = []
    for e in events:
        badge = '<span class="badge warn">redacted</span> ' if e.redacted else ""
        ts = e.ts
        chunk.append(
            f'<tr><td class="num">{e.seq:d}</td><td class="nowrap">{esc(ts[:10])} '
            f"{esc(ts[11:23])}</td><td>{esc(e.kind)}</td><td>{esc(e.action)}</td>"
            f"<td>{esc(e.actor)}</td><td>{esc(e.version or '')}</td>"
            f'<td class="detail">{badge}{esc(e.detail)}</td>'
            f'<td class="mono">{esc(e.hash[:12])}</td></tr>\n'
        )
        if len(chunk) >= per_chunk:
            yield Markup("".join(chunk))  # noqa: S704  (every value above went through escape)
            chunk.clear()
    if chunk:
        yield Markup("".join(chunk))  # noqa: S704


def md_rows(events: Iterator[EventView], *, per_chunk: int = 200) -> Iterator[str]:
    """The timeline table's Markdown rows, every text through :func:`md`, in chunks."""
    chunk: list[str] = []
    for e in events:
        chunk.append(
            f"| {e.seq} | {md(e.ts[:10])} {md(e.ts[11:23])} | {md(e.kind)} | {md(e.action)} | "
            f"{md(e.actor)} | {md(e.version or '')} | {md(e.detail)} |\n"
        )
        if len(chunk) >= per_chunk:
            yield "".join(chunk)
            chunk.clear()
    if chunk:
        yield "".join(chunk)


def review_context(facts: IncidentFacts) -> dict[str, Any]:
    """Everything the review templates show, the events as a stream."""
    incident = facts.incident
    title = f"Incident {incident.id}: {facts.playbook_title or incident.type}"
    counter = RedactionCounter()
    return {
        "title": title,
        "facts": facts,
        "incident": incident,
        "outcome": outcome_sentence(facts),
        "metrics": facts.metrics,
        "exposure": facts.exposure,
        "versions": facts.versions,
        "steps": facts.steps,
        "actions": facts.actions,
        "atlas": [
            {
                "id": technique,
                "name": atlas_name(technique),
                "url": ATLAS_URL.format(id=technique) if _ATLAS_ID.match(technique) else None,
            }
            for technique in incident.atlas_ids
        ],
        "code_of_practice": CODE_OF_PRACTICE,
        "provisions": [
            {"number": number, "summary": provision(number)[0], "evidence": provision(number)[1]}
            for number in facts.provisions
        ],
        "events": facts.events(counter),
        "redactions": counter,
        "chart": "",
    }


def outcome_sentence(facts: IncidentFacts) -> str:
    """One sentence on how the incident ended, from its record."""
    incident, m = facts.incident, facts.milestones
    asset, alias = incident.asset or "the asset", facts.alias
    if m.recovered is not None and incident.selected:
        text = (
            f"Recovered: {asset} {alias} rolled back from {incident.compromised or '(none)'} to "
            f"{incident.selected}, re-verified and validated, {duration(_since(m.recovered, m))} "
            "after the incident opened."
        )
    elif m.failed is not None:
        text = (
            f"The playbook failed: {incident.reason or 'see the timeline'}. {asset} {alias} "
            f"was left on {facts.production_now or '(none)'}."
        )
    else:
        text = f"The response has not concluded; the incident is {incident.status}."
    if m.resolved is not None:
        who = f" by {facts.resolution.actor}" if facts.resolution else ""
        text += f" Resolved{who} at {when(m.resolved)}."
    return text


def _since(moment: datetime, m: Any) -> float | None:
    return (moment - m.opened).total_seconds() if m.opened else None
