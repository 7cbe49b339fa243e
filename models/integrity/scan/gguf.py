"""GGUF files (llama.cpp): the chat templates in the metadata, checked for sandbox escapes.

A GGUF file is a header, a table of metadata key/value pairs, then tensor descriptions and
data. The only code in it is the Jinja2 chat template under ``tokenizer.chat_template`` (and
named variants ``tokenizer.chat_template.NAME``) that servers render for every request:
CVE-2024-34359 ran arbitrary Python through one in llama-cpp-python. The metadata table is
read, every value whose key is not a chat template is skipped by seeking, and each template goes
through :mod:`~rearguard.models.integrity.scan.chat_template`. Tensors are not read.

Versions 2 and 3 are read, little- or big-endian. Every count and length is checked against
the bytes left in the file before anything is read, so a hostile header is a ``malformed``
finding, quickly and without allocating. Another version is ``not_scanned``.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

from rearguard.models.integrity.scan import chat_template
from rearguard.models.integrity.scan.findings import Finding, Location, Severity
from rearguard.models.integrity.scan.reading import ByteSource, MalformedInput

__all__ = ["CHAT_TEMPLATE_KEY", "MAGIC", "scan", "sniff"]

MAGIC = b"GGUF"
CHAT_TEMPLATE_KEY = "tokenizer.chat_template"

_VERSIONS = frozenset({2, 3})
_STRING = 8
_ARRAY = 9
# Scalar value types: their struct format.
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_MAX_KEY_BYTES = 65535  # the GGUF specification's limit
_MAX_ARRAY_DEPTH = 4
# The smallest key/value pair: key length, a one-byte key, the type and a one-byte value.
_MIN_PAIR_BYTES = 8 + 1 + 4 + 1


def sniff(head: bytes) -> bool:
    """Whether ``head`` starts with the GGUF magic."""
    return head.startswith(MAGIC)


class _Reader:
    """Reads GGUF values in one byte order at a position it keeps, each length checked against
    the file's size."""

    def __init__(self, source: ByteSource, *, order: str, position: int) -> None:
        self.source = source
        self.order = order
        self.position = position

    def left(self) -> int:
        return self.source.size - self.position

    def take(self, size: int, what: str) -> bytes:
        data = self.source.read_at(self.position, size)
        if len(data) != size:
            raise MalformedInput(f"truncated: {what} runs past the end", offset=self.position)
        self.position += size
        return data

    def unpack(self, fmt: str, what: str) -> int:
        (value,) = struct.unpack(self.order + fmt, self.take(struct.calcsize(fmt), what))
        return int(value)

    def length(self, what: str, *, item_size: int = 1) -> int:
        """A uint64 count of items at least ``item_size`` bytes each, checked against the file."""
        offset = self.position
        count = self.unpack("Q", what)
        if count * item_size > self.left():
            raise MalformedInput(
                f"truncated: {what} declares {count} items, the file has {self.left()} bytes left",
                offset=offset,
            )
        return count

    def string(self, what: str, *, limit: int) -> bytes | None:
        """A string's bytes, or None (skipped) when it is longer than ``limit``."""
        length = self.length(f"{what} length")
        if length > limit:
            self.position += length
            return None
        return self.take(length, what)

    def skip(self, value_type: int, *, depth: int = 0) -> None:
        offset = self.position
        if value_type in _SCALARS:
            self.position += struct.calcsize(_SCALARS[value_type])
        elif value_type == _STRING:
            length = self.length("string")  # before the +=, which would read the old position
            self.position += length
        elif value_type == _ARRAY:
            if depth >= _MAX_ARRAY_DEPTH:
                raise MalformedInput(f"arrays nested deeper than {_MAX_ARRAY_DEPTH}", offset=offset)
            item_type = self.unpack("I", "array item type")
            if item_type in _SCALARS:
                size = struct.calcsize(_SCALARS[item_type])
                count = self.length("array", item_size=size)
                self.position += count * size
            elif item_type in (_STRING, _ARRAY):
                for _ in range(self.length("array", item_size=8)):
                    self.skip(item_type, depth=depth + 1)
            else:
                raise MalformedInput(f"unknown array item type {item_type}", offset=offset)
        else:
            raise MalformedInput(f"unknown value type {value_type}", offset=offset)
        if self.left() < 0:
            raise MalformedInput("truncated: a value runs past the end", offset=offset)


def _is_template_key(key: str) -> bool:
    return key == CHAT_TEMPLATE_KEY or key.startswith(CHAT_TEMPLATE_KEY + ".")


def _scan_metadata(reader: _Reader, location: Location, findings: list[Finding]) -> None:
    pairs = reader.length("metadata table", item_size=_MIN_PAIR_BYTES)
    for _ in range(pairs):
        raw_key = reader.string("metadata key", limit=_MAX_KEY_BYTES)
        if raw_key is None:
            raise MalformedInput(f"metadata key longer than {_MAX_KEY_BYTES} bytes")
        key = raw_key.decode(errors="replace")
        value_type = reader.unpack("I", "value type")
        if not (_is_template_key(key) and value_type == _STRING):
            reader.skip(value_type)
            continue
        value_offset = reader.position
        data = reader.string(key, limit=chat_template.MAX_TEMPLATE_BYTES)
        if data is None:
            findings.append(
                location.finding(
                    construct=key,
                    severity=Severity.NOT_SCANNED,
                    reason=f"not scanned: longer than {chat_template.MAX_TEMPLATE_BYTES} bytes",
                    offset=value_offset,
                )
            )
            continue
        offset = reader.position - len(data)
        try:
            source = data.decode()
        except UnicodeDecodeError:
            raise MalformedInput(f"{key} is not UTF-8", offset=offset) from None
        findings.extend(chat_template.scan_template(source, location=location, offset=offset))


def scan(stream: BinaryIO, *, location: Location) -> list[Finding]:
    """Scan the chat templates in a GGUF file's metadata.

    Args:
        stream: the file, seekable, at offset 0.
        location: where it comes from.

    Returns:
        The findings of each chat template (their offset is the template's); ``malformed``
        when the header or the metadata table does not parse (findings before it are kept);
        ``not_scanned`` for a version other than 2 and 3.
    """
    findings: list[Finding] = []
    try:
        source = ByteSource(stream)
        header = source.read_at(0, 8)
        if len(header) != 8:
            raise MalformedInput("truncated: GGUF header runs past the end", offset=0)
        if header[:4] != MAGIC:
            raise MalformedInput("no GGUF magic", offset=0)
        order = next(
            (o for o in ("<", ">") if struct.unpack(o + "I", header[4:8])[0] in _VERSIONS), None
        )
        if order is None:
            (version,) = struct.unpack("<I", header[4:8])
            return [
                location.finding(
                    construct="GGUF file",
                    severity=Severity.NOT_SCANNED,
                    reason=f"not scanned: GGUF version {version} is not read (2 and 3 are)",
                    offset=4,
                )
            ]
        # The tensor count (at 8) is not needed: tensors hold no code.
        reader = _Reader(source, order=order, position=16)
        _scan_metadata(reader, location, findings)
    except MalformedInput as error:
        findings.append(
            location.finding(
                construct="GGUF file",
                severity=Severity.MALFORMED,
                reason=error.message,
                offset=error.offset,
            )
        )
    return findings
