"""``rearguard export``, ``incident resolve`` and ``audit verify --file`` as a user runs them.

A real incident: versions registered and approved in process, v3 tampered with on disk, then
``rearguard incident open`` in a subprocess runs the real model-compromise playbook on the
session's Prefect server. Its exports are written with ``rearguard export`` and parsed.
"""

from __future__ import annotations

import csv
import json
import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import stix2
from scenarios import MODEL_COMPROMISE_STEPS, build_scenario

from rearguard.models.runtime import Runtime

Result = subprocess.CompletedProcess[str]
ASSET = "model-a"
FORMATS = ("md", "html", "jsonl", "csv", "stix", "report")
SUMMARY = "<script>alert(1)</script> drift after v3; leaked xoxb-123456789012-abcdefghijklmnop"


def ok(result: Result) -> Result:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    return result


def one_line_error(result: Result, needle: str, *, code: int = 2) -> str:
    """The CLI's contract for expected failures: one ``error:`` line, maybe a ``hint:``."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error: "), lines
    assert all(line.startswith("hint: ") for line in lines[1:]) and len(lines) <= 2, lines
    assert needle in lines[0], lines[0]
    return lines[0]


def seed(runtime: Runtime, root: Path) -> None:
    """v1 and v2 approved, v3 in production and tampered with."""
    build_scenario(runtime, root, asset=ASSET, tampered=True, promoted_by="release-bot")


def real_incident(cli: Any, runtime: Runtime, root: Path) -> int:
    """Open an incident with the CLI and let the real playbook recover it."""
    seed(runtime, root)
    result = ok(
        cli(
            "incident",
            "open",
            "--type",
            "model_compromise",
            "--asset",
            ASSET,
            "--severity",
            "sev1",
            "--summary",
            SUMMARY,
            "--json",
        )
    )
    incident = json.loads(result.stdout)
    assert incident["status"] == "recovered" and incident["production"] == "v2"
    return int(incident["id"])


@pytest.mark.one_database
def test_every_format_of_a_real_incident(cli: Any, runtime: Runtime, tmp_path: Path) -> None:
    incident_id = real_incident(cli, runtime, tmp_path)
    out = tmp_path / "exports"
    out.mkdir()
    paths = {}
    for export_format in FORMATS:
        result = ok(cli("export", str(incident_id), "--format", export_format, "-o", str(out)))
        (line,) = result.stderr.splitlines()
        paths[export_format] = Path(line.removeprefix("wrote "))
        assert paths[export_format].parent == out
        text = paths[export_format].read_text(encoding="utf-8")
        assert "xoxb-123456789012" not in text, export_format  # redacted everywhere
    timeline = json.loads(ok(cli("incident", "show", str(incident_id), "--json")).stdout)
    events = timeline["timeline"]

    md = paths["md"].read_text()
    assert "Recovered: model-a production rolled back from v3 to v2" in md
    assert "AML.T0018" in md and "| 5.3.1 |" in md
    page = paths["html"].read_text()
    assert "<script" not in page.lower() and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<svg" in page and " src=" not in page

    verified = ok(cli("audit", "verify", "--file", str(paths["jsonl"])))
    assert f"{len(events)} events" in verified.stdout
    assert events[-1]["hash"] in verified.stdout  # the anchor to compare with the database

    with paths["csv"].open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["seq"]) for r in rows] == [e["seq"] for e in events]

    bundle = stix2.parse(paths["stix"].read_text(), allow_custom=True)
    types = sorted({o.type for o in bundle.objects})
    assert types == [
        "attack-pattern",
        "course-of-action",
        "incident",
        "infrastructure",
        "relationship",
    ]

    report = json.loads(paths["report"].read_text())
    assert report["ai_system"]["affected_version"]["label"] == "v3"
    assert report["ai_system"]["restored_version"]["label"] == "v2"
    assert [a["action"] for a in report["actions_taken"]] == MODEL_COMPROMISE_STEPS

    # The same records give the same bytes; standard output gives what the file holds.
    for export_format in FORMATS:
        again = ok(cli("export", str(incident_id), "-f", export_format))
        assert again.stdout == paths[export_format].read_text(encoding="utf-8"), export_format


def test_an_edited_jsonl_line_fails_verification_naming_it(
    cli: Any, runtime: Runtime, tmp_path: Path
) -> None:
    incident_id = real_incident(cli, runtime, tmp_path)
    path = tmp_path / "timeline.jsonl"
    ok(cli("export", str(incident_id), "-f", "jsonl", "-o", str(path)))
    lines = path.read_text().splitlines(keepends=True)
    number = next(i for i, line in enumerate(lines, 1) if '"action":"select_known_good"' in line)
    seq = json.loads(lines[number - 1])["seq"]
    lines[number - 1] = lines[number - 1].replace('"v2"', '"v1"', 1)
    path.write_text("".join(lines))
    result = cli("audit", "verify", "--file", str(path))
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert f"line {number}, event {seq}" in result.stderr
    assert "Traceback" not in result.stderr
    as_json = json.loads(cli("audit", "verify", "--file", str(path), "--json").stdout)
    assert as_json["ok"] is False and as_json["first_bad"]["line"] == number


@pytest.mark.one_database
def test_bad_export_requests_fail_with_one_line(cli: Any, runtime: Runtime, tmp_path: Path) -> None:
    seed(runtime, tmp_path)
    ok(cli("incident", "open", "--type", "model_compromise", "--asset", ASSET, "--no-run"))
    one_line_error(cli("export", "99"), "unknown incident 99")
    one_line_error(cli("export", "--all"), "--all needs -o DIR")
    one_line_error(cli("export"), "which incident?")
    one_line_error(cli("export", "1", "--since", "2026-01-01"), "--since applies to --all only")
    missing = tmp_path / "no" / "such" / "dir"
    one_line_error(cli("export", "1", "-o", str(missing / "x.md")), "does not exist")
    assert not (tmp_path / "no").exists()
    one_line_error(cli("export", "1", "-o", "/proc/rearguard-export.md"), "cannot write")
    result = cli("export", "1", "--format", "docx")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "'docx' is not one of" in result.stderr


@pytest.fixture
def opened_twice(cli: Any, runtime: Runtime, tmp_path: Path) -> tuple[int, int, str]:
    seed(runtime, tmp_path)
    # --new: a second open of the same type on the asset would attach to the first.
    opened = (
        "incident",
        "open",
        "--type",
        "model_compromise",
        "--asset",
        ASSET,
        "--no-run",
        "--new",
    )
    first, second = (json.loads(ok(cli(*opened, "--json")).stdout)["id"] for _ in range(2))
    shown = json.loads(ok(cli("incident", "show", str(second), "--json")).stdout)
    return first, second, shown["opened_at"]


def test_export_all_writes_one_file_per_incident_since_a_date(
    cli: Any, tmp_path: Path, opened_twice: tuple[int, int, str]
) -> None:
    first, second, second_opened = opened_twice
    directory = tmp_path / "all"  # created: its parent exists
    result = ok(cli("export", "--all", "-f", "report", "-o", str(directory)))
    written = sorted(Path(p).name for p in result.stdout.split())
    assert written == [f"incident-{first}.report.json", f"incident-{second}.report.json"]
    for name in written:
        assert json.loads((directory / name).read_text())["status"] == "open"
    since = tmp_path / "since"
    result = ok(cli("export", "--all", "--since", second_opened, "-f", "md", "-o", str(since)))
    assert [Path(p).name for p in result.stdout.split()] == [f"incident-{second}.md"]
    one_line_error(cli("export", "--all", "-o", str(tmp_path / "x" / "y")), "does not exist")
    one_line_error(cli("export", "--all", "--since", "yesterday", "-o", str(since)), "--since")


def test_resolve_closes_once_and_writes_the_review(
    cli: Any, runtime: Runtime, tmp_path: Path, home: Path
) -> None:
    incident_id = real_incident(cli, runtime, tmp_path)
    result = ok(cli("incident", "resolve", str(incident_id), "--note", "rotated the CI token"))
    reviews = [home / "reviews" / f"incident-{incident_id}.{ext}" for ext in ("md", "html")]
    for path in reviews:
        assert f"review: {path}" in result.stdout
        text = path.read_text()
        assert "rotated the CI token" in text and "Resolved by" in text
    shown = json.loads(ok(cli("incident", "show", str(incident_id), "--json")).stdout)
    assert shown["status"] == "resolved"
    assert [e["action"] for e in shown["timeline"]][-2:] == [
        "incident.resolve",
        "incident.resolved",
    ]
    one_line_error(cli("incident", "resolve", str(incident_id)), "already resolved")
    report = json.loads(ok(cli("export", str(incident_id), "-f", "report")).stdout)
    assert report["dates"]["resolved"] is not None


def test_resolve_refuses_an_unconcluded_incident_and_respects_auto_review(
    cli: Any, runtime: Runtime, tmp_path: Path, home: Path
) -> None:
    seed(runtime, tmp_path)
    opened = json.loads(
        ok(
            cli(
                "incident",
                "open",
                "--type",
                "model_compromise",
                "--asset",
                ASSET,
                "--no-run",
                "--json",
            )
        ).stdout
    )
    one_line_error(cli("incident", "resolve", str(opened["id"])), "has not concluded")
    one_line_error(cli("incident", "resolve", "404"), "unknown incident 404")
    assert not (home / "reviews").exists()
    ok(cli("playbook", "run", "--incident", str(opened["id"])))
    result = ok(
        cli(
            "incident", "resolve", str(opened["id"]), env={"REARGUARD_EXPORTS_AUTO_REVIEW": "false"}
        )
    )
    assert "review:" not in result.stdout
    assert not (home / "reviews").exists()
    assert re.search(rf"incident {opened['id']}: resolved", result.stdout)


@pytest.mark.one_database
def test_export_replaces_only_regular_files_and_names_standard_output(
    cli: Any, runtime: Runtime, tmp_path: Path
) -> None:
    seed(runtime, tmp_path)
    ok(cli("incident", "open", "--type", "model_compromise", "--asset", ASSET, "--no-run"))
    # A regular file is replaced whole, by a rename (a new inode), never written through.
    target = tmp_path / "review.md"
    target.write_text("old review\n")
    inode = target.stat().st_ino
    ok(cli("export", "1", "-o", str(target)))
    assert target.read_text().startswith("# Post-incident review: incident 1")
    assert target.stat().st_ino != inode
    # "-" and /dev/stdout are standard output.
    for name in ("-", "/dev/stdout"):
        assert ok(cli("export", "1", "-o", name)).stdout.startswith("# Post-incident review")
    # Anything else that exists and is not a regular file is refused, and left as it was.
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    directory = tmp_path / "reviews"
    (directory / "incident-1.md").mkdir(parents=True)
    to_null = tmp_path / "to-null.md"
    to_null.symlink_to("/dev/null")
    to_stdout = tmp_path / "to-stdout.md"
    to_stdout.symlink_to("/proc/self/fd/1")
    for path, kind in (
        (fifo, "a FIFO"),
        (Path("/dev/null"), "a character device"),
        (to_null, "a character device"),
        (directory, "a directory"),
    ):
        one_line_error(cli("export", "1", "-o", str(path)), kind)
    one_line_error(cli("export", "1", "-o", str(to_stdout)), "replaces only a regular file")
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and to_null.is_symlink() and to_stdout.is_symlink()
    assert (directory / "incident-1.md").is_dir()
    # A trailing slash names a directory, which must exist; no file named like it appears.
    one_line_error(cli("export", "1", "-o", f"{tmp_path / 'newdir'}/"), "does not exist")
    assert not (tmp_path / "newdir").exists()
    # A name too long for the file system is a usage error, not an internal one.
    one_line_error(cli("export", "1", "-o", str(tmp_path / ("x" * 300))), "cannot write")
    one_line_error(cli("export", "1", "-o", str(tmp_path / ("y" * 250))), "cannot write")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
