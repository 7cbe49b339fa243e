"""JSON from outside, parsed with its nesting bounded.

``json.loads`` recurses once per level: a document nested 100,000 deep (a few hundred
kilobytes of brackets) raises ``RecursionError``, and one just under the interpreter's limit
parses into a value that every recursive walk after it (redaction, validation, printing) then
trips on. Every parse of text that came from outside goes through :func:`loads`.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64
"""Deeper than any document rearguard reads (an Alertmanager webhook is 4 levels deep)."""


class JsonTooDeep(ValueError):
    """A JSON document nested deeper than allowed (a ``ValueError``, like a malformed one)."""


def loads(text: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse a JSON document, refusing one nested deeper than ``max_depth``.

    Raises:
        JsonTooDeep: the document is nested too deep.
        ValueError: it is not JSON (``json.JSONDecodeError``) or not UTF-8.
    """
    try:
        value = json.loads(text)
    except RecursionError:
        raise JsonTooDeep(f"JSON nested deeper than {max_depth} levels") from None
    if depth_exceeds(value, max_depth):
        raise JsonTooDeep(f"JSON nested deeper than {max_depth} levels")
    return value


def depth_exceeds(value: Any, max_depth: int) -> bool:
    """True when a parsed value nests lists and objects deeper than ``max_depth`` (iterative:
    the check itself never recurses)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
