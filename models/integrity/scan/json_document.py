"""JSON documents: chat templates, Keras configs and Hugging Face custom code references.

What a JSON file can make a loader run:

- a tokenizer or processor config's top-level ``chat_template`` (a string, or a list of
  ``{"name", "template"}``) is Jinja2 code: checked by
  :mod:`~rearguard.models.integrity.scan.chat_template`;
- a top-level Keras object config (``class_name`` and ``config``: a ``.keras`` archive's
  ``config.json``, an HDF5 ``model_config``, a ``keras_metadata.pb`` entry): checked by
  :mod:`~rearguard.models.integrity.scan.keras`;
- ``auto_map`` (anywhere) and ``custom_pipelines`` entries name Python modules of the model's
  repository (or another one, ``repo--module.Class``) that ``trust_remote_code=True`` imports:
  each is an ``unknown`` finding naming the module.

A file that is not valid JSON is not this format: it gives no finding.
"""

from __future__ import annotations

import json
from typing import BinaryIO

from rearguard.models.integrity.scan import chat_template, keras
from rearguard.models.integrity.scan.findings import Finding, Location, Severity
from rearguard.models.integrity.scan.reading import (
    MAX_JSON_BYTES,
    MalformedInput,
    load_json,
    read_exact,
    stream_size,
)

__all__ = ["HEAD_SIZE", "scan", "scan_document", "sniff", "starts_like_json"]

HEAD_SIZE = 64 * 1024
"""Size of the head the dispatcher passes to :func:`sniff`; a shorter head is a whole file."""

_WHITESPACE = b" \t\r\n"
_BOM = b"\xef\xbb\xbf"
_VALUE_STARTS = b'"{[-0123456789tfn'  # the first byte of any JSON value


def starts_like_json(head: bytes) -> bool:
    """Whether ``head`` starts like a JSON object or array (after a BOM and whitespace)."""
    return head.removeprefix(_BOM).lstrip(_WHITESPACE).startswith((b"{", b"["))


def sniff(head: bytes) -> bool:
    """Whether ``head`` is a JSON object or array: parsed whole when it is the whole file,
    else it must start like one (``{"``, ``[1``..., not ``{%``) and be UTF-8 text."""
    if not starts_like_json(head):
        return False
    text = head.removeprefix(_BOM).lstrip(_WHITESPACE)
    # What follows the bracket: a key or a value, never a Jinja2 marker ("{{", "{%", "{#").
    after = text[1:].lstrip(_WHITESPACE)[:1]
    allowed = b'"}' if text.startswith(b"{") else _VALUE_STARTS + b"]"
    if after and after not in allowed:
        return False
    if len(head) < HEAD_SIZE:
        try:
            json.loads(text)
        except RecursionError:
            return True  # JSON too deep to read: the scan reports it
        except ValueError:
            return False
        return True
    try:
        text.decode()
    except UnicodeDecodeError as error:
        # The head may end in the middle of a multi-byte character.
        return error.start >= len(text) - 3 and error.reason == "unexpected end of data"
    return True


def _module_of(reference: str) -> str:
    """``repo--pkg.module.Class`` -> ``repo--pkg.module``: the module that is imported."""
    return reference.rpartition(".")[0] or reference


def _custom_code(key: str, reference: object, location: Location) -> list[Finding]:
    references = reference if isinstance(reference, list) else [reference]
    findings: list[Finding] = []
    for item in references:
        if not isinstance(item, str) or not item:
            continue
        module = _module_of(item)
        repository, _, local = module.rpartition("--")
        source = f"{local}.py from repository {repository!r}" if repository else f"{module}.py"
        findings.append(
            location.finding(
                construct=f"{key}: {item}",
                severity=Severity.UNKNOWN,
                reason=f"Hugging Face custom code: trust_remote_code=True imports {source}",
            )
        )
    return findings


def _references(document: object, location: Location) -> list[Finding]:
    findings: list[Finding] = []
    pending: list[object] = [document]
    while pending:
        value = pending.pop()
        if isinstance(value, list):
            pending.extend(reversed(value))
            continue
        if not isinstance(value, dict):
            continue
        auto_map = value.get("auto_map")
        if isinstance(auto_map, dict):
            for key, reference in auto_map.items():
                findings.extend(_custom_code(f"auto_map.{key}", reference, location))
        pipelines = value.get("custom_pipelines")
        if isinstance(pipelines, dict):
            for task, pipeline in pipelines.items():
                if isinstance(pipeline, dict):
                    implementation = pipeline.get("impl")
                    findings.extend(
                        _custom_code(f"custom_pipelines.{task}", implementation, location)
                    )
        pending.extend(reversed(list(value.values())))
    return findings


def _chat_templates(value: object, location: Location) -> list[Finding]:
    if isinstance(value, str):
        return chat_template.scan_template(value, location=location)
    findings: list[Finding] = []
    if isinstance(value, list):
        for entry in value:
            template = entry.get("template") if isinstance(entry, dict) else None
            if isinstance(template, str):
                findings.extend(chat_template.scan_template(template, location=location))
    return findings


def scan_document(document: object, *, location: Location) -> list[Finding]:
    """Find chat template escapes, Keras Lambda layers and custom objects, and custom code
    references in a parsed JSON document.

    Args:
        document: the parsed JSON value.
        location: where it comes from.

    Returns:
        The findings, chat templates first, then the Keras config, then custom code.
    """
    findings: list[Finding] = []
    if isinstance(document, dict):
        findings.extend(_chat_templates(document.get("chat_template"), location))
        if keras.looks_like_config(document):
            findings.extend(keras.scan_config(document, location=location))
    findings.extend(_references(document, location))
    return findings


def scan(stream: BinaryIO, *, location: Location) -> list[Finding]:
    """Scan a JSON file.

    Args:
        stream: the file, seekable, at offset 0.
        location: where it comes from.

    Returns:
        The findings of :func:`scan_document`; none when the file is not JSON after all;
        ``not_scanned`` past :data:`~rearguard.models.integrity.scan.reading.MAX_JSON_BYTES`;
        ``malformed`` when it nests too deeply to read.
    """
    size = stream_size(stream)
    if size > MAX_JSON_BYTES:
        return [
            location.finding(
                construct="JSON document",
                severity=Severity.NOT_SCANNED,
                reason=f"not scanned: {size} bytes, past the {MAX_JSON_BYTES} limit",
            )
        ]
    data = read_exact(stream, size, what="JSON document")
    try:
        document = load_json(data.removeprefix(_BOM))
    except MalformedInput as error:
        return [
            location.finding(
                construct="JSON document",
                severity=Severity.MALFORMED,
                reason=error.message,
                offset=error.offset,
            )
        ]
    except ValueError:
        return []
    return scan_document(document, location=location)
