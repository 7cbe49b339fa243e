"""Bounded reading shared by the format scanners: the error for bytes that do not parse, exact
reads from a stream, and JSON with a size and depth limit.

A scanner reads hostile bytes. Every length it reads is checked against what is left of the
stream before anything is allocated, so a huge declared length is a finding, not an
out-of-memory.
"""

from __future__ import annotations

import json
import os
from typing import BinaryIO

from rearguard.models.errors import RearguardError

__all__ = [
    "MAX_JSON_BYTES",
    "ByteSource",
    "MalformedInput",
    "load_json",
    "read_exact",
    "stream_size",
]

MAX_JSON_BYTES = 64 * 1024 * 1024
"""Largest JSON text parsed (a Keras config or tokenizer config is far smaller; a 30 MiB
``tokenizer.json`` still fits)."""


class MalformedInput(RearguardError):
    """Bytes that do not parse as the format they claim to be, or pass a limit.

    A scanner turns it into a ``malformed`` finding; it never leaves the scanner.

    Args:
        message: what is wrong, in a few words.
        offset: byte offset in the stream where it was found, when known.
    """

    def __init__(self, message: str, *, offset: int | None = None) -> None:
        super().__init__(message)
        self.offset = offset


def stream_size(stream: BinaryIO) -> int:
    """The size of a seekable stream, leaving its position where it was."""
    here = stream.tell()
    size = stream.seek(0, os.SEEK_END)
    stream.seek(here)
    return size


def read_exact(stream: BinaryIO, size: int, *, what: str) -> bytes:
    """Read exactly ``size`` bytes at the stream's position.

    Args:
        stream: the stream, positioned where the bytes start.
        size: how many bytes; the caller has checked it against what is left.
        what: what the bytes are, for the error.

    Raises:
        MalformedInput: the stream ends first.
    """
    offset = stream.tell()
    data = stream.read(size)
    if len(data) != size:
        raise MalformedInput(f"truncated: {what} runs past the end", offset=offset)
    return data


class ByteSource:
    """A seekable stream read at offsets through a window of :data:`WINDOW` bytes.

    Parsers of many small fields (protobuf tags, GGUF lengths) read a few bytes at a time;
    asking the stream for each (a seek, a read, a system call for ``tell``) costs more than the
    parsing. Reads that move forward, as the parsers do, refill the window once per
    :data:`WINDOW` bytes; a read larger than the window goes to the stream directly.

    Args:
        stream: the stream; its position is the source's to move.
    """

    WINDOW = 64 * 1024

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.size = stream_size(stream)
        self._start = 0
        self._data = b""

    def read_at(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset``: fewer only where the stream ends."""
        end = offset + size
        if self._start <= offset and end <= self._start + len(self._data):
            return self._data[offset - self._start : end - self._start]
        self._stream.seek(offset)
        if size > self.WINDOW:
            return self._stream.read(size)
        self._start, self._data = offset, self._stream.read(self.WINDOW)
        return self._data[:size]


def load_json(text: str | bytes) -> object:
    """Parse a JSON text with a size limit; nesting is bounded by Python's recursion limit.

    Args:
        text: the JSON document.

    Returns:
        The parsed value.

    Raises:
        MalformedInput: the text is larger than :data:`MAX_JSON_BYTES` or nested too deeply.
        ValueError: the text is not JSON (including bytes that are not UTF-8).
    """
    if len(text) > MAX_JSON_BYTES:
        raise MalformedInput(f"JSON document larger than {MAX_JSON_BYTES} bytes")
    try:
        return json.loads(text)
    except RecursionError:
        raise MalformedInput("JSON nested too deeply to read") from None
