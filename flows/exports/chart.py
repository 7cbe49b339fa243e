"""The review's timeline chart, as inline SVG: phases as bars, events as marks, a readable axis.

Two panels. *Lifecycle*: how long the compromised version served production, how long the
compromise went undetected, the response and the wait for resolution, on one axis (which may
span days). *Response*: each playbook step as a bar from its intent to its outcome, on an axis
that spans the response alone (usually seconds), so steps stay visible. Each panel has a row
of events: one mark per event (with its action in a tooltip) up to a few hundred events, and
above that one bar per pixel column whose height says how many events fell there, so a
100,000-event incident draws as a few hundred shapes.

Every text is escaped; numbers are written with fixed precision, so the SVG is deterministic.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from markupsafe import Markup, escape

from rearguard.flows.exports.facts import KINDS, MAX_MARKS, IncidentFacts
from rearguard.flows.exports.render import duration

WIDTH = 960
LABEL_W = 190
RIGHT = 24
PLOT_W = WIDTH - LABEL_W - RIGHT
ROW_H = 22
BAR_H = 14
BUCKET_PX = 3

KIND_COLOURS = {
    "intent": "#6b7280",
    "outcome": "#2563eb",
    "decision": "#7c3aed",
    "notification": "#0d9488",
    "state": "#d97706",
}
_NICE_STEPS = (
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10800,
    21600,
    43200,
    86400,
    172800,
    604800,
    1209600,
    2592000,
    7776000,
    *(365 * 86400 * years for years in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)),
)


_EARLIEST = datetime(1, 1, 2, tzinfo=UTC).timestamp()
_LATEST = datetime(9999, 12, 30, tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class Bar:
    """One phase or step: a labelled bar from start to end (end None: still going)."""

    label: str
    start: float
    end: float | None
    colour: str
    note: str
    dashed: bool = False


def _t(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


def timeline_svg(facts: IncidentFacts) -> Markup:
    """Both panels of the chart, as one inline ``<svg>`` element."""
    if not facts.event_times:
        return Markup()
    times = facts.event_times
    m = facts.milestones
    opened = _t(m.opened) or _t(facts.incident.opened_at) or times[0]
    last = times[-1]
    lifecycle = _lifecycle_bars(facts, opened, last)
    response_end = _response_end(facts, last)
    steps = [
        Bar(
            label=step.name,
            start=step.started.timestamp(),
            end=_t(step.ended),
            colour={True: "#16a34a", False: "#dc2626", None: "#f59e0b"}[step.ok],
            note=step.detail,
            dashed=step.ended is None,
        )
        for step in facts.steps
    ]
    panels: list[str] = []
    y = 0.0
    lo = min([opened, times[0], *[b.start for b in lifecycle]])
    hi = max([last, *[b.end for b in lifecycle if b.end is not None]])
    panel, y = _panel(
        "Lifecycle",
        lifecycle,
        facts,
        lo,
        hi,
        y,
        milestones=_milestone_lines(facts),
    )
    panels.append(panel)
    if steps:
        # The playbook's run alone: the wait before its first step is on the lifecycle panel.
        lo = min(b.start for b in steps)
        hi = max([response_end, *[b.end for b in steps if b.end is not None]])
        panel, y = _panel(
            "Response: playbook steps",
            steps,
            facts,
            lo,
            hi,
            y + 18,
            milestones=_milestone_lines(facts),
        )
        panels.append(panel)
    legend, y = _legend(y + 10)
    height = y + 8
    label = (
        f"Timeline of incident {facts.incident.id}: {facts.event_count} events from "
        f"{_clock(times[0], 86400, full=True)} to {_clock(last, 86400, full=True)} UTC"
    )
    # Every text interpolated into the SVG went through escape(); the rest is numbers.
    return Markup(  # noqa: S704
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'viewBox="0 0 {WIDTH} {height:.0f}" width="{WIDTH}" height="{height:.0f}" '
        f'aria-label="{escape(label)}"><title>{escape(label)}</title>'
        + "".join(panels)
        + legend
        + "</svg>"
    )


def _lifecycle_bars(facts: IncidentFacts, opened: float, last: float) -> list[Bar]:
    m = facts.milestones
    bars: list[Bar] = []
    exposure = facts.exposure
    if exposure is not None and exposure.start is not None:
        end = _t(exposure.end)
        bars.append(
            Bar(
                f"{exposure.label} in production",
                exposure.start.timestamp(),
                end,
                "#dc2626",
                "compromised version served production"
                + ("" if end is not None else " (not rolled back)"),
                dashed=end is None,
            )
        )
    if facts.incident.since is not None:
        bars.append(
            Bar(
                "undetected",
                facts.incident.since.timestamp(),
                opened,
                "#f97316",
                "from the suspected start of the compromise to the incident's opening",
            )
        )
    concluded = _t(m.recovered) or _t(m.failed)
    bars.append(
        Bar(
            "response",
            opened,
            concluded,
            "#2563eb" if m.failed is None else "#dc2626",
            "from opening to " + ("recovery" if m.recovered else "the playbook's failure")
            if concluded
            else "opened; the playbook has not concluded",
            dashed=concluded is None,
        )
    )
    if concluded is not None:
        resolved = _t(m.resolved)
        bars.append(
            Bar(
                "until resolved",
                concluded,
                resolved,
                "#9ca3af",
                "from the playbook's end to the resolution" if resolved else "not resolved yet",
                dashed=resolved is None,
            )
        )
    return bars


def _response_end(facts: IncidentFacts, last: float) -> float:
    """The end of the response panel: the last event before the resolution."""
    resolved = _t(facts.milestones.resolved)
    resolution = facts.resolution.ts.timestamp() if facts.resolution else None
    cut = min(t for t in (resolved, resolution, math.inf) if t is not None)
    if cut is math.inf:
        return last
    index = bisect_left(facts.event_times, cut)
    return facts.event_times[index - 1] if index > 0 else last


def _milestone_lines(facts: IncidentFacts) -> list[tuple[str, float]]:
    m = facts.milestones
    points = [
        ("opened", m.opened),
        ("contained", m.contained),
        ("recovered", m.recovered),
        ("failed", m.failed),
        ("resolved", m.resolved),
    ]
    return [(name, moment.timestamp()) for name, moment in points if moment is not None]


def _panel(
    title: str,
    bars: Sequence[Bar],
    facts: IncidentFacts,
    lo: float,
    hi: float,
    y: float,
    *,
    milestones: Sequence[tuple[str, float]] = (),
) -> tuple[str, float]:
    if hi - lo < 0.001:
        hi = lo + 0.001
    pad = (hi - lo) * 0.02
    # A suspected start in year 1 is a date Python can show; the padding before it is not.
    lo, hi = max(lo - pad, _EARLIEST), min(hi + pad, _LATEST)
    scale = PLOT_W / (hi - lo)

    def x(value: float) -> float:
        return LABEL_W + (min(max(value, lo), hi) - lo) * scale

    parts = [f'<text class="panel" x="4" y="{y + 14:.1f}">{escape(title)}</text>']
    y += 36 if milestones else 24
    top = y
    rows = len(bars) + 1
    parts.append(
        f'<rect class="plot" x="{LABEL_W}" y="{top:.1f}" width="{PLOT_W}" '
        f'height="{rows * ROW_H:.1f}"/>'
    )
    for bar in bars:
        x0 = x(bar.start)
        x1 = x(bar.end if bar.end is not None else hi)
        width = max(x1 - x0, 2.0)
        span = f"{duration(bar.end - bar.start)}" if bar.end is not None else "ongoing"
        tip = f"{bar.label}: {span}; {bar.note}"
        dash = ' stroke-dasharray="4 2" fill-opacity="0.35"' if bar.dashed else ""
        parts.append(
            f'<text class="label" x="{LABEL_W - 6}" y="{y + 15:.1f}">{escape(bar.label)}</text>'
            f'<rect x="{x0:.1f}" y="{y + (ROW_H - BAR_H) / 2:.1f}" width="{width:.1f}" '
            f'height="{BAR_H}" rx="2" fill="{bar.colour}" stroke="{bar.colour}"{dash}>'
            f"<title>{escape(tip)}</title></rect>"
        )
        parts.append(_bar_text(span, x0, width, y, pale=bar.dashed))
        y += ROW_H
    parts.append(f'<text class="label" x="{LABEL_W - 6}" y="{y + 15:.1f}">events</text>')
    marks, note = _marks(facts, lo, hi, x, y)
    parts.append(marks)
    y += ROW_H
    labelled_until = -math.inf
    for name, moment in milestones:
        if lo <= moment <= hi:
            mx = x(moment)
            parts.append(
                f'<line class="milestone" x1="{mx:.1f}" y1="{top - 4:.1f}" x2="{mx:.1f}" '
                f'y2="{y:.1f}"><title>{escape(name)} at {_clock(moment, 0.001, full=True)} '
                f"UTC</title></line>"
            )
            # Milestones seconds apart on a days-long axis share a pixel: name the first only.
            if mx - len(name) * 3 > labelled_until:
                parts.append(
                    f'<text class="milestone-label" x="{mx:.1f}" y="{top - 6:.1f}">'
                    f"{escape(name)}</text>"
                )
                labelled_until = mx + len(name) * 3 + 6
    axis, y = _axis(lo, hi, x, top, y, note)
    parts.append(axis)
    return "".join(parts), y


def _bar_text(text: str, x0: float, width: float, y: float, *, pale: bool = False) -> str:
    """A bar's duration: inside it when it fits, else beside it where there is room."""
    needed = len(text) * 6.2 + 8
    if width >= needed:
        css = "value" if pale else "inbar"  # white on a pale, dashed bar would not read
        return f'<text class="{css}" x="{x0 + 4:.1f}" y="{y + 15:.1f}">{escape(text)}</text>'
    if x0 + width + needed <= LABEL_W + PLOT_W:
        return (
            f'<text class="value" x="{x0 + width + 4:.1f}" y="{y + 15:.1f}">{escape(text)}</text>'
        )
    return (
        f'<text class="value" x="{x0 - 4:.1f}" y="{y + 15:.1f}" text-anchor="end">'
        f"{escape(text)}</text>"
    )


def _marks(
    facts: IncidentFacts, lo: float, hi: float, x: object, y: float
) -> tuple[str, str | None]:
    """The events row, and for an aggregated row the note that says how to read it."""
    assert callable(x)
    times = facts.event_times
    first, last = bisect_left(times, lo), bisect_right(times, hi)
    count = last - first
    if count == 0:
        return "", None
    parts: list[str] = []
    if facts.event_count <= MAX_MARKS:
        for mark in facts.marks[first:last]:
            mx = x(mark.ts.timestamp())
            colour = KIND_COLOURS.get(mark.kind, "#111827")
            tip = f"#{mark.seq} {mark.kind} {mark.action} at {_clock(mark.ts.timestamp(), 0.001)}"
            parts.append(
                f'<line x1="{mx:.1f}" y1="{y + 3:.1f}" x2="{mx:.1f}" y2="{y + ROW_H - 3:.1f}" '
                f'stroke="{colour}" stroke-width="2"><title>{escape(tip)}</title></line>'
            )
        return "".join(parts), None
    buckets = PLOT_W // BUCKET_PX
    counts = [0] * buckets
    width = (hi - lo) / buckets
    for index in range(first, last):
        counts[min(int((times[index] - lo) / width), buckets - 1)] += 1
    peak = max(counts)
    for bucket, n in enumerate(counts):
        if not n:
            continue
        h = max(2.0, (ROW_H - 4) * math.sqrt(n / peak))
        start = lo + bucket * width
        tip = (
            f"{n} events, {_clock(start, width, full=True)} to "
            f"{_clock(start + width, width, full=True)} UTC"
        )
        parts.append(
            f'<rect x="{LABEL_W + bucket * BUCKET_PX:.1f}" y="{y + ROW_H - 2 - h:.1f}" '
            f'width="{BUCKET_PX - 0.5:.1f}" height="{h:.1f}" fill="#475569">'
            f"<title>{escape(tip)}</title></rect>"
        )
    note = f"events row: {count:,} events, bar height = events per {duration(width)}"
    return "".join(parts), note


def _axis(
    lo: float, hi: float, x: object, top: float, y: float, note: str | None = None
) -> tuple[str, float]:
    assert callable(x)
    span = hi - lo
    step = next((s for s in _NICE_STEPS if span / s <= 7), _NICE_STEPS[-1])
    parts = [
        f'<line class="axis" x1="{LABEL_W}" y1="{y:.1f}" x2="{LABEL_W + PLOT_W}" y2="{y:.1f}"/>'
    ]
    tick = math.ceil(lo / step) * step
    previous_day = datetime.fromtimestamp(lo, UTC).date()
    while tick <= hi:
        tx = x(tick)
        day = datetime.fromtimestamp(tick, UTC).date()
        label = _clock(tick, step)
        if day != previous_day and step < 86400:
            label = f"{day:%m-%d} {label}"
        previous_day = day
        parts.append(
            f'<line class="grid" x1="{tx:.1f}" y1="{top:.1f}" x2="{tx:.1f}" y2="{y + 4:.1f}"/>'
            f'<text class="tick" x="{tx:.1f}" y="{y + 16:.1f}">{escape(label)}</text>'
        )
        tick += step
    parts.append(
        f'<text class="note" x="{LABEL_W + PLOT_W:.1f}" y="{y + 30:.1f}" text-anchor="end">'
        f"time (UTC) from {_clock(lo, 1, full=True)}; one tick every {duration(step)}</text>"
    )
    if note:
        parts.append(f'<text class="note" x="{LABEL_W}" y="{y + 30:.1f}">{escape(note)}</text>')
    return "".join(parts), y + 34


def _legend(y: float) -> tuple[str, float]:
    parts = []
    lx = float(LABEL_W)
    for kind in KINDS:
        parts.append(
            f'<rect x="{lx:.1f}" y="{y:.1f}" width="10" height="10" fill="{KIND_COLOURS[kind]}"/>'
            f'<text class="note" x="{lx + 14:.1f}" y="{y + 9:.1f}">{kind}</text>'
        )
        lx += 110
    return "".join(parts), y + 14


def _clock(value: float, step: float, *, full: bool = False) -> str:
    """A tick label precise enough for the step between ticks."""
    moment = datetime.fromtimestamp(value, UTC)
    if step < 1:
        text = moment.strftime("%H:%M:%S.%f")[:-3]
    elif step < 60:
        text = moment.strftime("%H:%M:%S")
    elif step < 86400:
        text = moment.strftime("%H:%M")
    else:
        return moment.strftime("%Y-%m-%d")
    return f"{moment:%Y-%m-%d} {text}" if full else text
