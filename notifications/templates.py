"""Rendering notifications from Jinja2 templates, built-in or the user's own.

Each event has a plain-text template, ``<event>.txt.j2``: its first line is the title (the
Slack header, the email subject), the rest is the body. The layouts ``message.slack.j2``
(Block Kit as JSON) and ``message.html.j2`` (the HTML email) place the title and body; an
event can have its own layout (``recovered.slack.j2``). A template in the user's directory
(``[notifications] templates_dir``) replaces the built-in one of the same name.

Every template renders with ``StrictUndefined`` (a misspelt variable is an error, not an empty
string), HTML templates autoescape, and when a user directory is configured everything renders
in Jinja2's ``SandboxedEnvironment``: a template from disk cannot reach Python internals.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from rearguard.notifications.channels.base import Message
from rearguard.notifications.channels.slack_limits import (
    fit_blocks,
    fit_escaped_text,
    fit_text,
    mrkdwn_escape,
)

BUILTIN_DIR = Path(__file__).resolve().parent / "templates"
EVENTS = (
    "opened",
    "contained",
    "recovered",
    "failed",
    "approval_needed",
    "approval_code",
    "drill_result",
)
DRILL_PREFIX = "[DRILL] "


class TemplateError(Exception):
    """A template is missing, malformed, or uses an undefined variable."""


def slack_user(contact: str) -> str:
    """``slack:U123`` as a Slack mention (``<@U123>``); anything else unchanged."""
    return f"<@{contact.removeprefix('slack:')}>" if contact.startswith("slack:") else contact


def _autoescape(name: str | None) -> bool:
    return name is not None and ".html" in name


@lru_cache(maxsize=8)
def _environment(user_dir: str | None) -> jinja2.Environment:
    directories = ([user_dir] if user_dir else []) + [str(BUILTIN_DIR)]
    kind = SandboxedEnvironment if user_dir else jinja2.Environment
    environment = kind(
        loader=jinja2.FileSystemLoader(directories),
        undefined=jinja2.StrictUndefined,
        autoescape=_autoescape,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["mrkdwn"] = mrkdwn_escape
    environment.filters["slack_user"] = slack_user
    return environment


class Renderer:
    """Renders a notification's title and bodies for the channels that need them.

    Args:
        templates_dir: the user's template directory, if any.
    """

    def __init__(self, templates_dir: Path | None = None) -> None:
        self.templates_dir = templates_dir
        self.environment = _environment(str(templates_dir) if templates_dir else None)

    def _render(self, name: str, context: dict[str, Any]) -> str:
        try:
            return self.environment.get_template(name).render(context)
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(f"no template {exc.name}") from exc
        except jinja2.TemplateError as exc:
            # Only a syntax error knows its line; one raised while rendering does not.
            line = exc.lineno if isinstance(exc, jinja2.TemplateSyntaxError) else None
            where = f"{name}:{line}" if line else name
            raise TemplateError(f"template {where}: {exc.message or exc}") from exc

    def _layout(self, event: str, kind: str) -> str:
        name = f"{event}.{kind}.j2"
        try:
            self.environment.get_template(name)
        except jinja2.TemplateNotFound:
            return f"message.{kind}.j2"
        return name

    def render(
        self, event: str, context: dict[str, Any], *, formats: frozenset[str] = frozenset()
    ) -> Message:
        """Render the event's message.

        Args:
            event: opened, contained, recovered, failed, approval_needed, approval_code,
                drill_result or test.
            context: the values stored in the outbox row.
            formats: ``slack`` and/or ``html`` to render those bodies too.

        Returns:
            The message; a drill's title always starts with ``[DRILL]``.

        Raises:
            TemplateError: a template is missing, malformed or uses an undefined variable.
        """
        drill = bool(context.get("drill"))
        text = self._render(f"{event}.txt.j2", context).strip("\n")
        title, _, body = text.partition("\n")
        title, body = title.strip(), body.strip("\n")
        if drill and not title.startswith(DRILL_PREFIX):
            title = DRILL_PREFIX + title
        values = {
            **context,
            "title": title,
            "title_without_drill": title.removeprefix(DRILL_PREFIX),
            "body": body,
        }
        blocks: list[dict[str, Any]] = []
        if "slack" in formats:
            raw = self._render(self._layout(event, "slack"), values)
            try:
                parsed = json.loads(raw)
            except ValueError as exc:
                raise TemplateError(f"the Slack template did not render JSON: {exc}") from exc
            if isinstance(parsed, dict):
                parsed = parsed.get("blocks", [])
            if not isinstance(parsed, list) or not all(isinstance(b, dict) for b in parsed):
                raise TemplateError("the Slack template must render a list of blocks")
            blocks = fit_blocks(parsed, note=_note(context))
        html = self._render(self._layout(event, "html"), values) if "html" in formats else ""
        full_text = f"{title}\n\n{body}".strip()
        return Message(
            title=title,
            text=fit_text(full_text, note=_note(context)),
            slack_text=fit_escaped_text(full_text, note=_note(context)),
            body=body,
            html=html,
            blocks=blocks,
            drill=drill,
            context=context,
        )


def _note(context: dict[str, Any]) -> str:
    command = context.get("command")
    return f"… (truncated; full record: `{command}`)" if command else "… (truncated)"
