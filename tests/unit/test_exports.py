"""Exports of real incidents, parsed and checked for the facts a reader relies on.

Incidents are built with the real services: versions registered, approved and promoted through
the registry, the incident opened with ``open_incident``, and the response run as the playbook
runs it minus Prefect: each step body through ``rearguard.flows.steps.run_step`` (which writes
the intent and outcome events), then ``conclude`` and the notify step. Every export is parsed
(JSON, CSV, HTML, STIX through the ``stix2`` library) and its facts compared with the database.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import threading
import uuid
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import markdown
import pytest
import scenarios
import stix2
from markdown_it import MarkdownIt
from scenarios import build_scenario, chain_secret_as_an_older_rearguard_did, tamper

from rearguard.flows.exports.chart import PLOT_W, timeline_svg
from rearguard.flows.exports.export import write_export
from rearguard.flows.exports.facts import load_facts
from rearguard.flows.exports.formats import ExportFormat
from rearguard.flows.exports.stix import INCIDENT_CORE_EXTENSION
from rearguard.flows.exports.timeline_jsonl import verify_file
from rearguard.flows.steps import run_step
from rearguard.models.audit.chain import (
    append_event,
    events_for_incident,
)
from rearguard.models.audit.redaction import redact_text, redact_value
from rearguard.models.config.settings import load_settings
from rearguard.models.enums import EventKind, IncidentStatus, Severity
from rearguard.models.errors import ConflictError, NotFoundError, OperationFailed, UsageError
from rearguard.models.incidents.resolution import resolve_incident
from rearguard.models.incidents.service import get_incident, open_incident
from rearguard.models.recovery import containment, rollback, selection
from rearguard.models.runtime import Runtime
from rearguard.notifications.notify import notify

ASSET = "model-a"
SLACK_TOKEN = "xoxb-123456789012-123456789012-abcdefghijklmnopqrstuvwx"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"


# -- building incidents ------------------------------------------------------------------------


def add_version(runtime: Runtime, root: Path, label: str, *, asset: str = ASSET) -> None:
    scenarios.add_version(runtime, root, asset, label, actor="ml-engineer")


def scenario(runtime: Runtime, root: Path, *, asset: str = ASSET, approved: bool = True) -> None:
    """v1, v2 (approved known-good) and v3 (candidate, promoted to production)."""
    build_scenario(
        runtime,
        root,
        asset=asset,
        approved=("v1", "v2") if approved else (),
        promoted_by="release-bot",
    )


def open_on(
    runtime: Runtime,
    *,
    asset: str = ASSET,
    summary: str = "output drift after the v3 release",
    since: datetime | None = None,
) -> int:
    with runtime.db.session() as session:
        incident = open_incident(
            session=session,
            type="model_compromise",
            actor="oncall",
            asset_name=asset,
            severity=Severity.SEV1,
            since=since,
            summary=summary,
            atlas_ids=["AML.T0018", "AML.T0031"],
            state={"compromised": "v3"},
        )
        return int(incident.id or 0)


def respond(runtime: Runtime, incident_id: int) -> IncidentStatus:
    """The model-compromise playbook's steps, in order, as its flow runs them (without Prefect)."""
    common = {"runtime": runtime, "incident_id": incident_id}
    try:
        run_step("quarantine", containment.quarantine, **common)
        verified = run_step("verify_integrity", selection.verify_integrity, **common)
        selected = run_step(
            "select_known_good", selection.select_known_good, **common, checks=verified.checks
        )
        run_step("rollback", rollback.rollback, **common, label=selected.selected)
        run_step("validate", rollback.validate, **common)
    except OperationFailed as exc:
        rollback.conclude(**common, status=IncidentStatus.FAILED, reason=exc.message)
        run_step("notify", notify, **common, event="failed")
        return IncidentStatus.FAILED
    rollback.conclude(**common, status=IncidentStatus.RECOVERED)
    run_step("notify", notify, **common, event="recovered")
    return IncidentStatus.RECOVERED


def recovered_incident(
    runtime: Runtime, root: Path, *, with_since: bool = False, **opening: Any
) -> int:
    """A tampered v3 in production, responded to and recovered to v2.

    ``with_since``: the suspected start of the compromise is given, just after v1 and v2 were
    registered (they qualify as known-good) and before the incident opens.
    """
    scenario(runtime, root)
    tamper(runtime.registry.version_location(asset=ASSET, label="v3") / "weights.bin")
    if with_since:
        opening["since"] = datetime.now(UTC)
    incident_id = open_on(runtime, **opening)
    assert respond(runtime, incident_id) == IncidentStatus.RECOVERED
    return incident_id


def export(runtime: Runtime, incident_id: int, export_format: ExportFormat) -> str:
    out = io.StringIO(newline="")
    write_export(db=runtime.db, incident_id=incident_id, export_format=export_format, out=out)
    return out.getvalue()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", newline="")
    return path


def jsonl_records(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


# -- redaction --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "secret", "kind"),
    [
        (f"pasted {SLACK_TOKEN} by mistake", SLACK_TOKEN, "slack-token"),
        (f"key id {AWS_KEY} leaked", AWS_KEY, "aws-access-key"),
        ("connect with db_password=hunter2secret now", "hunter2secret", "password"),
        ("Authorization: Bearer abc.DEF-ghi_jkl0123", "abc.DEF-ghi_jkl0123", "bearer-token"),
        ("postgresql://svc:s3cr3tpw@db.internal/app", "s3cr3tpw", "url-password"),
        ("token ghp_" + "a1B2" * 9 + " used", "ghp_" + "a1B2" * 9, "github-token"),
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE=\n"
            "-----END OPENSSH PRIVATE KEY-----",
            "b3BlbnNzaC1rZXktdjE=",
            "private-key",
        ),
    ],
)
def test_redaction_replaces_each_kind_of_secret(text: str, secret: str, kind: str) -> None:
    redacted = redact_text(text)
    assert secret not in redacted
    assert f"[REDACTED:{kind}]" in redacted


def test_redaction_keeps_ordinary_text_and_redacts_secret_keys_only() -> None:
    ordinary = "sha256 " + "ab" * 32 + " of tokenizer.json; max_tokens=512 (production -> v2)"
    assert redact_text(ordinary) == ordinary
    value = {
        "slack_token": "plain-looking",
        "max_tokens": "512",
        "tokenizer": "bpe",
        "nested": [{"db.password": "x1"}, f"see {AWS_KEY}"],
        "count": 3,
    }
    assert redact_value(value) == {
        "slack_token": "[REDACTED:secret]",
        "max_tokens": "512",
        "tokenizer": "bpe",
        "nested": [{"db.password": "[REDACTED:secret]"}, "see [REDACTED:aws-access-key]"],
        "count": 3,
    }


# -- facts and metrics ------------------------------------------------------------------------


def test_facts_give_the_metrics_and_the_exposure_of_the_compromised_version(
    runtime: Runtime, tmp_path: Path
) -> None:
    incident_id = recovered_incident(runtime, tmp_path, with_since=True)
    facts = load_facts(runtime.db, incident_id)
    with runtime.db.read_session() as session:
        events = events_for_incident(session=session, incident_id=incident_id)
        incident = get_incident(session=session, incident_id=incident_id)
    since = incident.since
    assert since is not None
    by_action = {e.action: datetime.fromisoformat(e.ts) for e in reversed(events)}
    opened = by_action["incident.opened"]
    metrics = {m.key: m.seconds for m in facts.metrics}
    assert metrics["detect"] == pytest.approx((opened - since).total_seconds(), abs=1e-3)
    assert metrics["contain"] == pytest.approx(
        (by_action["incident.contained"] - opened).total_seconds(), abs=1e-3
    )
    assert metrics["recover"] == pytest.approx(
        (by_action["incident.recovered"] - opened).total_seconds(), abs=1e-3
    )
    assert metrics["resolve"] is None
    # Exposure: from the alias move that put v3 in production (before the incident) to the
    # rollback's alias move (in the incident).
    assert facts.exposure is not None
    assert facts.exposure.label == "v3"
    assert facts.exposure.moved_in_by == "release-bot"
    assert facts.exposure.end == by_action["alias.moved"]
    assert facts.exposure.start is not None and facts.exposure.start < opened
    assert facts.production_now == incident.state["selected"] == "v2"
    assert facts.alteration_found
    assert [s.name for s in facts.steps] == [
        "quarantine",
        "verify_integrity",
        "select_known_good",
        "rollback",
        "validate",
        "notify",
    ]
    assert all(s.ok for s in facts.steps)
    roles = {v.label: v.roles for v in facts.versions}
    assert roles["v3"][0] == "compromised" and roles["v2"][0] == "restored"


# -- jsonl ------------------------------------------------------------------------------------


def test_jsonl_carries_every_event_with_its_hashed_fields_and_verifies(
    runtime: Runtime, tmp_path: Path
) -> None:
    incident_id = recovered_incident(runtime, tmp_path)
    text = export(runtime, incident_id, ExportFormat.JSONL)
    records = jsonl_records(text)
    with runtime.db.read_session() as session:
        stored = events_for_incident(session=session, incident_id=incident_id)
    events = [r for r in records if r["record"] == "event"]
    assert records[0]["record"] == "header" and records[-1]["record"] == "end"
    assert [e["seq"] for e in events] == [e.seq for e in stored]
    for record, event in zip(events, stored, strict=True):
        assert record["hash"] == event.hash and record["prev_hash"] == event.prev_hash
        assert record["data"] == json.loads(event.data)
        assert (record["ts"], record["kind"], record["actor"], record["version"]) == (
            event.ts,
            event.kind,
            event.actor,
            event.version,
        )
    report = verify_file(write(tmp_path, "t.jsonl", text))
    assert report.ok, report.problem
    assert (report.events, report.last_seq, report.last_hash) == (
        len(stored),
        stored[-1].seq,
        stored[-1].hash,
    )


def test_jsonl_with_one_edited_line_fails_naming_that_line(
    runtime: Runtime, tmp_path: Path
) -> None:
    incident_id = recovered_incident(runtime, tmp_path)
    lines = export(runtime, incident_id, ExportFormat.JSONL).splitlines(keepends=True)
    number = next(i for i, line in enumerate(lines, 1) if '"action":"rollback"' in line)
    edited = json.loads(lines[number - 1])
    edited["actor"] = "someone-else"
    lines[number - 1] = json.dumps(edited, sort_keys=True, separators=(",", ":")) + "\n"
    report = verify_file(write(tmp_path, "edited.jsonl", "".join(lines)))
    assert report.problem is not None
    assert (report.problem.line, report.problem.seq) == (number, edited["seq"])
    assert "altered" in report.problem.reason


@pytest.mark.parametrize("damage", ["delete", "swap", "truncate", "rehash"])
def test_jsonl_deleted_moved_truncated_or_rehashed_lines_fail(
    runtime: Runtime, tmp_path: Path, damage: str
) -> None:
    incident_id = recovered_incident(runtime, tmp_path)
    lines = export(runtime, incident_id, ExportFormat.JSONL).splitlines(keepends=True)
    if damage == "delete":
        del lines[5]
    elif damage == "swap":
        lines[4], lines[5] = lines[5], lines[4]
    elif damage == "truncate":
        lines = lines[:-3]
    else:  # edit an event and recompute its own hash: the next event's prev_hash breaks
        from rearguard.models.audit.chain import event_hash

        record = json.loads(lines[3])
        record["data"]["seconds"] = 0
        record["hash"] = event_hash(record)
        lines[3] = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
    report = verify_file(write(tmp_path, "damaged.jsonl", "".join(lines)))
    assert not report.ok
    assert report.problem is not None
    if damage == "rehash":
        assert report.problem.line == 5
        assert "prev_hash" in report.problem.reason


def test_jsonl_of_interleaved_incidents_has_verifiable_gaps_and_no_foreign_content(
    runtime: Runtime, tmp_path: Path
) -> None:
    scenario(runtime, tmp_path)
    scenario(runtime, tmp_path, asset="model-b")
    first = open_on(runtime, summary="first incident")
    second = open_on(runtime, asset="model-b", summary="second: confidential detail")
    with runtime.db.session() as session:
        for incident_id in (first, second, first, second, first):
            append_event(
                session,
                kind=EventKind.DECISION,
                action="triage.note",
                actor="oncall",
                incident_id=incident_id,
                data={"note": f"looked at incident {incident_id}"},
            )
    text = export(runtime, first, ExportFormat.JSONL)
    assert "confidential" not in text
    records = jsonl_records(text)
    gaps = [r for r in records if r["record"] == "gap"]
    assert gaps and all(r["to_seq"] >= r["from_seq"] for r in gaps)
    assert verify_file(write(tmp_path, "first.jsonl", text)).ok
    without_gap = "".join(
        line for line in text.splitlines(keepends=True) if '"record":"gap"' not in line
    )
    report = verify_file(write(tmp_path, "nogap.jsonl", without_gap))
    assert report.problem is not None and "missing" in report.problem.reason


def test_a_secret_in_the_timeline_is_redacted_everywhere_and_the_jsonl_still_verifies(
    runtime: Runtime, tmp_path: Path
) -> None:
    incident_id = recovered_incident(
        runtime, tmp_path, summary=f"pushed with token {SLACK_TOKEN} and key {AWS_KEY}"
    )
    # Every event is redacted before it is chained; one an older rearguard chained may still
    # hold a secret, and the exports must not leak it.
    chain_secret_as_an_older_rearguard_did(
        runtime, incident_id, action="triage.note", data={"note": f"rotated {SLACK_TOKEN}"}
    )
    for export_format in ExportFormat:
        text = export(runtime, incident_id, export_format)
        assert SLACK_TOKEN not in text and AWS_KEY not in text, export_format
        assert "REDACTED" in text, export_format
    text = export(runtime, incident_id, ExportFormat.JSONL)
    redacted = [r for r in jsonl_records(text) if r["record"] == "redacted"]
    assert [r["action"] for r in redacted] == ["triage.note"]
    report = verify_file(write(tmp_path, "r.jsonl", text))
    assert report.ok and report.redacted == 1
    assert report.redacted_seqs == (redacted[0]["seq"],)


# -- csv --------------------------------------------------------------------------------------


def test_csv_has_one_row_per_event_and_defuses_formulas(runtime: Runtime, tmp_path: Path) -> None:
    incident_id = recovered_incident(runtime, tmp_path, summary='=HYPERLINK("http://x","y")')
    rows = list(csv.DictReader(io.StringIO(export(runtime, incident_id, ExportFormat.CSV))))
    with runtime.db.read_session() as session:
        stored = events_for_incident(session=session, incident_id=incident_id)
    assert [int(r["seq"]) for r in rows] == [e.seq for e in stored]
    assert [r["hash"] for r in rows] == [e.hash for e in stored]
    assert [r["action"] for r in rows] == [e.action for e in stored]
    opened = rows[0]
    assert json.loads(opened["data"])["summary"] == '=HYPERLINK("http://x","y")'
    assert opened["detail"].startswith("model_compromise sev1: =HYPERLINK")
    rollback = next(r for r in rows if r["action"] == "rollback" and r["kind"] == "outcome")
    assert rollback["detail"] == "production: v3 -> v2"
    # A cell that starts like a formula is prefixed, so a spreadsheet shows it as text.
    incident_id = open_on(runtime, summary="x")
    with runtime.db.session() as session:
        append_event(
            session,
            kind=EventKind.DECISION,
            action="triage.note",
            actor="=cmd|' /C calc'!A0",
            incident_id=incident_id,
        )
    rows = list(csv.DictReader(io.StringIO(export(runtime, incident_id, ExportFormat.CSV))))
    assert rows[-1]["actor"] == "'=cmd|' /C calc'!A0"


# -- the review documents ---------------------------------------------------------------------


class _Html(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.resources: list[tuple[str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "srcset") or (tag == "link" and name == "href"):
                self.resources.append((tag, value or ""))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_review_is_self_contained_and_a_script_in_the_summary_is_inert(
    runtime: Runtime, tmp_path: Path
) -> None:
    summary = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    incident_id = recovered_incident(runtime, tmp_path, summary=summary)
    with runtime.db.session() as session:
        append_event(
            session,
            kind=EventKind.DECISION,
            action="triage.note",
            actor="<script>alert(3)</script>",
            incident_id=incident_id,
            version="<b>v9</b>",
        )
    page = export(runtime, incident_id, ExportFormat.HTML)
    assert "<script" not in page.lower()
    assert "<img" not in page.lower()
    parser = _Html()
    parser.feed(page)
    assert "script" not in parser.tags and "img" not in parser.tags
    assert parser.resources == []
    text = "".join(parser.text)
    assert summary in text  # shown as text, escaped in the markup
    assert "<script>alert(3)</script>" in text
    assert "svg" in parser.tags
    assert "Content-Security-Policy" in page
    # The facts a reader looks for.
    assert "AML.T0018" in text and "Manipulate AI Model" in text
    assert "Time to contain" in text and "Compromised version in production" in text
    for provision in ("5.3", "6.5", "12.1"):
        assert re.search(rf">{re.escape(provision)}<", page)


def test_markdown_review_has_every_section_and_escapes_markup(
    runtime: Runtime, tmp_path: Path
) -> None:
    incident_id = recovered_incident(
        runtime, tmp_path, summary="see [here](javascript:alert(1)) | <b>bold</b>"
    )
    text = export(runtime, incident_id, ExportFormat.MD)
    headings = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    for heading in (
        "Summary",
        "Impact",
        "Metrics",
        "Response",
        "Actions and who took them",
        "MITRE ATLAS techniques",
        "Root cause",
        "Lessons learned",
        "Follow-ups",
        "Timeline",
    ):
        assert heading in headings
    # Markup characters are HTML character references: no link, no raw HTML, no table break.
    assert "]" not in text.split("Reported summary:")[1].split("\n")[2]
    assert "&#91;here&#93;(javascript:alert(1)) &#124; &lt;b&gt;bold&lt;/b&gt;" in text
    # Rendered by a CommonMark renderer that lets raw HTML through, it is still only text.
    rendered = MarkdownIt("commonmark", {"html": True}).enable("table").render(text)
    assert "<b>" not in rendered and 'href="javascript' not in rendered
    assert "&lt;b&gt;bold&lt;/b&gt;" in rendered
    # Every table renders as a table: the escaped pipe did not break one.
    assert rendered.count("<table>") == len(re.findall(r"^\| --- \|", text, re.MULTILINE))
    facts = load_facts(runtime.db, incident_id)
    timeline = text.split("## Timeline", 1)[1]
    rows = [line for line in timeline.splitlines() if re.match(r"^\| \d+ \|", line)]
    assert len(rows) == facts.event_count
    assert "**v3** served production for **" in text
    atlas = "- [AML.T0031](https://atlas.mitre.org/techniques/AML.T0031) Erode AI Model Integrity"
    assert atlas in text


class _Elements(HTMLParser):
    """Every element and attribute of a rendered document."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: set[tuple[str, tuple[str, ...]]] = set()
        self.values: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.add((tag, tuple(sorted(name for name, _ in attrs))))
        self.values.extend(value or "" for _, value in attrs)


HOSTILE_MARKDOWN = (
    "# Heading <script>alert(1)</script> <img src=x onerror=alert(2)> "
    "[click](javascript:alert(3)) ![i](http://evil.example/x.png) <http://evil.example/a> "
    "**b** _i_ ~~s~~ `c` | x | \" ' &amp; &lt;svg onload=alert(4)&gt; "
    "<a href=\"javascript:alert(5)\" title='t'>a</a> <!-- c --> <?php x ?> <![CDATA[x]]> \\<b>"
)


def rendered_elements(text: str) -> list[_Elements]:
    """The export rendered by CommonMark (markdown-it, raw HTML allowed, tables) and by
    Python-Markdown (tables), each parsed for its elements."""
    pages = [
        MarkdownIt("commonmark", {"html": True}).enable("table").render(text),
        markdown.markdown(text, extensions=["tables"]),
    ]
    parsed = []
    for page in pages:
        parser = _Elements()
        parser.feed(page)
        parsed.append(parser)
    return parsed


def test_markdown_review_renders_no_element_or_attribute_from_the_input_anywhere(
    runtime: Runtime, tmp_path: Path
) -> None:
    incident_id = recovered_incident(runtime, tmp_path, summary=HOSTILE_MARKDOWN)
    with runtime.db.session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        incident.reason = "1. " + HOSTILE_MARKDOWN
        session.add(incident)
    plain = open_on(runtime, summary="x" * len(HOSTILE_MARKDOWN))
    with runtime.db.session() as session:
        incident = get_incident(session=session, incident_id=plain)
        incident.reason = "plain"
        session.add(incident)
    hostile_text = export(runtime, incident_id, ExportFormat.MD)
    plain_text = export(runtime, plain, ExportFormat.MD)

    for hostile, ordinary in zip(
        rendered_elements(hostile_text), rendered_elements(plain_text), strict=True
    ):
        # The same document structure as an incident with an inert summary...
        extra = hostile.elements - ordinary.elements
        assert not extra, extra
        # ...and no attribute value that came from the input.
        assert not [v for v in hostile.values if "javascript" in v or "evil" in v]


def test_chart_of_a_large_incident_draws_aggregate_marks(runtime: Runtime, tmp_path: Path) -> None:
    incident_id = recovered_incident(runtime, tmp_path)
    with runtime.db.session() as session:
        for n in range(1500):
            append_event(
                session,
                kind=EventKind.STATE,
                action="alert.repeated",
                actor="intake:alertmanager",
                incident_id=incident_id,
                data={"fingerprint": f"{n:08x}"},
            )
    facts = load_facts(runtime.db, incident_id)
    svg = str(timeline_svg(facts))
    bars = re.findall(r"<title>(\d+) events, ", svg)
    assert 0 < len(bars) <= 2 * (PLOT_W // 3)  # two panels, one bar per 3-pixel column at most
    notes = re.findall(r"events row: ([\d,]+) events, bar height", svg)
    assert notes and int(notes[0].replace(",", "")) == facts.event_count


@pytest.mark.parametrize(
    "since",
    [datetime(1, 1, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)],
    ids=["year 1", "years before"],
)
def test_a_compromise_suspected_since_long_ago_exports_with_a_readable_axis(
    runtime: Runtime, tmp_path: Path, since: datetime
) -> None:
    scenario(runtime, tmp_path, approved=False)
    incident_id = open_on(runtime, since=since)
    assert respond(runtime, incident_id) == IncidentStatus.FAILED
    for export_format in ExportFormat:
        assert export(runtime, incident_id, export_format)
    svg = str(timeline_svg(load_facts(runtime.db, incident_id)))
    lifecycle = svg.split("Response: playbook steps")[0]
    assert 2 <= len(re.findall(r'<text class="tick"', lifecycle)) <= 8
    assert "undetected" in lifecycle


# -- stix -------------------------------------------------------------------------------------


def test_stix_bundle_is_valid_and_carries_the_incident_atlas_ids_and_actions(
    runtime: Runtime, tmp_path: Path
) -> None:
    incident_id = recovered_incident(runtime, tmp_path)
    text = export(runtime, incident_id, ExportFormat.STIX)
    bundle = stix2.parse(text, allow_custom=True)
    stix2.parse(text, allow_custom=False)  # strict too: STIX 2.1 extension definitions, no x_
    objects = {o.id: o for o in bundle.objects}
    by_type: dict[str, list[Any]] = {}
    for o in bundle.objects:
        by_type.setdefault(o.type, []).append(o)
    (incident,) = by_type["incident"]
    extension = incident.extensions[INCIDENT_CORE_EXTENSION]
    assert extension["extension_type"] == "property-extension"
    assert extension["determination"] == "successful-attempt"  # v3's file was altered
    assert extension["investigation_status"] == "open"
    assert extension["criticality"] == 95  # sev1
    assert extension["recoverability"] == "regular"
    references = {
        ref["external_id"]
        for pattern in by_type["attack-pattern"]
        for ref in pattern.external_references
        if ref["source_name"] == "mitre-atlas"
    }
    assert references == {"AML.T0018", "AML.T0031"}
    actions = sorted(c.name for c in by_type["course-of-action"])
    assert "rollback (done)" in actions and "quarantine (done)" in actions
    with runtime.db.read_session() as session:
        hashes = {e.hash for e in events_for_incident(session=session, incident_id=incident_id)}
    for action in by_type["course-of-action"]:
        assert action.external_references[0]["hashes"]["SHA-256"] in hashes
    for relationship in by_type["relationship"]:
        assert relationship.source_ref in objects and relationship.target_ref in objects
    for o in bundle.objects:
        assert uuid.UUID(o.id.split("--", 1)[1]).version == 5


# -- report -----------------------------------------------------------------------------------


def test_report_has_the_oecd_fields_from_the_record(runtime: Runtime, tmp_path: Path) -> None:
    incident_id = recovered_incident(runtime, tmp_path)
    with runtime.db.session() as session:
        resolve_incident(
            session=session, incident_id=incident_id, actor="carol", note="rotated the CI token"
        )
    report = json.loads(export(runtime, incident_id, ExportFormat.REPORT))
    for field in (
        "title",
        "description",
        "ai_system",
        "severity",
        "harm_type",
        "actions_taken",
        "dates",
        "submitter",
    ):
        assert report[field], field
    assert report["ai_system"]["name"] == ASSET
    assert report["ai_system"]["affected_version"]["label"] == "v3"
    assert report["ai_system"]["restored_version"]["label"] == "v2"
    assert report["ai_system"]["restored_version"]["approved_by"] == "alice"
    assert report["severity"]["level"] == "sev1"
    assert report["submitter"] == {"name": "carol", "role": "resolved the incident"}
    assert [a["action"] for a in report["actions_taken"]][-1] == "resolve"
    dates = report["dates"]
    assert dates["first_occurrence"] < dates["detected"] < dates["contained"]
    assert dates["contained"] < dates["recovered"] < dates["resolved"]
    assert [t["id"] for t in report["mitre_atlas"]] == ["AML.T0018", "AML.T0031"]
    assert {p["provision"] for p in report["code_of_practice"]["provisions"]} >= {"5.3", "12.1"}
    assert report["status"] == "resolved"


# -- determinism ------------------------------------------------------------------------------


def test_every_format_is_byte_identical_across_exports_and_unrelated_activity(
    runtime: Runtime, tmp_path: Path
) -> None:
    incident_id = recovered_incident(runtime, tmp_path)
    first = {f: export(runtime, incident_id, f) for f in ExportFormat}
    add_version(runtime, tmp_path, "v4")  # later activity on the chain, not of this incident
    open_on(runtime, summary="another incident")
    second = {f: export(runtime, incident_id, f) for f in ExportFormat}
    assert first == second


# -- resolution -------------------------------------------------------------------------------


def test_resolve_records_the_decision_once_and_refuses_what_it_must(
    runtime: Runtime, tmp_path: Path
) -> None:
    incident_id = recovered_incident(runtime, tmp_path)
    with runtime.db.session() as session:
        incident = resolve_incident(
            session=session, incident_id=incident_id, actor="carol", note=f"token {SLACK_TOKEN}"
        )
        assert incident.status == IncidentStatus.RESOLVED
    with runtime.db.read_session() as session:
        events = events_for_incident(session=session, incident_id=incident_id)
    decision, state = events[-2], events[-1]
    assert (decision.kind, decision.action, decision.actor) == (
        "decision",
        "incident.resolve",
        "carol",
    )
    assert SLACK_TOKEN not in decision.data and "REDACTED" in json.loads(decision.data)["note"]
    assert (state.action, json.loads(state.data)["from"]) == ("incident.resolved", "recovered")
    with pytest.raises(ConflictError, match="already resolved"), runtime.db.session() as session:
        resolve_incident(session=session, incident_id=incident_id, actor="carol")
    with pytest.raises(NotFoundError), runtime.db.session() as session:
        resolve_incident(session=session, incident_id=999, actor="carol")
    open_id = open_on(runtime, summary="not run yet")
    with pytest.raises(ConflictError, match="has not concluded"), runtime.db.session() as session:
        resolve_incident(session=session, incident_id=open_id, actor="carol")


def test_a_failed_incident_resolves_only_with_a_note(runtime: Runtime, tmp_path: Path) -> None:
    scenario(runtime, tmp_path, approved=False)
    incident_id = open_on(runtime)
    assert respond(runtime, incident_id) == IncidentStatus.FAILED
    with pytest.raises(UsageError, match="needs a note"), runtime.db.session() as session:
        resolve_incident(session=session, incident_id=incident_id, actor="carol")
    with runtime.db.session() as session:
        resolve_incident(
            session=session, incident_id=incident_id, actor="carol", note="restored by hand"
        )
    facts = load_facts(runtime.db, incident_id)
    assert facts.milestones.failed is not None and facts.milestones.resolved is not None
    assert facts.resolution is not None and facts.resolution.note == "restored by hand"
    bundle = json.loads(export(runtime, incident_id, ExportFormat.STIX))
    extension = bundle["objects"][0]["extensions"][INCIDENT_CORE_EXTENSION]
    assert (extension["investigation_status"], extension["recoverability"]) == (
        "closed",
        "supplemented",
    )
    assert "failed" in export(runtime, incident_id, ExportFormat.MD)


# -- settings ---------------------------------------------------------------------------------


def test_export_settings_come_from_the_environment_over_the_config_file(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(home)
    monkeypatch.delenv("REARGUARD_EXPORTS_AUTO_REVIEW", raising=False)
    monkeypatch.delenv("REARGUARD_EXPORTS_REVIEW_DIR", raising=False)
    defaults = load_settings(home=home).exports
    assert defaults.auto_review is True
    assert defaults.review_directory(home) == home / "reviews"
    (home / "rearguard.toml").write_text('[exports]\nauto_review = false\nreview_dir = "pm"\n')
    from_file = load_settings(home=home).exports
    assert from_file.auto_review is False
    assert from_file.review_directory(home) == home / "pm"
    monkeypatch.setenv("REARGUARD_EXPORTS_AUTO_REVIEW", "true")
    monkeypatch.setenv("REARGUARD_EXPORTS_REVIEW_DIR", str(home / "elsewhere"))
    from_env = load_settings(home=home).exports
    assert from_env.auto_review is True
    assert from_env.review_directory(home) == home / "elsewhere"


# -- verifying hostile files ------------------------------------------------------------------


def verified_in_time(path: Path) -> Any:
    """verify_file's report or its error, from a thread that must end (a FIFO once blocked it
    forever; the join's bound only keeps a broken test from hanging the run)."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(verify_file(path))
        except UsageError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), f"verify_file({path}) did not return"
    return outcome[0]


@pytest.mark.parametrize("kind", ["fifo", "directory", "/dev/zero", "/dev/null", "missing"])
def test_verifying_what_is_not_a_regular_file_is_a_usage_error(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "t.jsonl"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind != "missing":
        path = Path(kind)
    error = verified_in_time(path)
    assert isinstance(error, UsageError) and error.exit_code == 2, error


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (bytes(range(128, 256)) * 64, "not UTF-8"),
        (b'{"record": "header", "note": "caf\xe9"}\n', "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000 + b"\n", "nested too deep"),
        (b"{" + b'"a":{' * 5000 + b"}" * 5001 + b"\n", "nested too deep"),
        (b"x" * (16 * 1024 * 1024 + 10), "longer than"),
        (b"\x00" * 1000, "not valid JSON"),
    ],
    ids=["random-bytes", "latin-1", "deep-array", "deep-object", "no-line-end", "nuls"],
)
def test_a_hostile_file_is_a_broken_timeline_named_by_line(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(content)
    report = verified_in_time(path)
    assert not report.ok and report.problem.line == 1, report
    assert reason in report.problem.reason, report.problem.reason
