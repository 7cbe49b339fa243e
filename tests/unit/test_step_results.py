"""Step results: each records itself as the timeline has always held it, reads back from there,
and says the same one line live (the progress) as later (``incident show``, the exports)."""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt
from prefect import Task
from scenarios import build_scenario, tamper

from rearguard.flows import steps
from rearguard.flows.exports.export import write_export
from rearguard.flows.exports.formats import ExportFormat
from rearguard.flows.steps import run_step
from rearguard.flows.timeline_text import MAX_CHARS, describe_event, describe_result
from rearguard.models.audit.chain import canonical_json
from rearguard.models.enums import IncidentStatus, Severity
from rearguard.models.incidents.service import open_incident
from rearguard.models.recovery import containment, rollback, selection
from rearguard.models.recovery.results import (
    RESULT_TYPES,
    ApprovalDecision,
    ChangedFile,
    DatasetSuspects,
    Degraded,
    Denylisted,
    DigestHits,
    HookResult,
    HookRunRecord,
    IntegrityReport,
    LegalNotice,
    Lineage,
    Notified,
    ProductionCheck,
    Quarantined,
    Rejection,
    Rollback,
    Selection,
    Skipped,
    StepResult,
    TaintedVersion,
    TamperDiff,
    UnreadResult,
    Validated,
    VersionHit,
    VersionVerdict,
    read_result,
)
from rearguard.models.runtime import Runtime
from rearguard.notifications.notify import notify

DIGEST = "ab" * 32
HOOK_RUN = {
    "hook": "rotate_credentials",
    "index": 0,
    "command": "rotate.sh",
    "ok": True,
    "exit_code": 0,
    "duration_s": 0.25,
    "output_tail": "rotated\n",
    "reason": "exited 0",
    "credentials": ["s3-key"],
}

# (step, the typed result, its recorded form: the JSON the untyped steps recorded).
RECORDED: list[tuple[str, StepResult, dict[str, Any]]] = [
    (
        "quarantine",
        Quarantined(quarantined="v3", evidence="/e/v3", altered_files=("weights.bin",)),
        {"quarantined": "v3", "evidence": "/e/v3", "altered_files": ["weights.bin"]},
    ),
    (
        "quarantine",
        Quarantined(asset="model-b", quarantined="v1", evidence="/e/v1"),
        {"asset": "model-b", "quarantined": "v1", "evidence": "/e/v1", "altered_files": []},
    ),
    (
        "verify_integrity",
        IntegrityReport(
            checks={
                "v1": VersionVerdict(asset="m", version="v1", ok=True, files=1, size=9),
                "v2": VersionVerdict(
                    asset="m", version="v2", ok=False, files=1, size=9, problems=("w: mismatch",)
                ),
            },
            failed=("v2",),
        ),
        {
            "checks": {
                "v1": {
                    "asset": "m",
                    "version": "v1",
                    "ok": True,
                    "files": 1,
                    "bytes": 9,
                    "problems": [],
                },
                "v2": {
                    "asset": "m",
                    "version": "v2",
                    "ok": False,
                    "files": 1,
                    "bytes": 9,
                    "problems": ["w: mismatch"],
                },
            },
            "failed": ["v2"],
        },
    ),
    (
        "verify_production",
        ProductionCheck(version="v3", ok=False, problems=("w: mismatch",)),
        {"version": "v3", "ok": False, "problems": ["w: mismatch"]},
    ),
    (
        "select_known_good",
        Selection(
            asset="model-b",
            selected="v1",
            rejected=(Rejection(version="v2", reason="registered at or after --since"),),
        ),
        {
            "asset": "model-b",
            "selected": "v1",
            "rejected": [{"version": "v2", "reason": "registered at or after --since"}],
        },
    ),
    (
        "await_approval",
        ApprovalDecision(step="rollback", required=False, decision="not required"),
        {"step": "rollback", "required": False, "decision": "not required"},
    ),
    (
        "await_approval",
        ApprovalDecision(
            step="rollback", required=True, round=2, decision="approved", by="alice", comment=""
        ),
        {
            "step": "rollback",
            "required": True,
            "round": 2,
            "decision": "approved",
            "by": "alice",
            "comment": "",
        },
    ),
    (
        "rollback",
        Rollback(alias="production", from_=None, to="v2"),
        {"alias": "production", "from": None, "to": "v2"},
    ),
    (
        "validate",
        Validated(
            version="v2", ok=True, exit_code=0, duration_s=0.012, output_tail="", reason="exited 0"
        ),
        {
            "version": "v2",
            "ok": True,
            "exit_code": 0,
            "duration_s": 0.012,
            "output_tail": "",
            "reason": "exited 0",
        },
    ),
    (
        "confirm_degradation",
        Degraded(
            version="v3",
            ok=False,
            exit_code=1,
            duration_s=0.5,
            output_tail="",
            reason="exited 1",
        ),
        {
            "version": "v3",
            "degraded": True,
            "ok": False,
            "exit_code": 1,
            "duration_s": 0.5,
            "output_tail": "",
            "reason": "exited 1",
        },
    ),
    (
        "record_diff",
        TamperDiff(
            from_="v3",
            to="v2",
            files=(ChangedFile(path="system.txt", change="modified"),),
            diff="--- a/v2/system.txt\n+++ b/v3/system.txt\n",
        ),
        {
            "from": "v3",
            "to": "v2",
            "files": [{"path": "system.txt", "change": "modified"}],
            "diff": "--- a/v2/system.txt\n+++ b/v3/system.txt\n",
            "truncated": False,
        },
    ),
    (
        "notify",
        Notified(event="recovered", receipts={"console": "queued"}, queued=1),
        {"event": "recovered", "receipts": {"console": "queued"}, "queued": 1},
    ),
    (
        "notify_legal",
        LegalNotice(
            event="contained",
            receipts={},
            queued=0,
            personal_data=True,
            regulator_deadline="2026-12-08T03:00+00:00",
        ),
        {
            "event": "contained",
            "receipts": {},
            "queued": 0,
            "personal_data": True,
            "regulator_deadline": "2026-12-08T03:00+00:00",
        },
    ),
    (
        "run_hook",
        HookResult(
            hook="rotate_credentials",
            asset=None,
            runs=(
                HookRunRecord.model_validate({**HOOK_RUN, "already_ran": True}),
                HookRunRecord.model_validate({**HOOK_RUN, "index": 1, "credentials": []}),
            ),
            credentials=("s3-key",),
        ),
        {
            "hook": "rotate_credentials",
            "asset": None,
            "runs": [
                {**HOOK_RUN, "already_ran": True},
                {**HOOK_RUN, "index": 1, "credentials": []},
            ],
            "credentials": ["s3-key"],
        },
    ),
    (
        "denylist_digest",
        Denylisted(digest=DIGEST, denylisted_by_incident=1),
        {"digest": DIGEST, "denylisted_by_incident": 1},
    ),
    (
        "find_digest_versions",
        DigestHits(
            digest=DIGEST,
            affected=(VersionHit(asset="model-a", label="v3", paths=("vocab.txt",)),),
            production={"model-a": "v3"},
            recorded_earlier=True,
        ),
        {
            "digest": DIGEST,
            "affected": [{"asset": "model-a", "label": "v3", "paths": ["vocab.txt"]}],
            "production": {"model-a": "v3"},
            "recorded": True,
        },
    ),
    (
        "mark_dataset_suspect",
        DatasetSuspects(dataset="events", suspect=("d2", "d3"), clean=None),
        {"dataset": "events", "suspect": ["d2", "d3"], "clean": None},
    ),
    (
        "trace_lineage",
        Lineage(
            tainted=(TaintedVersion(asset="model-a", label="v3", dataset_version="d2"),),
            production={"model-a": "v3"},
        ),
        {
            "tainted": [{"asset": "model-a", "label": "v3", "dataset_version": "d2"}],
            "production": {"model-a": "v3"},
        },
    ),
    (
        "validate",
        Skipped(skipped="the asset has no validation command", version="v2"),
        {"skipped": "the asset has no validation command", "version": "v2"},
    ),
    (
        "run_hook",
        Skipped(skipped="no 'retrain' hook is configured", hook="retrain", asset="model-a"),
        {"hook": "retrain", "asset": "model-a", "skipped": "no 'retrain' hook is configured"},
    ),
    (
        "notify",
        Skipped(skipped="the incident is contained", event="opened"),
        {"event": "opened", "skipped": "the incident is contained"},
    ),
]


def outcome_data(step: str, recorded: dict[str, Any]) -> dict[str, Any]:
    """An outcome event's data as ``run_step`` records it, through the chain's canonical JSON."""
    data = {"step": step, "ok": True, "seconds": 0.01, "result": recorded}
    return json.loads(canonical_json(data))


@pytest.mark.parametrize(
    ("step", "result", "recorded"),
    RECORDED,
    ids=[f"{step}-{type(result).__name__}" for step, result, _ in RECORDED],
)
def test_every_result_records_as_before_reads_back_and_describes_itself(
    step: str, result: StepResult, recorded: dict[str, Any]
) -> None:
    assert result.recorded() == recorded
    data = outcome_data(step, result.recorded())
    assert read_result(step, data["result"]) == result
    line = describe_result(result)
    assert line and "\n" not in line and "=" not in line  # words, not a dump of keys
    assert describe_event("outcome", step, data) == line


def test_every_step_has_a_result_type_and_a_recorded_example() -> None:
    tasks = {value.name for value in vars(steps).values() if isinstance(value, Task)}
    assert tasks == set(RESULT_TYPES)
    assert {step for step, result, _ in RECORDED if not isinstance(result, Skipped)} == tasks


def test_records_of_other_shapes_still_read_and_describe() -> None:
    # verify_production skipped with its old placeholder fields: still a skip.
    old = {"version": None, "ok": True, "problems": [], "skipped": "nothing in production"}
    assert read_result("verify_production", old) == Skipped(skipped="nothing in production")
    # A plug-in's step, and a built-in step's shape this version does not know: as recorded.
    for step, recorded in (("scan_prompts", {"found": 2}), ("rollback", {"alias": "x"})):
        unread = read_result(step, recorded)
        assert isinstance(unread, UnreadResult)
        assert unread.recorded() == recorded
        assert describe_event("outcome", step, outcome_data(step, recorded)) == ", ".join(
            f"{key}={value}" for key, value in recorded.items()
        )


def test_a_long_line_is_cut_the_same_live_and_recorded() -> None:
    files = tuple(
        ChangedFile(path=f"prompts/part-{n:03}.txt", change="modified") for n in range(40)
    )
    result = TamperDiff(from_="v3", to="v2", files=files, diff="")
    line = describe_result(result)
    assert len(line) == MAX_CHARS and line.endswith("…")
    assert line == describe_event(
        "outcome", "record_diff", outcome_data("record_diff", result.recorded())
    )


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self._open: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "td":
            self._open = []

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._open is not None:
            self.cells.append(html.unescape("".join(self._open)).strip())
            self._open = None


def test_show_and_the_markdown_review_say_what_the_progress_said(
    runtime: Runtime, home: Path, database_url: str, tmp_path: Path
) -> None:
    build_scenario(runtime, tmp_path, asset="model-a", approved=("v1", "v2"))
    tamper(runtime.registry.version_location(asset="model-a", label="v3") / "weights.bin")
    with runtime.db.session() as session:
        incident = open_incident(
            session=session,
            type="model_compromise",
            actor="oncall",
            asset_name="model-a",
            severity=Severity.SEV1,
            summary="drift",
            state={"compromised": "v3"},
        )
        incident_id = int(incident.id or 0)
    progress: dict[str, str] = {}
    runtime.reporters.append(
        lambda step, phase, message: progress.update({step: message}) if phase == "done" else None
    )
    common: dict[str, Any] = {"runtime": runtime, "incident_id": incident_id}
    run_step("quarantine", containment.quarantine, **common)
    verified = run_step("verify_integrity", selection.verify_integrity, **common)
    selected = run_step(
        "select_known_good", selection.select_known_good, **common, checks=verified.checks
    )
    run_step("rollback", rollback.rollback, **common, label=selected.selected)
    run_step("validate", rollback.validate, **common)
    rollback.conclude(**common, status=IncidentStatus.RECOVERED)
    run_step("notify", notify, **common, event="recovered")
    assert progress["select_known_good"] == "selected v2"
    assert progress["rollback"] == "production: v3 -> v2"
    assert progress["validate"].startswith("skipped: ")

    env = {k: v for k, v in os.environ.items() if not k.startswith("REARGUARD_")}
    env.update(REARGUARD_HOME=str(home), REARGUARD_DATABASE_URL=database_url, COLUMNS="250")
    shown = subprocess.run(
        [str(Path(sys.executable).with_name("rearguard")), "incident", "show", str(incident_id)],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    rows = [line.split() for line in shown.stdout.splitlines()]
    for step, line in progress.items():
        # The step's outcome row: "<seq> <time> outcome <step> <its line>".
        assert [" ".join(r[4:]) for r in rows if r[2:4] == ["outcome", step]] == [line], step

    out = tmp_path / "review.md"
    with out.open("w", newline="") as handle:
        write_export(
            db=runtime.db, incident_id=incident_id, export_format=ExportFormat.MD, out=handle
        )
    parser = _Cells()
    parser.feed(MarkdownIt("commonmark").enable("table").render(out.read_text()))
    for line in progress.values():
        assert line in parser.cells
