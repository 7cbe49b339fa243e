"""Slack's documented message limits, and fitting a message inside them.

Slack rejects a message with ``invalid_blocks`` when a header is over 150 characters, a section
text over 3,000, a section field over 2,000, a section has over 10 fields or a message over 50
blocks; and with ``msg_too_long`` when the text is too long. A huge incident summary must not
get its notification rejected, so everything is cut to fit, with a note saying where the rest is.
"""

from __future__ import annotations

import copy
import re
from typing import Any

_PARTIAL_ENTITY = re.compile(r"&[a-z]{0,3}$")

HEADER_MAX = 150
SECTION_TEXT_MAX = 3000
FIELD_TEXT_MAX = 2000
FIELDS_MAX = 10
CONTEXT_ELEMENTS_MAX = 10
BLOCKS_MAX = 50
MESSAGE_TEXT_MAX = 40_000
# The fallback text (notifications, screen readers) need not be the whole message.
FALLBACK_TEXT_MAX = 3000


def cut(text: str, limit: int, note: str = "…") -> str:
    """Return ``text`` if it fits in ``limit`` characters, else its start followed by ``note``."""
    if len(text) <= limit:
        return text
    if len(note) >= limit:
        return text[: limit - 1] + "…"
    kept = text[: limit - len(note)]
    # Never leave half an escape (``&am``) of Slack's mrkdwn at the cut.
    kept = _PARTIAL_ENTITY.sub("", kept)
    return kept.rstrip() + note


def fit_text(text: str, *, note: str, limit: int = FALLBACK_TEXT_MAX) -> str:
    """Cut a message's plain text to ``limit`` (at most Slack's 40,000) characters."""
    return cut(text, min(limit, MESSAGE_TEXT_MAX), "\n" + note)


def mrkdwn_escape(value: Any) -> str:
    """Escape the three characters Slack's mrkdwn treats as markup: &, < and >."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fit_escaped_text(text: str, *, note: str) -> str:
    """A plain text as Slack's mrkdwn fallback ``text``: escaped, then cut to the limit (the
    cut never leaves half an escape)."""
    return fit_text(mrkdwn_escape(text), note=mrkdwn_escape(note))


def fit_blocks(blocks: list[dict[str, Any]], *, note: str) -> list[dict[str, Any]]:
    """Return a copy of ``blocks`` cut to Slack's limits, with ``note`` where text was cut."""
    fitted = [_fit_block(copy.deepcopy(block), note) for block in blocks]
    if len(fitted) > BLOCKS_MAX:
        dropped = len(fitted) - (BLOCKS_MAX - 1)
        fitted = fitted[: BLOCKS_MAX - 1]
        fitted.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"{dropped} more blocks omitted. {note}"}],
            }
        )
    return fitted


def _fit_text_object(obj: Any, limit: int, note: str) -> None:
    if isinstance(obj, dict) and isinstance(obj.get("text"), str):
        obj["text"] = cut(obj["text"], limit, "\n" + note if limit > 200 else "…")


def _fit_block(block: dict[str, Any], note: str) -> dict[str, Any]:
    kind = block.get("type")
    if kind == "header":
        _fit_text_object(block.get("text"), HEADER_MAX, note)
    elif kind == "section":
        _fit_text_object(block.get("text"), SECTION_TEXT_MAX, note)
        fields = block.get("fields")
        if isinstance(fields, list):
            del fields[FIELDS_MAX:]
            for item in fields:
                _fit_text_object(item, FIELD_TEXT_MAX, note)
    elif kind == "context":
        elements = block.get("elements")
        if isinstance(elements, list):
            del elements[CONTEXT_ELEMENTS_MAX:]
            for item in elements:
                _fit_text_object(item, SECTION_TEXT_MAX, note)
    return block
