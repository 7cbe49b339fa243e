"""Jinja2 chat templates: sandbox escapes, found in the parsed template, never rendered.

A chat template (``tokenizer_config.json``, ``chat_template.jinja``, GGUF metadata) is Jinja2
code that the serving stack renders for every request. Rendered outside a sandbox (as
llama-cpp-python did before 0.2.72, CVE-2024-34359), it runs any Python it can reach through
an object's attributes. The template is parsed with Jinja2's own parser and its syntax tree is
walked for the ways out:

- an attribute or item lookup of a name that starts with an underscore (``__class__``,
  ``__globals__``, ``__subclasses__``, ``__builtins__``, ``__init__``,
  ``_TemplateReference__context``...) or of a known escape attribute (``mro``,
  ``func_globals``, ``gi_frame``, ``f_globals``...), written directly, through ``|attr``,
  ``map``/``selectattr``/``sort`` with ``attribute=``, or built from pieces
  (``'__cla' ~ 'ss__'``, ``'_' * 2``, ``|join``, ``|format``, ``|reverse``, a ``{% set %}``
  variable); a lookup whose name is computed from a piece that starts with an underscore;
  ``|attr`` with a name that is not a constant; any dunder string (``'__globals__'``) anywhere;
- an attribute of the template globals (``self``, ``cycler``, ``joiner``, ``namespace``,
  ``lipsum``, ``range``, ``dict``), which are Python objects and functions;
- ``.format`` / ``.format_map`` on a string (the str.format escape of older sandboxes);
- ``{% import %}``, ``{% from %}``, ``{% include %}`` and ``{% extends %}`` (they read other
  templates through the loader).

Every construct is ``dangerous``; a template that does not parse is ``malformed``. A file that
is only text with Jinja2 markers (no JSON, no GGUF field says it is a template) and does not
parse is no template a loader could render: it gives nothing, unless its text names a special
attribute (``__class__``...), when it is ``malformed``. Not
detected: an escape through an object the application passes in (its attributes are unknown
here), and names built from data at render time without any underscore in the template.
"""

from __future__ import annotations

import re
from typing import BinaryIO

from rearguard.models.integrity.scan.findings import Finding, Location, Severity
from rearguard.models.integrity.scan.reading import read_exact, stream_size

__all__ = [
    "MAX_TEMPLATE_BYTES",
    "has_no_control_bytes",
    "scan",
    "scan_template",
    "sniff",
    "template_finding",
]

MAX_TEMPLATE_BYTES = 1024 * 1024
"""Largest template parsed; real chat templates are a few KiB."""

_JINJA_MARKERS = re.compile(rb"\{[{%#]")
_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def has_no_control_bytes(head: bytes) -> bool:
    """Whether ``head`` could be text: no control bytes but whitespace."""
    return _CONTROL_BYTES.search(head) is None


def sniff(head: bytes) -> bool:
    """Whether ``head`` is UTF-8 text (no control bytes but whitespace) with Jinja2 markers
    (``{{``, ``{%``, ``{#``).

    JSON documents have markers too; the dispatcher should try the JSON scanner first.
    """
    if not has_no_control_bytes(head) or not _JINJA_MARKERS.search(head):
        return False
    try:
        head.decode()
    except UnicodeDecodeError as error:
        # A multi-byte character cut off by the end of the head is still text.
        return error.start >= len(head) - 3 and error.reason == "unexpected end of data"
    return True


def template_finding(
    location: Location, offset: int | None, severity: Severity, reason: str
) -> Finding:
    """A finding about a template as a whole (construct ``chat template``)."""
    return location.finding(
        construct="chat template", severity=severity, reason=reason, offset=offset
    )


def _too_long(location: Location, offset: int | None) -> Finding:
    reason = f"not scanned: longer than {MAX_TEMPLATE_BYTES} bytes"
    return template_finding(location, offset, Severity.NOT_SCANNED, reason)


def scan_template(
    source: str, *, location: Location, offset: int | None = None, declared: bool = True
) -> list[Finding]:
    """Find sandbox escapes in one Jinja2 template.

    Args:
        source: the template text.
        location: where it comes from.
        offset: where the template starts in the stream, when known (findings carry it; the
            reason names the template's line).
        declared: whether something says the text is a template (a JSON or GGUF field). Bare
            text that does not parse is no template: nothing, unless it names a special
            attribute (``malformed``: a renderer of another Jinja2 version might read it).

    Returns:
        One ``dangerous`` finding per escape (per construct and line), or one ``malformed``
        finding when the template does not parse, or a ``not_scanned`` one past
        :data:`MAX_TEMPLATE_BYTES`.
    """
    if len(source) > MAX_TEMPLATE_BYTES:
        return [_too_long(location, offset)]
    # lazy: Jinja2 (about 8 MB and 30 ms to import) only once a template is met
    from rearguard.models.integrity.scan.template_walk import find_escapes

    return find_escapes(source, location=location, offset=offset, declared=declared)


def scan(stream: BinaryIO, *, location: Location) -> list[Finding]:
    """Scan a file of text with Jinja2 markers as one template (``chat_template.jinja``).

    Args:
        stream: the file, seekable, at offset 0.
        location: where it comes from.

    Returns:
        The findings of :func:`scan_template` for undeclared text (a YAML or Markdown file
        with braces that does not parse gives nothing); ``malformed`` when it is not UTF-8.
    """
    size = stream_size(stream)
    if size > MAX_TEMPLATE_BYTES:
        return [_too_long(location, None)]
    data = read_exact(stream, size, what="template")
    try:
        source = data.decode()
    except UnicodeDecodeError as error:
        return [template_finding(location, error.start, Severity.MALFORMED, "not UTF-8 text")]
    return scan_template(source, location=location, declared=False)
