"""Drill definitions: durations, cron expressions, timezones, fire times, history summaries."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rearguard.models.db.tables import DrillRun
from rearguard.models.drills.service import (
    check_timezone,
    fire_times,
    parse_cron,
    parse_duration,
    summarise,
)
from rearguard.models.errors import EXIT_USAGE, UsageError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("5m", 300), ("1h30m", 5400), ("2h", 7200), ("45", 45), ("0.5m", 30)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5 minutes", "m5", "5x", "-5m", "0s", "1h 30m", "5m5"])
def test_bad_durations_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_duration(text)
    assert caught.value.exit_code == EXIT_USAGE


def test_cron_in_a_timezone_fires_at_local_time() -> None:
    trigger = parse_cron("0 9 * * MON", "Europe/London")
    # Monday 1 June 2026, 09:00 in London is 08:00 UTC (summer time).
    after = datetime(2026, 5, 30, tzinfo=UTC)
    (first,), count = fire_times(trigger, after=after, until=datetime(2026, 6, 2, tzinfo=UTC))
    assert count == 1
    assert first.astimezone(UTC) == datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


def test_six_fields_put_seconds_first() -> None:
    trigger = parse_cron("*/10 * * * * *", "UTC")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    found, count = fire_times(trigger, after=start, until=datetime(2026, 1, 1, 0, 1, tzinfo=UTC))
    assert count == 6 and found[0].second == 10


def test_many_missed_fire_times_are_counted_not_all_listed() -> None:
    trigger = parse_cron("* * * * *", "UTC")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    found, count = fire_times(trigger, after=start, until=datetime(2026, 1, 2, tzinfo=UTC))
    assert count == 1440
    assert len(found) == 20 and found[-1] == datetime(2026, 1, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("cron", "zone", "needle"),
    [
        ("0 9 * *", "UTC", "expected 5 fields"),
        ("61 9 * * MON", "UTC", "invalid cron"),
        ("0 9 * * FUNDAY", "UTC", "invalid cron"),
        ("0 9 * * MON", "Europe/Atlantis", "unknown timezone"),
    ],
)
def test_bad_schedules_are_usage_errors(cron: str, zone: str, needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        parse_cron(cron, zone)


def test_timezones_are_iana_names() -> None:
    assert check_timezone("Europe/London") == "Europe/London"
    with pytest.raises(UsageError):
        check_timezone("../../etc/passwd")


def run(status: str, recovery_s: float | None = None, asset: str = "model-a") -> DrillRun:
    return DrillRun(
        drill_name="d",
        playbook="model_compromise",
        asset_name=asset,
        trigger="schedule",
        status=status,
        recovery_s=recovery_s,
    )


def test_history_counts_missed_runs_against_the_success_rate() -> None:
    runs = [run("pass", 2.0), run("pass", 4.0), run("fail"), run("missed"), run("running")]
    runs.append(run("pass", 1.0, asset="model-b"))
    first, second = summarise(runs)
    assert (first.asset, first.runs, first.passed, first.missed) == ("model-a", 4, 2, 1)
    assert first.success_rate == 0.5
    assert first.json_value()["recovery_s"] == {"min": 2.0, "median": 3.0, "max": 4.0}
    assert second.success_rate == 1.0
