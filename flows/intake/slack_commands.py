"""``/rearguard``, the Slack slash command, served at ``POST /v1/slack/commands``.

Slack posts a form (``user_id``, ``command``, ``text``, ``response_url``, ...) signed like
its button callbacks, and the request passes the same check
(:func:`rearguard.notifications.slack_interactions.authenticate`: the signing secret, five
minutes, never twice). The Slack user is a person through ``[approvals.slack_users]``;
``[slack_commands] allow`` says who of them may open incidents and run drills.

Slack wants an answer within 3 seconds, so every subcommand answers at once, with an
ephemeral message (only the person who typed it sees it). What takes longer comes after: an
opened incident's playbook runs in the playbook process and its messages go to the incident's
thread in Slack (the notifications); a drill runs on ``serve``'s scheduler and its result is
posted to the command's ``response_url`` through the outbox, retried like any notification.

A refusal is an answer too: HTTP 200 with one line, and the command's help for a usage error
(Slack shows the person nothing useful for any other status). Only a request Slack did not
sign, or signed more than five minutes ago (401), one seen before (409), one that is not a
slash command (400), or no signing secret configured (503) gets another status.

Every decision is recorded in the chain with the person: an incident opened or attached to
(``incident.opened``, ``incident.attached``), an approval decided or refused (``approval.*``),
a drill asked for (``drill.requested``), and an open, approval or drill refused to someone not
mapped or not allowed (``slack_command.refused``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel
from sqlalchemy import func
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col, select

from rearguard.flows.intake.guard import SLACK_COMMANDS_PATH
from rearguard.flows.intake.schemas import Problem
from rearguard.flows.opening import open_or_attach
from rearguard.models.audit.chain import append_event
from rearguard.models.config.slack_commands import RESPONSE_CHANNEL, Permission
from rearguard.models.db.tables import Incident
from rearguard.models.drills.service import get_drill, list_drills
from rearguard.models.enums import EventKind, IncidentSource, IncidentStatus, Severity
from rearguard.models.errors import NotFoundError, RearguardError, UsageError
from rearguard.models.incidents.approval_proofs import Proof
from rearguard.models.incidents.approvals import PENDING, decide, list_requests
from rearguard.models.incidents.service import get_incident, list_incidents, production_of
from rearguard.models.names import MAX_ROW_ID
from rearguard.models.runtime import Runtime
from rearguard.notifications.channels.slack_limits import fit_text, mrkdwn_escape
from rearguard.notifications.routing import Target
from rearguard.notifications.slack_interactions import CallbackRejected, authenticate
from rearguard.playbooks.catalog import Input, all_playbooks, get_playbook

if TYPE_CHECKING:
    from rearguard.flows.drills.scheduler import DrillScheduler

OnOpened = Callable[[int], None]
"""Hands a newly opened incident to whatever runs its playbook."""

SEVERITIES = {str(s): s for s in Severity}
_LISTED = 15
_SUMMARY_SHOWN = 120
_NOT_A_COMMAND = "not a Slack slash command"
_UNAVAILABLE = "the database is unavailable; retry"


class SlackReply(BaseModel):
    """The immediate answer to a command: one message only the person who typed it sees."""

    response_type: Literal["ephemeral"] = "ephemeral"
    text: str


@dataclass(frozen=True)
class SlashCommand:
    """What Slack posted: who typed which command, its text, where later answers may go."""

    user: str
    command: str
    text: str
    response_url: str


@dataclass(frozen=True)
class CommandAnswer:
    """The HTTP status and text of the answer: 200 a reply for the person, else a refusal."""

    status: int
    text: str


class _Context:
    """One command being answered: the runtime, the command, and what follows it."""

    def __init__(
        self,
        runtime: Runtime,
        command: SlashCommand,
        *,
        on_opened: OnOpened,
        drills: DrillScheduler | None,
    ) -> None:
        self.runtime = runtime
        self.command = command
        self.on_opened = on_opened
        self.drills = drills
        self.words = command.text.split()
        self.person = runtime.settings.approvals.slack_users.get(command.user)

    def rest(self, count: int) -> str:
        """The text after its first ``count`` words, as typed (Slack's escapes undone)."""
        parts = self.command.text.split(maxsplit=count)
        return _unescape(parts[count].strip()) if len(parts) > count else ""

    def refuse(self, subcommand: str, why: str) -> str:
        """Record a refused open, approval or drill (``slack_command.refused``); return why."""
        with self.runtime.db.transaction() as connection:
            append_event(
                connection,
                kind=EventKind.DECISION,
                action="slack_command.refused",
                actor=self.person or f"slack:{self.command.user}",
                data={
                    "subcommand": subcommand,
                    "text": self.command.text[:500],
                    "slack_user": self.command.user,
                    "why": why,
                },
            )
        return why


def _unescape(text: str) -> str:
    # Slack escapes these three in a command's text, as mrkdwn does.
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _parse(body: bytes) -> SlashCommand:
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise CallbackRejected(400, _NOT_A_COMMAND) from None

    def field(name: str) -> str:
        return (fields.get(name) or [""])[0]

    if not field("user_id") or not field("command").startswith("/"):
        raise CallbackRejected(400, _NOT_A_COMMAND)
    return SlashCommand(
        user=field("user_id"),
        command=field("command"),
        text=field("text"),
        response_url=field("response_url"),
    )


def help_text(command: str = "/rearguard") -> str:
    """What the command does, as the answer to ``help`` and to a usage error."""
    types, _problems = all_playbooks()
    by_asset = sorted(t for t, spec in types.items() if spec.inputs == (Input.ASSET,))
    lines = (
        ("open TYPE ASSET [sev1..sev4] [summary...]", "open an incident; its playbook runs"),
        ("status [ID]", "an incident, or every one not resolved"),
        ("list", "the latest incidents"),
        ("approve ID [comment]", "approve the step incident ID waits for"),
        ("deny ID reason", "deny it, and say why"),
        ("drill NAME", "run a recovery drill now"),
        ("help", "this help"),
    )
    width = max(len(usage) for usage, _ in lines)
    usage = "\n".join(f"{command} {usage:<{width}}  {what}" for usage, what in lines)
    return (
        f"```{mrkdwn_escape(usage)}```\n"
        f"TYPE: {', '.join(by_asset)} (the others are opened with `rearguard incident open`)."
    )


def _incident_id(word: str) -> int:
    if not (word.isascii() and word.isdigit() and len(word) <= 10) or not (
        1 <= int(word) <= MAX_ROW_ID
    ):
        raise UsageError(f"{word!r} is not an incident number")
    return int(word)


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _SUMMARY_SHOWN else text[: _SUMMARY_SHOWN - 1] + "…"


def _line(incident: Incident) -> str:
    """One incident in one line of mrkdwn."""
    what = mrkdwn_escape(f"{incident.type} on {incident.asset_name or '-'}")
    return f"*{incident.id}* {what} · {incident.severity} · *{incident.status}*"


# -- subcommands --------------------------------------------------------------------------


def _open(context: _Context) -> str:
    words = context.words
    if len(words) < 3:
        raise UsageError("open needs a TYPE and an ASSET")
    type_, asset = words[1], words[2]
    severity, summary_from = Severity.SEV2, 3
    if len(words) > 3 and words[3].lower() in SEVERITIES:
        severity, summary_from = SEVERITIES[words[3].lower()], 4
    person = _allowed(context, "open")
    summary = context.rest(summary_from) or f"reported from Slack by {person}"
    try:
        spec = get_playbook(type_)
        if spec.needs(Input.DIGEST) or spec.needs(Input.DATASET):
            raise UsageError(
                f"{type_} needs a digest or a dataset and a time, not an asset",
                hint=f"open it with `rearguard incident open --type {type_}`",
            )
        opened = open_or_attach(
            runtime=context.runtime,
            type=type_,
            asset=asset,
            severity=severity,
            since=None,
            summary=summary,
            actor=person,
            source=IncidentSource.SLACK,
            announce=False,
        )
    except NotFoundError as exc:  # an unknown type or asset: the help says what is known
        raise UsageError(exc.message, hint=exc.hint) from None
    what = mrkdwn_escape(f"{type_} on {asset}")
    follow = f"`{context.command.command} status {opened.incident_id}`"
    if opened.attached:
        return (
            f"Incident *{opened.incident_id}* ({what}) is already open, status "
            f"*{opened.status}*: your report was added to it. Follow it with {follow}."
        )
    context.on_opened(opened.incident_id)
    settings = context.runtime.settings
    thread = (
        f" and in its thread in {mrkdwn_escape(settings.slack.channel)}"
        if "slack" in settings.notifications.channels and settings.slack.channel
        else ""
    )
    return (
        f"Incident *{opened.incident_id}* opened by {mrkdwn_escape(person)}: {what} ({severity}). "
        f"Its playbook is running; follow it with {follow}{thread}."
    )


def _status(context: _Context) -> str:
    if len(context.words) > 2:
        raise UsageError("status takes at most one incident number")
    runtime = context.runtime
    alias = runtime.settings.registry.alias
    with runtime.db.read_session() as session:
        if len(context.words) == 1:
            unresolved = (
                col(Incident.status) != IncidentStatus.RESOLVED,
                col(Incident.source) != IncidentSource.DRILL,
            )
            count = session.exec(select(func.count()).where(*unresolved)).one()
            if not count:
                return "No incident is open."
            newest = select(Incident).where(*unresolved).order_by(col(Incident.id).desc())
            lines = [f"Incidents not resolved ({count}):"]
            lines += [f"• {_line(i)}" for i in session.exec(newest.limit(_LISTED))]
            if count > _LISTED:
                lines.append(f"…and {count - _LISTED} more: `rearguard incident list`")
            return "\n".join(lines)
        incident = get_incident(session=session, incident_id=_incident_id(context.words[1]))
        production = production_of(session=session, incident=incident, alias=alias)
        pending = list_requests(session=session, status=PENDING, incident_id=incident.id)
    opened = f"Opened by {incident.opened_by} ({incident.source}) {_when(incident.opened_at)}"
    lines = [
        _line(incident),
        mrkdwn_escape(f"{opened}: {_short(incident.summary)}"),
    ]
    if incident.asset_name:
        lines.append(mrkdwn_escape(f"{alias}: {production or '(none)'}"))
    if incident.reason:
        lines.append(mrkdwn_escape(f"Why: {_short(incident.reason)}"))
    command = context.command.command
    for request in pending:
        lines.append(
            mrkdwn_escape(
                f"Waiting for approval of {request.step} by {', '.join(request.approvers)} "
                f"until {_when(request.deadline)}:"
            )
            + f" `{command} approve {incident.id}` or `{command} deny {incident.id} REASON`"
        )
    lines.append(f"Timeline: `rearguard incident show {incident.id}`")
    return "\n".join(lines)


def _list(context: _Context) -> str:
    if len(context.words) > 1:
        raise UsageError("list takes nothing more")
    with context.runtime.db.read_session() as session:
        latest = list_incidents(session=session, limit=_LISTED)
    if not latest:
        return "No incident recorded yet."
    return "\n".join([f"The latest incidents ({len(latest)}):"] + [f"• {_line(i)}" for i in latest])


def _decide(context: _Context, *, approve: bool) -> str:
    name = "approve" if approve else "deny"
    if len(context.words) < 2:
        raise UsageError(f"{name} needs an incident number")
    incident_id = _incident_id(context.words[1])
    comment = context.rest(2)
    if not approve and not comment:
        raise UsageError("a denial needs a reason: deny ID REASON")
    if context.person is None:
        return context.refuse(name, _NOT_MAPPED.format(user=context.command.user))
    request = decide(
        db=context.runtime.db,
        approvals=context.runtime.settings.approvals,
        approver=context.person,
        approve=approve,
        comment=comment or "via Slack",
        via="slack",
        proof=Proof(slack=True),  # Slack signed the command, as it signs its buttons
        incident_id=incident_id,
    )
    return mrkdwn_escape(
        f"The {request.step} of incident {request.incident_id} is {request.status} by "
        f"{context.person}."
    )


def _drill(context: _Context) -> str:
    if len(context.words) != 2:
        raise UsageError("drill needs the name of one drill")
    name = context.words[1]
    person = _allowed(context, "drill")
    runtime = context.runtime
    with runtime.db.read_session() as session:
        try:
            drill = get_drill(session=session, name=name)
        except NotFoundError as exc:
            known = ", ".join(d.name for d in list_drills(session=session)) or "none"
            raise UsageError(exc.message, hint=f"drills: {known}") from None
    if context.drills is None:
        return (
            f"Drills asked for from Slack run on `rearguard serve`'s scheduler, and this intake "
            f"runs without one (--no-scheduler): run `rearguard drills run {mrkdwn_escape(name)}`."
        )
    url = context.command.response_url
    answered = runtime.settings.slack_commands.may_post_to(url) and len(url) <= 256
    with runtime.db.transaction() as connection:
        append_event(
            connection,
            kind=EventKind.DECISION,
            action="drill.requested",
            actor=person,
            asset=drill.asset_name,
            data={"drill": name, "playbook": drill.playbook, "via": "slack"},
        )
    context.drills.run_now(name, notify_also=[Target(RESPONSE_CHANNEL, url)] if answered else ())
    where = "here" if answered else "to the drills' channels"
    return mrkdwn_escape(
        f"Drill {name} ({drill.playbook} on {drill.asset_name}) starts now, asked for by "
        f"{person}, once no other drill is running; its result will be posted {where}."
    )


_NOT_MAPPED = (
    "You are not mapped to a person: ask for your Slack user id {user} to be added to "
    "[approvals.slack_users]."
)


def _allowed(context: _Context, permission: Permission) -> str:
    """The person, when they may ``open`` or ``drill``; else the refusal is recorded and
    raised."""
    person = context.person
    if person is None:
        raise _Refused(context.refuse(permission, _NOT_MAPPED.format(user=context.command.user)))
    settings = context.runtime.settings
    if not settings.slack_commands.allows(permission, person, groups=settings.approvals):
        verb = "open incidents" if permission == "open" else "run drills"
        raise _Refused(
            context.refuse(
                permission,
                f"{person} may not {verb} from Slack: ask for your name in "
                f"[slack_commands] allow.{permission}.",
            )
        )
    return person


class _Refused(RearguardError):
    """A command refused (and recorded): its line is the answer."""


_SUBCOMMANDS: Mapping[str, Callable[[_Context], str]] = {
    "open": _open,
    "status": _status,
    "list": _list,
    "approve": lambda context: _decide(context, approve=True),
    "deny": lambda context: _decide(context, approve=False),
    "drill": _drill,
}


def answer_command(
    *,
    runtime: Runtime,
    headers: Mapping[str, str],
    body: bytes,
    on_opened: OnOpened,
    drills: DrillScheduler | None = None,
    now: float | None = None,
) -> CommandAnswer:
    """Verify a slash command and answer it.

    Args:
        runtime: the intake's runtime (settings and database).
        headers: the HTTP request headers (any case).
        body: the raw request body, exactly as received (the signature covers it).
        on_opened: given each incident the command opened, to run its playbook.
        drills: the scheduler that runs a drill asked for; None when this process has none.
        now: the current Unix time (tests pass their own).

    Returns:
        200 and the text for the person (a usage error answers with the help); 400 not a slash
        command; 401 unsigned, badly signed or stale; 409 replayed; 503 no signing secret, or
        the database unavailable before the request could be checked.
    """
    try:
        authenticate(runtime=runtime, headers=headers, body=body, now=now)
        command = _parse(body)
    except CallbackRejected as exc:
        return CommandAnswer(exc.status, exc.message)
    except SQLAlchemyError:
        return CommandAnswer(503, _UNAVAILABLE)
    context = _Context(runtime, command, on_opened=on_opened, drills=drills)
    subcommand = context.words[0].lower() if context.words else "help"
    handler = _SUBCOMMANDS.get(subcommand)
    try:
        if handler is None:
            if subcommand != "help":
                raise UsageError(f"unknown subcommand {subcommand!r}")
            text = help_text(command.command)
        elif context.person is None and subcommand in ("status", "list"):
            text = _NOT_MAPPED.format(user=command.user)
        else:
            text = handler(context)
    except _Refused as exc:
        text = mrkdwn_escape(exc.message)
    except RearguardError as exc:
        text = mrkdwn_escape(exc.message + (f" ({exc.hint})" if exc.hint else ""))
        if type(exc) is UsageError:
            text += "\n" + help_text(command.command)
    except SQLAlchemyError:
        text = _UNAVAILABLE
    return CommandAnswer(200, fit_text(text, note="(cut)"))


def slack_commands_router(runtime: Runtime) -> APIRouter:
    """``POST /v1/slack/commands``: the ``/rearguard`` slash command."""
    router = APIRouter(tags=["slack"])
    plain: dict[str, Any] = {"text/plain": {"schema": {"type": "string"}}}
    problem: dict[str, Any] = {"application/json": {"schema": Problem.model_json_schema()}}

    @router.post(
        SLACK_COMMANDS_PATH,
        response_model=SlackReply,
        responses={
            200: {"description": "the answer, which only the person who typed it sees"},
            400: {
                "description": "not a Slack slash command (text), or an invalid "
                "Content-Length (JSON, from the guard)",
                "content": {**plain, **problem},
            },
            401: {"description": "a missing, stale or wrong Slack signature", "content": plain},
            409: {"description": "a replayed request", "content": plain},
            413: {
                "model": Problem,
                "description": "the body is over the limit ([intake] max_body_bytes)",
            },
            503: {
                "description": "no Slack signing secret is configured, or the database is "
                "unavailable",
                "content": plain,
            },
        },
    )
    async def slack_command(request: Request) -> Any:
        """The ``/rearguard`` slash command. Not behind the bearer token: Slack signs the
        request with the app's signing secret, checked over the raw body. Every answer Slack
        shows the person is a 200 (a usage error answers with the help)."""
        body = await request.body()
        dispatcher = request.app.state.dispatcher
        answer = await asyncio.to_thread(
            answer_command,
            runtime=runtime,
            headers=dict(request.headers),
            body=body,
            on_opened=dispatcher.submit if dispatcher else (lambda _incident_id: None),
            drills=request.app.state.scheduler,
        )
        if answer.status != 200:
            return PlainTextResponse(answer.text, status_code=answer.status)
        return JSONResponse(SlackReply(text=answer.text).model_dump())

    return router
