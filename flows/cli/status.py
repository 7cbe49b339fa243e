"""``rearguard status``: what is configured and what is running, at a glance.

Read-only and quick: the database is opened without upgrading it, and the Prefect API and the
intake get one short request each. Whatever does not answer is reported, not raised, so the
command says what is down and exits 0.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from rearguard.flows.cli.context import JsonOption, emit_json, invocation, out
from rearguard.flows.cli.db import redact_url
from rearguard.models.enums import IncidentSource, IncidentStatus
from rearguard.models.errors import RearguardError

_PROBE_TIMEOUT_S = 1.0


def _probe(url: str) -> dict[str, Any]:
    """GET a health URL; whether it answered 200, and its JSON body when it has one."""
    import httpx  # lazy: CLI start-up

    try:
        response = httpx.get(url, timeout=_PROBE_TIMEOUT_S)
    except httpx.HTTPError as exc:
        return {"url": url, "answers": False, "error": type(exc).__name__}
    try:
        body = response.json()
    except ValueError:
        body = None
    return {"url": url, "answers": response.status_code == 200, "health": body}


def _prefect(home: Path, idle_stop_s: float) -> dict[str, Any]:
    from rearguard.flows.prefect_infra.api_url import configured_api_url  # lazy: CLI start-up
    from rearguard.flows.prefect_infra.server import published_server  # lazy: CLI start-up

    # Found as Prefect finds it, without importing Prefect (a read command never does).
    url = configured_api_url()
    if not url:
        if local := published_server(home):
            return {
                "api_url": local.api_url,
                "answers": True,
                "local": True,
                "pid": local.server_pid or local.pid,
                "idle_stop_s": local.idle_stop_s,  # None: serve's, stops with serve
            }
        return {
            "api_url": None,
            "answers": False,
            "note": (
                "the next playbook starts a local server in the background "
                "(or `rearguard serve` runs one)"
                if idle_stop_s > 0
                else "a temporary server starts for each playbook (`rearguard serve` runs one)"
            ),
        }
    probed = _probe(url.rstrip("/") + "/health")
    return {"api_url": url, "answers": probed["answers"]}


def _intake(settings: Any) -> dict[str, Any]:
    """Whether this home's serve answers: at the address it published (``serve.json``),
    else at the configured one; and whether what answers there is that serve (the same
    instance id in ``/healthz``), not something else on the port."""
    from rearguard.flows.intake.published import reachable_url, read_published  # lazy: CLI start-up

    published = read_published(settings.home)
    url = published.url if published else reachable_url(settings.intake.host, settings.intake.port)
    probed = _probe(f"{url}/healthz")
    health = probed.pop("health", None)
    health = health if isinstance(health, dict) else {}
    ours = bool(probed["answers"] and published and health.get("instance") == published.instance)
    probed["ours"] = ours
    probed["published"] = (
        {
            "url": published.url,
            "instance": published.instance,
            "pid": published.pid,
            # A background host's (started by a command; commands only): stops when unused.
            "idle_stop_s": published.idle_stop_s or None,
        }
        if published
        else None
    )
    probed["scheduler"] = health.get("scheduler") if ours else None
    probed["dispatch"] = settings.intake.dispatch
    probed["playbook_workers"] = settings.intake.playbook_workers
    probed["playbooks"] = health.get("playbooks") if ours else None
    return probed


def _counts(db: Any) -> dict[str, Any]:
    """Drills and their next fire times, outbox rows by status, incidents not resolved."""
    from sqlalchemy import func, select  # lazy: CLI start-up
    from sqlmodel import col  # lazy: CLI start-up

    from rearguard.models.db.tables import Incident, NotificationOutbox  # lazy: CLI start-up
    from rearguard.models.drills.service import list_drills, parse_cron  # lazy: CLI start-up

    now = datetime.now(UTC)
    with db.read_session() as session:
        drills = []
        for drill in list_drills(session=session):
            trigger = parse_cron(drill.cron, drill.timezone)
            fire = trigger.get_next_fire_time(None, now)
            drills.append(
                {"name": drill.name, "cron": drill.cron, "next": fire.isoformat() if fire else None}
            )
        connection = session.connection()
        outbox = dict(
            connection.execute(
                select(col(NotificationOutbox.status), func.count()).group_by(
                    col(NotificationOutbox.status)
                )
            ).all()
        )
        incidents = dict(
            connection.execute(
                select(col(Incident.status), func.count())
                .where(col(Incident.source) != IncidentSource.DRILL)
                .where(col(Incident.status) != IncidentStatus.RESOLVED)
                .group_by(col(Incident.status))
            ).all()
        )
    return {
        "drills": sorted(drills, key=lambda d: d["next"] or "~"),
        "outbox": {"pending": outbox.get("pending", 0), "failed": outbox.get("failed", 0)},
        "incidents": {
            "open": sum(incidents.values()),
            "by_status": {str(k): v for k, v in incidents.items()},
        },
    }


def _database(settings: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    from rearguard.models.db.engine import Database  # lazy: CLI start-up

    found: dict[str, Any] = {"url": redact_url(settings.database_url)}
    db = Database(settings.database_url, busy_timeout_s=settings.database.busy_timeout_s)
    try:
        current, head = db.revisions()
        found.update(revision=current, head=head, current=current == head)
        return found, _counts(db) if current == head else None
    except RearguardError as exc:
        found["error"] = exc.message
        return found, None
    finally:
        db.dispose()


def status(
    ctx: typer.Context,
    json_output: JsonOption = False,
) -> None:
    """Say what is configured and running: database, Prefect, intake, scheduler, outbox."""
    settings = invocation(ctx).settings()
    database, counts = _database(settings)
    report: dict[str, Any] = {
        "home": str(settings.home),
        "database": database,
        "prefect": _prefect(settings.home, settings.prefect.idle_stop_s),
        "intake": _intake(settings),
        **(counts or {"drills": None, "outbox": None, "incidents": None}),
    }
    if json_output:
        emit_json(report)
        return
    _print(report)


def _yes(flag: bool) -> str:
    return "[green]answers[/]" if flag else "[red]does not answer[/]"


def _intake_state(intake: dict[str, Any]) -> str:
    """Who answers at the intake's address: this home's serve, something else, or nothing."""
    published = intake["published"]
    if intake["ours"] and published["idle_stop_s"]:
        return (
            f"[green]answers[/] (this home's background host, pid {published['pid']}: "
            f"commands only, no intake; stops after {published['idle_stop_s']:g} s unused)"
        )
    if intake["ours"]:
        return f"[green]answers[/] (this home's serve, pid {published['pid']})"
    if intake["answers"]:
        return "[red]something else answers there: not this home's serve[/]" + (
            "" if published else " (this home has no serve.json: its serve is not running)"
        )
    if published:
        return f"[red]does not answer[/] (serve.json names pid {published['pid']}: stopped?)"
    return "[red]does not answer[/]"


def _print(report: dict[str, Any]) -> None:
    database = report["database"]
    if "error" in database:
        state = f"[red]{escape(database['error'])}[/]"
    elif database["current"]:
        state = f"revision {database['revision']} (current)"
    else:
        state = (
            f"[yellow]revision {database['revision'] or '(empty)'}, needs {database['head']}: "
            "run `rearguard db upgrade`[/]"
        )
    out.print(f"home       {escape(report['home'])}")
    out.print(f"database   {escape(database['url'])}: {state}")
    prefect = report["prefect"]
    if prefect["api_url"]:
        local = " (the local server of `rearguard serve`)" if prefect.get("local") else ""
        if prefect.get("idle_stop_s"):
            stop = f"stops {prefect['idle_stop_s']:g} s unused"
            local = f" (in the background, pid {prefect['pid']}, {stop})"
        out.print(f"prefect    {escape(prefect['api_url'])}: {_yes(prefect['answers'])}{local}")
    else:
        out.print(f"prefect    no API URL set: {prefect['note']}")
    intake = report["intake"]
    out.print(f"intake     {escape(intake['url'])}: {_intake_state(intake)}")
    dispatch = intake["dispatch"]
    how = (
        f"inline, {intake['playbook_workers']} at a time"
        if dispatch == "inline"
        else "queued on the Prefect deployments"
    )
    if playbooks := intake["playbooks"]:
        counts = ", ".join(f"{value} {name}" for name, value in playbooks.items())
        out.print(f"playbooks  {how}: {counts}")
    else:
        out.print(f"playbooks  {how}")
    scheduler = intake["scheduler"]
    if scheduler:
        running = "running" if scheduler["running"] else "stopped"
        out.print(f"scheduler  {running} in the intake, {scheduler['drills']} drill(s)")
    elif intake["ours"] and intake["published"]["idle_stop_s"]:
        out.print("scheduler  not in the background host (`rearguard serve` runs drills)")
    elif intake["ours"]:
        out.print("scheduler  not in the intake (--no-scheduler)")
    else:
        out.print("scheduler  not known (no intake answers; `rearguard scheduler` may run it)")
    if report["drills"] is None:
        return
    for drill in report["drills"]:
        name, cron = escape(drill["name"]), escape(drill["cron"])
        out.print(f"  drill {name} ({cron}): next {drill['next']}")
    outbox, incidents = report["outbox"], report["incidents"]
    out.print(f"outbox     {outbox['pending']} pending, {outbox['failed']} failed")
    by_status = ", ".join(f"{k} {v}" for k, v in sorted(incidents["by_status"].items()))
    detail = f" ({by_status})" if by_status else ""
    out.print(f"incidents  {incidents['open']} not resolved{detail}")
