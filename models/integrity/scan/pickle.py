"""Find what a pickle would import and call, without loading it.

Unpickling runs code: any ``module.name`` a pickle references is imported and can be called. This
module reads the opcode stream instead (the opcode table and argument readers of ``pickletools``)
and follows each opcode's effect on a symbolic stack and memo, so the operands of STACK_GLOBAL are
resolved even when they come from the memo. Nothing in a scanned file is ever imported, called or
unpickled. Containers (zip, tar, compressed streams) are opened by the engine
(:mod:`rearguard.models.integrity.scan.engine`); this module reads one stream of bytes:

- pickles of protocols 0-5, several written one after another (the scan goes on after each STOP
  until the end of the stream; bytes after the last complete pickle that are not a pickle, such
  as the raw storages of a legacy PyTorch file, end the scan);
- joblib files, whose numpy arrays are written as raw bytes in the middle of the pickle stream:
  the array size is worked out from the ``NumpyArrayWrapper`` state and skipped, and an
  object-array's nested pickle is scanned. Because ``pickle.load`` would read the same bytes as
  opcodes, they are also scanned that way, so a fake wrapper cannot hide a payload behind it;
- ``.npy`` data (:func:`npy_pickle_offset` says where an object array's pickle starts).

Every global is checked against an exact allow-list (:mod:`.pickle_globals`): one that is not on
it is ``unknown``, one the deny-list names is ``dangerous``. Python 2 names are mapped the way
the unpickler maps them (``commands`` -> ``subprocess``). Because protocol 4 resolves a dotted name
attribute by attribute, a dotted name is checked from each of its parts, so ``posixpath`` +
``os.system`` is caught. A STACK_GLOBAL whose operands may be strings computed at load time (call
results, persistent ids) cannot be checked and is reported as ``dangerous``.

A stream that breaks off before its first STOP gives findings only for what the unpickler would
have acted on: a global is reported once something calls it, a STOP completes the pickle, or,
when the break comes first, if the deny-list names it (importing a module runs its code), so
text that merely starts like a protocol 0 opcode is not reported. It is reported ``malformed``
only when it says it is a pickle (a PROTO opcode of protocols 2-5 first).

A ``bytes`` value that is itself a pickle (it starts with PROTO 2-5), and a text value that
is one written as base64 or hex, is scanned as a nested pickle, up to four levels deep: loading
the outer pickle does not run it, but a second stage that unpickles the field does, and no
legitimate model hides one. Its globals are reported as the outer pickle's are, with where the
nested pickle starts; bytes that merely start like a pickle and then break give nothing.

A FRAME (protocol 4) whose last opcode runs past the frame's end is ``malformed``: CPython's C
unpickler reads on regardless, so what follows still runs, and the scan goes on too. A FRAME
longer than what remains is ``malformed`` after a PROTO only, by the same rule as a break.

Memory is bounded by the pickle's structure, not by its size: payloads are skipped unread, and
the memo keeps one byte per entry for values that cannot name a global (see :class:`_Memo`).
"""

from __future__ import annotations

import _compat_pickle
import ast
import base64
import binascii
import io
import math
import os
import pickle
import pickletools
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from typing import Any, BinaryIO, Protocol

from rearguard.models.integrity.scan.findings import Finding, Location, Severity
from rearguard.models.integrity.scan.pickle_globals import classify_global

__all__ = [
    "ForwardStream",
    "Reopen",
    "StreamScan",
    "looks_like_pickle",
    "npy_pickle_offset",
    "says_pickle",
    "scan",
    "sniff",
]

_NPY_MAGIC = b"\x93NUMPY"
# numpy itself refuses headers above 10 000 bytes unless told otherwise.
_MAX_NPY_HEADER = 64 * 1024
# Longer strings are skipped unread, as no module or attribute name is this long (one used as a
# name is reported as unchecked).
_MAX_KEPT_STRING = 1024
# Bounds a newline-terminated argument (protocol 0) so a missing newline cannot read a whole file.
_MAX_LINE = 64 * 1024 * 1024
# Symbolic containers stop growing here; only small ones (wrapper states, args) matter.
_MAX_CONTAINER = 64
# Longer strings, and strings that are no dotted name, are kept in the memo as a one-byte tag
# (see _Memo).
_MAX_MEMO_STRING = 256
_SKIP_CHUNK = 1024 * 1024
_READ_CHUNK = 256 * 1024
# Nested pickles (a bytes value, or base64 or hex text, that is a pickle) are scanned this
# many levels deep; encoded text is decoded in memory up to this length.
_MAX_NESTED_DEPTH = 4
_MAX_ENCODED_PICKLE = 1024 * 1024
# Read-ahead after a joblib array wrapper for the plain-pickle scan of the same bytes (see
# _Machine._scan_as_plain_pickle); that scan opens a second reader if it gets further.
_SHADOW_WINDOW = 64 * 1024

# Opens a second, independent reader of the same stream at an offset; what it opens is closed
# with the ExitStack.
Reopen = Callable[[int, ExitStack], BinaryIO]


class ForwardStream(Protocol):
    """What the scan reads: bytes in order, and forward seeks (``os.SEEK_CUR``) when the
    stream's size is known."""

    def read(self, n: int, /) -> bytes:
        """Up to ``n`` bytes; fewer only at the end."""
        ...

    def seek(self, offset: int, whence: int, /) -> object:
        """Move ``offset`` bytes forward (``whence`` is ``os.SEEK_CUR``)."""
        ...


_Report = Callable[[int, str, Severity, str], None]


def sniff(head: bytes) -> bool:
    """Tell whether bytes could be read by ``pickle.load``: they start with an opcode that can
    start a pickle.

    Args:
        head: the first bytes of a file or member.

    Returns:
        True when the first byte is a pickle opcode that does not need what an empty stack and
        memo lack (the scan then decides); ``pickle.load`` fails at once on the others.
    """
    return bool(head) and _DISPATCH[head[0]] is not None and head[0] not in _CANNOT_START


def says_pickle(head: bytes) -> bool:
    """Tell whether bytes announce a pickle: PROTO with a protocol the pickler writes it for."""
    return (
        len(head) >= 3 and head[0] == 0x80 and 2 <= head[1] <= 5 and _DISPATCH[head[2]] is not None
    )


def looks_like_pickle(head: bytes) -> bool:
    """Tell whether bytes read as pickle opcodes up to a STOP or to their end, without a fault.

    Args:
        head: the first bytes of a file or member.

    Returns:
        False when the bytes stop being a valid pickle before their end (raw data).
    """
    if not sniff(head):
        return False

    def ignore(offset: int, construct: str, severity: Severity, reason: str) -> None:
        pass

    source = _ByteSource(io.BytesIO(head), start=0, size=None, reopen=None)
    try:
        _Machine(source, ignore).run()
    except _Malformed:
        return source.position >= len(head)
    return True


@dataclass(frozen=True)
class StreamScan:
    """What a scan of a stream found, and how far its bytes read as pickles.

    Attributes:
        findings: in stream order; empty when the stream is clean or not a pickle.
        pickles: how many complete pickles (up to their STOP) the stream holds.
        fault: the stream offset where the bytes stopped being a pickle, or None when they
            ended cleanly after a STOP.
    """

    findings: list[Finding]
    pickles: int
    fault: int | None

    def looks_like_pickle(self, head_size: int) -> bool:
        """Whether the first ``head_size`` bytes read as pickle opcodes up to a STOP or to
        their end without a fault (what :func:`looks_like_pickle` says of them)."""
        return self.pickles > 0 or self.fault is None or self.fault >= head_size


def scan(
    stream: ForwardStream,
    *,
    location: Location,
    size: int | None = None,
    start: int = 0,
    reopen: Reopen | None = None,
    errors: tuple[type[BaseException], ...] = (),
) -> StreamScan:
    """Scan every pickle in a stream, one after another, until its end or the first bad byte.

    Args:
        stream: the bytes, read from ``start`` on; seeked forward only when ``size`` is known.
        location: where the stream comes from, for the findings.
        size: the stream's length when known.
        start: the stream offset of the stream's current position (offsets in findings).
        reopen: opens a second reader of the same stream (joblib's arrays, see
            :meth:`_Machine._scan_as_plain_pickle`); without it, that scan stops at 64 KiB.
        errors: exceptions of reading the stream that mean corrupt data (a malformed finding).

    Returns:
        The findings, and how far the bytes read as pickles.
    """
    findings: list[Finding] = []
    seen: set[tuple[int, str]] = set()

    def add(offset: int, construct: str, severity: Severity, reason: str) -> None:
        # The joblib shadow scan can meet the same opcode as the main scan.
        if (offset, construct) not in seen:
            seen.add((offset, construct))
            findings.append(
                location.finding(
                    construct=construct, severity=severity, reason=reason, offset=offset
                )
            )

    source = _ByteSource(stream, start=start, size=size, reopen=reopen, errors=errors)
    announced = says_pickle(source.peek(3))
    complete = 0
    fault: int | None = None
    while True:
        machine = _Machine(source, add)
        try:
            if not machine.run():
                break
        except _Malformed as exc:
            fault = source.position
            machine.flush(dangerous_only=not announced)
            if announced and complete == 0 and machine.opcodes > 0:
                add(machine.position, "pickle", Severity.MALFORMED, f"malformed pickle: {exc}")
            break
        complete += 1
    return StreamScan(sorted(findings, key=lambda f: f.offset or 0), complete, fault)


class _Malformed(Exception):
    """The bytes are not a valid pickle stream at this point."""


class _Opaque:
    """A value the scan does not model."""

    __slots__ = ("_label",)

    def __init__(self, label: str) -> None:
        self._label = label

    def __repr__(self) -> str:
        return self._label


# Could be anything at load time, a string included (persistent ids, extension codes, strings
# too long to keep); call results (_Instance) and globals (_Global) are the same for this purpose.
_UNKNOWN = _Opaque("?")
# Known not to be a string: bytes, floats, sets, buffers, arrays.
_NOT_STRING = _Opaque("<not a string>")


@dataclass(frozen=True)
class _Global:
    module: str
    name: str


class _Instance:
    """The result of calling or instantiating something, with the state BUILD gives it."""

    __slots__ = ("args", "factory", "state")

    def __init__(self, factory: object, args: object) -> None:
        self.factory = factory
        self.args = args
        self.state: object = None


@dataclass(frozen=True)
class _ArrayLayout:
    nbytes: int
    aligned: bool
    nested_pickle: bool


class _ByteSource:
    """The bytes of one stream for the opcode reader: buffered, with offsets, peek and skip.

    Offers the ``read``/``readline`` pair the ``pickletools`` argument readers expect. Reads
    from the stream in chunks, since the opcode reader asks for a byte or a few at a time.
    """

    def __init__(
        self,
        stream: ForwardStream,
        *,
        start: int,
        size: int | None,
        reopen: Reopen | None,
        errors: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.size = size
        self.reopen = reopen
        self.errors = errors
        self._stream = stream
        self._buffer = b""
        self._at = 0
        self._base = start  # stream offset of _buffer[0]

    @property
    def position(self) -> int:
        return self._base + self._at

    def read(self, n: int) -> bytes:
        at = self._at
        end = at + n
        if end <= len(self._buffer):
            self._at = end
            return self._buffer[at:end]
        data = self._buffer[at:]
        self._refill(n - len(data))
        take = min(n - len(data), len(self._buffer))
        self._at = take
        return data + self._buffer[:take]

    def readline(self) -> bytes:
        newline = self._buffer.find(b"\n", self._at)
        if newline >= 0:
            data = self._buffer[self._at : newline + 1]
            self._at = newline + 1
            return data
        parts = [self._buffer[self._at :]]
        size = len(parts[0])
        while size < _MAX_LINE:
            self._refill(1)
            if not self._buffer:
                break
            newline = self._buffer.find(b"\n", 0, _MAX_LINE - size)
            self._at = len(self._buffer) if newline < 0 else newline + 1
            parts.append(self._buffer[: self._at])
            size += self._at
            if newline >= 0:
                break
        return b"".join(parts)

    def peek(self, n: int) -> bytes:
        """Up to ``n`` next bytes, left unread."""
        if len(self._buffer) - self._at < n:
            data = self._buffer[self._at :]
            self._base += self._at
            self._buffer = data + self._read_stream(n - len(data), n - len(data))
            self._at = 0
        return self._buffer[self._at : self._at + n]

    def skip(self, n: int) -> None:
        """Move past ``n`` bytes of payload without keeping them."""
        if self.size is not None and self.position + n > self.size:
            raise _Malformed(f"{n} bytes announced, {self.size - self.position} remain")
        if self._at + n <= len(self._buffer):
            self._at += n
            return
        n -= len(self._buffer) - self._at
        self._base += len(self._buffer)
        self._buffer = b""
        self._at = 0
        if self.size is not None:
            self._call(self._stream.seek, n, os.SEEK_CUR)
            self._base += n
            return
        while n:
            chunk = self._call(self._stream.read, min(n, _SKIP_CHUNK))
            if not chunk:
                raise _Malformed(f"{n} more bytes announced than the stream holds")
            n -= len(chunk)
            self._base += len(chunk)

    def _refill(self, wanted: int) -> None:
        """Replace the consumed buffer with at least ``wanted`` new bytes, fewer only at EOF."""
        self._base += len(self._buffer)
        self._buffer = self._read_stream(max(wanted, _READ_CHUNK), wanted)
        self._at = 0

    def _read_stream(self, n: int, minimum: int) -> bytes:
        """Up to ``n`` bytes, reading again while fewer than ``minimum`` came and not at EOF."""
        chunks: list[bytes] = []
        got = 0
        while got < minimum or not chunks:
            chunk = self._call(self._stream.read, n - got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def _call(self, method: Callable[..., Any], *args: int) -> Any:
        try:
            return method(*args)
        except self.errors as exc:
            raise _Malformed(f"unreadable stream: {exc}") from exc


# Length-prefixed payloads, skipped unread but for their first bytes: (width of the length,
# signed length). Bytes values may hold a nested pickle (see _Machine._bytes_value).
_PAYLOADS = {
    "SHORT_BINBYTES": (1, False),
    "BINBYTES": (4, False),
    "BINBYTES8": (8, False),
    "BYTEARRAY8": (8, False),
    "LONG4": (4, True),
}
_BYTES_VALUES = frozenset({"SHORT_BINBYTES", "BINBYTES", "BINBYTES8", "BYTEARRAY8"})
# Length-prefixed strings: (width of the length, signed length, encoding the unpickler uses).
_STRINGS = {
    "SHORT_BINSTRING": (1, False, "latin-1"),
    "BINSTRING": (4, True, "latin-1"),
    "SHORT_BINUNICODE": (1, False, "utf-8"),
    "BINUNICODE": (4, False, "utf-8"),
    "BINUNICODE8": (8, False, "utf-8"),
}


def _read_length(source: _ByteSource, width: int, signed: bool) -> int:
    data = source.read(width)
    if len(data) != width:
        raise _Malformed("stream ends inside a length")
    length = int.from_bytes(data, "little", signed=signed)
    if length < 0:
        raise _Malformed(f"negative length {length}")
    return length


def _read_line(source: _ByteSource) -> str:
    line = source.readline()
    if not line.endswith(b"\n"):
        raise _Malformed("no newline after a name")
    return line[:-1].decode("utf-8")


def _payload_length(width: int, signed: bool, source: _ByteSource) -> int:
    return _read_length(source, width, signed)


def _skip_payload(width: int, signed: bool, source: _ByteSource) -> object:
    source.skip(_read_length(source, width, signed))
    return _NOT_STRING


class _LongText(str):
    """A string too long to keep as a value that reads like an encoded pickle (scanned)."""

    __slots__ = ()


def _read_string(width: int, signed: bool, encoding: str, source: _ByteSource) -> object:
    at = source._at
    buffer = source._buffer
    start = at + width
    if start <= len(buffer):  # hot: a short string in the buffer is read straight from it
        length = int.from_bytes(buffer[at:start], "little", signed=signed)
        end = start + length
        if 0 <= length <= _MAX_KEPT_STRING and end <= len(buffer):
            source._at = end
            return buffer[start:end].decode(encoding, "surrogatepass")
    length = _read_length(source, width, signed)
    long = length > _MAX_KEPT_STRING
    if long and (length > _MAX_ENCODED_PICKLE or _encoded_pickle_kind(source.peek(4)) is None):
        source.skip(length)
        return _UNKNOWN
    data = source.read(length)
    if len(data) != length:
        raise _Malformed("stream ends inside a string")
    text = data.decode(encoding, "surrogatepass")
    return _LongText(text) if long else text


def _encoded_pickle_kind(start: bytes | str) -> str | None:
    """Whether text starts like a pickle (PROTO 2-5) written as base64 or as hex."""
    if isinstance(start, bytes):
        start = start.decode("latin-1")
    if len(start) >= 4 and start[:2] == "gA" and "I" <= start[2] <= "X":
        return "base64"
    if len(start) >= 4 and start[:3] == "800" and start[3] in "2345":
        return "hex"
    return None


def _decode_pickle_text(text: str, kind: str) -> bytes | None:
    """The bytes of a base64 or hex text, when they are a pickle (None otherwise)."""
    try:
        if kind == "hex":
            data = bytes.fromhex(text)
        elif "-" in text or "_" in text:
            data = base64.urlsafe_b64decode(text)
        else:
            data = base64.b64decode(text)
    except (ValueError, binascii.Error):
        return None
    return data if says_pickle(data) else None


def _read_names(source: _ByteSource) -> tuple[str, str]:
    # Read as the unpickler does (plain UTF-8 lines), not with pickletools' escape decoding.
    return _read_line(source), _read_line(source)


def _read_int(width: int, signed: bool, source: _ByteSource) -> int:
    at = source._at
    end = at + width
    buffer = source._buffer
    if end <= len(buffer):  # hot: most arguments are in the buffer already
        source._at = end
        return int.from_bytes(buffer[at:end], "little", signed=signed)
    data = source.read(width)
    if len(data) != width:
        raise _Malformed("stream ends inside an argument")
    return int.from_bytes(data, "little", signed=signed)


def _skip_float(source: _ByteSource) -> None:
    if len(source.read(8)) != 8:
        raise _Malformed("stream ends inside a float")


# pickletools' readers for fixed-size arguments, replaced by faster equivalents.
_FIXED_READERS: dict[str, Callable[[_ByteSource], Any]] = {
    "uint1": partial(_read_int, 1, False),
    "uint2": partial(_read_int, 2, False),
    "int4": partial(_read_int, 4, True),
    "uint4": partial(_read_int, 4, False),
    "uint8": partial(_read_int, 8, False),
    "float8": _skip_float,
}


def _argument_reader(opcode: pickletools.OpcodeInfo) -> Callable[[_ByteSource], Any] | None:
    if opcode.arg is not None and opcode.arg.name in _FIXED_READERS:
        return _FIXED_READERS[opcode.arg.name]
    if opcode.name in _BYTES_VALUES:
        return partial(_payload_length, *_PAYLOADS[opcode.name])
    if opcode.name in _PAYLOADS:
        return partial(_skip_payload, *_PAYLOADS[opcode.name])
    if opcode.name in _STRINGS:
        return partial(_read_string, *_STRINGS[opcode.name])
    if opcode.name in ("GLOBAL", "INST"):
        return _read_names
    if opcode.arg is None:
        return None
    # The rest are protocol 0's newline-terminated arguments, whose readers only call
    # readline(), which _ByteSource has; typeshed types every reader as taking IO[bytes].
    return opcode.arg.reader  # type: ignore[return-value]  # stub: IO[bytes]; only readline()


_STOP = object()
_MEMOIZE = ord(pickle.MEMOIZE)
_BINPUT = ord(pickle.BINPUT)
_BINGET = ord(pickle.BINGET)


class _Memo:
    """The unpickler's memo, keeping only what can matter again.

    Picklers store keys 0, 1, 2... in order: each takes one byte in ``_tags``, which says which
    of a few shared values it holds (None, booleans, "not a string", "could be anything"), or 0
    when the value itself is kept in ``_values``. Only values that can name a global or describe
    an array are kept: short strings, ints, globals and ``numpy.dtype`` instances. Containers are
    kept as "not a string" (no opcode reads an item back out of one without a call), other call
    results as "could be anything". Keys out of order go to ``_sparse`` with their values.
    """

    __slots__ = ("_sparse", "_tags", "_values")

    def __init__(self) -> None:
        self._tags = bytearray()
        self._values: dict[int, object] = {}
        self._sparse: dict[int, object] = {}

    def __len__(self) -> int:
        return len(self._tags) + len(self._sparse)

    def copy(self) -> _Memo:
        """An independent copy."""
        twin = _Memo()
        twin._tags = bytearray(self._tags)
        twin._values = dict(self._values)
        twin._sparse = dict(self._sparse)
        return twin

    def append(self, value: object) -> None:
        """Store ``value`` under the next key (MEMOIZE)."""
        if self._sparse:
            self.put(len(self), value)
            return
        # Containers first: the commonest memoized values of opcode-dense pickles.
        tag = 4 if type(value) in _CONTAINERS else _memo_tag(value)
        if not tag:
            self._values[len(self._tags)] = value
        self._tags.append(tag)

    def put(self, key: int, value: object) -> None:
        """Store ``value`` (or its tag) under ``key``."""
        tag = _memo_tag(value)
        tags = self._tags
        if key == len(tags) and key not in self._sparse:  # the next key: picklers' order
            tags.append(tag)
            if not tag:
                self._values[key] = value
        elif 0 <= key < len(tags):
            tags[key] = tag
            if tag:
                self._values.pop(key, None)
            else:
                self._values[key] = value
        else:
            self._sparse[key] = _TAG_VALUES[tag] if tag else value

    def get(self, key: int) -> object:
        """The value under ``key`` (or what stands for it).

        Raises:
            KeyError: nothing was stored under ``key``.
        """
        if 0 <= key < len(self._tags):
            tag = self._tags[key]
            return _TAG_VALUES[tag] if tag else self._values[key]
        return self._sparse[key]


class _Machine:
    """Follows one pickle's opcodes on a symbolic stack and memo, reporting dangerous globals.

    Mirrors the unpickler's stack discipline (a MARK starts a new stack) so that what an opcode
    pops is exactly what the unpickler would pop; only strings, small ints and containers,
    globals and call results are modelled.
    """

    def __init__(
        self, source: _ByteSource, add: _Report, *, shadow: bool = False, depth: int = 0
    ) -> None:
        self.position = source.position
        self.opcodes = 0
        self._source = source
        self._add = add
        # How many pickles this one is nested in (bytes or encoded text of an outer pickle).
        self._depth = depth
        # A shadow machine reads bytes that the joblib loader treats as array data; it only looks
        # for globals, and leaves the containers it shares with the main machine alone.
        self._shadow = shadow
        self._stack: list[object] = []
        self._metastack: list[list[object]] = []
        self._memo = _Memo()
        self._memo_shared = False
        self._proto = 0
        # Globals named but not yet called: reported once something calls or a STOP completes
        # the pickle, so bytes that only start like opcodes (text) give no findings.
        self._pending: list[tuple[int, str, Severity, str]] = []
        self._frame_end: int | None = None

    def flush(self, *, dangerous_only: bool = False) -> None:
        """Report the globals named so far: the unpickler would have imported them.

        Args:
            dangerous_only: report only deny-listed ones (importing a module can run code of
                its own), and drop the others (bytes that only started like opcodes).
        """
        for finding in self._pending:
            if not dangerous_only or finding[2] == Severity.DANGEROUS:
                self._add(*finding)
        self._pending.clear()

    def run(self) -> bool:
        """Read opcodes up to and including STOP.

        Returns:
            True after a STOP; False when the stream ended cleanly before any opcode.

        Raises:
            _Malformed: The bytes stop being a valid pickle.
        """
        source = self._source
        while True:
            # The opcode byte is taken straight from the source's buffer: this loop is hot.
            at = source._at
            buffer = source._buffer
            size = len(buffer)
            if at < size:
                self.position = source._base + at
                code = buffer[at]
                source._at = at + 1
                # The memo's opcodes with no argument or a one-byte one, the commonest of
                # protocols 4 and 5 (MEMOIZE) and of 1-3 (BINPUT, BINGET), are handled inline.
                if code == _MEMOIZE and self._stack and not self._memo_shared:
                    self._memo.append(self._stack[-1])
                    end = at + 1
                elif code == _BINPUT and self._stack and not self._memo_shared and at + 1 < size:
                    self._memo.put(buffer[at + 1], self._stack[-1])
                    end = source._at = at + 2
                elif code == _BINGET and at + 1 < size:
                    self._get(buffer[at + 1])
                    end = source._at = at + 2
                else:
                    end = 0
                if end:
                    self.opcodes += 1
                    if self._frame_end is not None and source._base + end >= self._frame_end:
                        self._leave_frame()
                    continue
            else:
                self.position = source.position
                data = source.read(1)
                if not data:
                    if self.opcodes == 0:
                        return False
                    raise _Malformed("stream ends before STOP")
                code = data[0]
            entry = _DISPATCH[code]
            if entry is None:
                raise _Malformed(f"unknown opcode {bytes([code])!r}")
            name, reader, handler = entry
            argument = None
            if reader is not None:
                try:
                    argument = reader(source)
                except ValueError as exc:
                    raise _Malformed(f"bad {name} argument: {exc}") from exc
            stopped = handler(self, argument) is _STOP
            self.opcodes += 1
            if self._frame_end is not None and source._base + source._at >= self._frame_end:
                self._leave_frame()
            if stopped:
                return True

    def _leave_frame(self) -> None:
        assert self._frame_end is not None
        end = self._source.position
        if end > self._frame_end:
            self._add(
                self.position,
                "FRAME",
                Severity.MALFORMED,
                f"opcode runs {end - self._frame_end} bytes past the end of its frame; "
                "CPython's unpickler reads on and runs what follows",
            )
        self._frame_end = None

    def _push(self, value: object) -> None:
        self._stack.append(value)

    def _pop(self) -> object:
        try:
            return self._stack.pop()
        except IndexError:
            raise _Malformed("pop from an empty stack") from None

    def _top(self) -> object:
        try:
            return self._stack[-1]
        except IndexError:
            raise _Malformed("empty stack") from None

    def _pop_mark(self) -> list[object]:
        if not self._metastack:
            raise _Malformed("no MARK on the stack")
        items = self._stack
        self._stack = self._metastack.pop()
        return items

    def _global(self, module: object, name: object) -> object:
        if not isinstance(module, str) or not isinstance(name, str):
            if _never_string(module) or _never_string(name):
                raise _Malformed("STACK_GLOBAL operands are not strings")
            if self._shadow:
                # A genuine joblib object array is a nested pickle whose memo lookups land on
                # the outer pickle's values here; string-valued globals are caught by name.
                raise _Malformed("STACK_GLOBAL operand is not a string")
            shown = f"{_shown(module)}.{_shown(name)}"
            self._pending.append(
                (
                    self.position,
                    shown,
                    Severity.DANGEROUS,
                    "global whose name is computed at load time, cannot be checked",
                )
            )
            return _UNKNOWN
        if not _is_dotted_name(module):
            # No module has that name: the unpickler's import fails and nothing runs.
            raise _Malformed(f"no module can be named {module[:40]!r}")
        verdict = classify_global(module, name)
        mapped = _python2_mapping(module, name) if self._proto < 3 else None
        if mapped is not None:
            # The unpickler imports the mapped name; the raw one may name the danger better.
            mapped_verdict = classify_global(*mapped)
            if verdict is None or verdict[0] != Severity.DANGEROUS:
                verdict = mapped_verdict
        if verdict is not None:
            self._pending.append((self.position, f"{module}.{name}", *verdict))
        return _Global(module, name)

    # Opcode handlers, one per opcode name (see _HANDLERS).

    def _constant(self, value: object) -> None:
        self._stack.append(value)

    def _unknown(self, _: object) -> None:
        self._push(_UNKNOWN)

    def _extension(self, code: int) -> None:
        # copyreg's extension registry maps the code to a global at load time: whatever a
        # library in the loading process registered. No writer of models uses it.
        self._pending.append(
            (
                self.position,
                f"extension code {code}",
                Severity.UNKNOWN,
                "global taken from copyreg's extension registry at load time",
            )
        )
        self._push(_UNKNOWN)

    def _not_string(self, _: object) -> None:
        self._push(_NOT_STRING)

    def _bytes_value(self, length: int) -> None:
        """A bytes value: skipped unread, unless it starts like a pickle (then scanned)."""
        source = self._source
        if (
            length >= 4
            and self._depth < _MAX_NESTED_DEPTH
            and not self._shadow
            and says_pickle(source.peek(3))
        ):
            self._scan_nested_bytes(length)
        else:
            source.skip(length)
        self._stack.append(_NOT_STRING)

    def _text(self, value: object) -> None:
        """A text value, scanned as a nested pickle when it is one written as base64 or hex."""
        if type(value) is _LongText:
            self._scan_encoded(value)
            value = _UNKNOWN
        elif type(value) is str and value[:1] in ("g", "8"):
            self._scan_encoded(value)
        self._stack.append(value)

    def _nested_report(self, where: str) -> _Report:
        """Reports of a nested pickle: its globals, said to be nested; no ``malformed`` (bytes
        that only start like a pickle are data)."""

        def report(offset: int, construct: str, severity: Severity, reason: str) -> None:
            if severity != Severity.MALFORMED:
                self._add(offset, construct, severity, f"{where}: {reason}")

        return report

    def _scan_nested(self, source: _ByteSource, where: str) -> None:
        nested = _Machine(source, self._nested_report(where), depth=self._depth + 1)
        try:
            nested.run()
        except _Malformed:
            nested.flush(dangerous_only=True)

    def _scan_nested_bytes(self, length: int) -> None:
        source = self._source
        start = source.position
        end = start + length
        if source.size is not None and end > source.size:
            raise _Malformed(f"{length} bytes announced, {source.size - start} remain")
        view = _ByteSource(
            _Slice(source, length), start=start, size=end, reopen=None, errors=source.errors
        )
        self._scan_nested(view, f"in a pickle nested in a bytes value at @{start}")
        source.skip(end - source.position)

    def _scan_encoded(self, text: str) -> None:
        kind = _encoded_pickle_kind(text[:4])
        if kind is None or self._depth >= _MAX_NESTED_DEPTH or self._shadow:
            return
        data = _decode_pickle_text(text, kind)
        if data is None:
            return
        view = _ByteSource(io.BytesIO(data), start=self.position, size=None, reopen=None)
        self._scan_nested(view, f"in a pickle written as {kind} text at @{self.position}")

    def _none(self, _: object) -> None:
        self._push(None)

    def _true(self, _: object) -> None:
        self._push(True)

    def _false(self, _: object) -> None:
        self._push(False)

    def _readonly_buffer(self, _: object) -> None:
        self._top()

    def _binpersid(self, _: object) -> None:
        self._pop()
        self._push(_UNKNOWN)

    def _empty_list(self, _: object) -> None:
        self._push([])

    def _empty_dict(self, _: object) -> None:
        self._push({})

    def _empty_tuple(self, _: object) -> None:
        self._push(())

    def _list(self, _: object) -> None:
        self._push(self._pop_mark()[:_MAX_CONTAINER])

    def _tuple(self, _: object) -> None:
        self._push(tuple(self._pop_mark()))

    def _tuple_n(self, _: object, *, count: int) -> None:
        if len(self._stack) < count:
            raise _Malformed("tuple from too few items")
        items = tuple(self._stack[-count:])
        del self._stack[-count:]
        self._push(items)

    def _dict(self, _: object) -> None:
        items = self._pop_mark()
        if len(items) % 2:
            raise _Malformed("odd number of dict items")
        result: dict[object, object] = {}
        _set_items(result, items)
        self._push(result)

    def _append(self, _: object) -> None:
        value = self._pop()
        target = self._top()
        if not self._shadow and isinstance(target, list) and len(target) < _MAX_CONTAINER:
            target.append(value)

    def _appends(self, _: object) -> None:
        items = self._pop_mark()
        target = self._top()
        if not self._shadow and isinstance(target, list):
            target.extend(items[: max(0, _MAX_CONTAINER - len(target))])

    def _setitem(self, _: object) -> None:
        value = self._pop()
        key = self._pop()
        target = self._top()
        if not self._shadow and isinstance(target, dict):
            _set_items(target, [key, value])

    def _setitems(self, _: object) -> None:
        items = self._pop_mark()
        target = self._top()
        if len(items) % 2:
            raise _Malformed("odd number of dict items")
        if not self._shadow and isinstance(target, dict):
            _set_items(target, items)

    def _additems(self, _: object) -> None:
        self._pop_mark()
        self._top()

    def _frozenset(self, _: object) -> None:
        self._pop_mark()
        self._push(_NOT_STRING)

    def _pop_op(self, _: object) -> None:
        if self._stack:
            self._stack.pop()
        else:
            self._pop_mark()

    def _pop_mark_op(self, _: object) -> None:
        self._pop_mark()

    def _dup(self, _: object) -> None:
        self._push(self._top())

    def _mark(self, _: object) -> None:
        self._metastack.append(self._stack)
        self._stack = []

    def _put(self, index: int) -> None:
        if index < 0:
            raise _Malformed("negative memo index")
        self._own_memo().put(index, self._top())

    def _memoize(self, _: object) -> None:
        self._own_memo().append(self._top())

    def _own_memo(self) -> _Memo:
        if self._memo_shared:
            # Copied on the first write only: most shadow scans stop before storing anything.
            self._memo = self._memo.copy()
            self._memo_shared = False
        return self._memo

    def _get(self, index: int) -> None:
        try:
            self._push(self._memo.get(index))
        except KeyError:
            raise _Malformed(f"memo index {index!r} never stored") from None

    def _global_op(self, names: tuple[str, str]) -> None:
        self._push(self._global(*names))

    def _stack_global(self, _: object) -> None:
        name = self._pop()
        module = self._pop()
        self._push(self._global(module, name))

    def _inst(self, names: tuple[str, str]) -> None:
        factory = self._global(*names)
        args = tuple(self._pop_mark())  # no MARK: the unpickler fails before the call
        self.flush()
        self._push(_Instance(factory, args))

    def _obj(self, _: object) -> None:
        items = self._pop_mark()
        if not items:
            raise _Malformed("OBJ without a class")
        self.flush()
        self._push(_Instance(items[0], tuple(items[1:])))

    def _reduce(self, _: object) -> None:
        args = self._pop()
        factory = self._pop()
        self.flush()
        self._push(_Instance(factory, args))

    def _newobj_ex(self, _: object) -> None:
        self._pop()
        self._reduce(None)

    def _build(self, _: object) -> None:
        state = self._pop()
        instance = self._top()
        self.flush()
        if self._shadow or not isinstance(instance, _Instance):
            return
        instance.state = state
        layout = _joblib_array_layout(instance)
        if layout is None:
            return
        if self._frame_end is not None and self._source.position >= self._frame_end:
            # joblib ends the frame before an array's bytes, which are no opcodes of it.
            self._leave_frame()
        self._scan_as_plain_pickle()
        self._stack[-1] = _NOT_STRING
        if layout.nested_pickle:
            if not _Machine(self._source, self._add).run():
                raise _Malformed("stream ends before a joblib object array")
            return
        if layout.aligned:
            padding = self._source.read(1)
            if not padding:
                raise _Malformed("stream ends before a joblib array")
            self._source.skip(padding[0])
        self._source.skip(layout.nbytes)

    def _scan_as_plain_pickle(self) -> None:
        """Read what follows a joblib array wrapper as pickle opcodes, as ``pickle.load`` would.

        joblib reads these bytes as array data, but ``pickle.load`` (given a forged wrapper)
        runs them as opcodes, so they are also scanned that way, by a shadow machine that starts
        from a copy of this one's state. Real array data stops being a valid pickle within a few
        bytes, so the shadow reads from a window of the next bytes and opens a second reader of
        the stream only when it gets past it.
        """
        source = self._source
        window = source.peek(_SHADOW_WINDOW)
        with _ShadowStream(window, start=source.position, reopen=source.reopen) as stream:
            view = _ByteSource(
                stream, start=source.position, size=source.size, reopen=None, errors=source.errors
            )
            shadow = _Machine(view, self._add, shadow=True)
            shadow._stack = list(self._stack)
            shadow._metastack = [list(stack) for stack in self._metastack]
            shadow._memo = self._memo
            shadow._memo_shared = True
            shadow._proto = self._proto
            shadow.opcodes = 1
            try:
                while shadow.run():
                    shadow = _Machine(view, self._add, shadow=True)
            except _Malformed:
                pass

    def _proto_op(self, version: int) -> None:
        self._proto = version

    def _frame(self, length: int) -> None:
        here = self._source.position
        if self._frame_end is not None and self.position < self._frame_end:
            self._add(
                self.position,
                "FRAME",
                Severity.MALFORMED,
                "a FRAME starts inside the previous frame",
            )
        size = self._source.size
        if size is not None and here + length > size:
            # CPython's unpickler fails here; the scan goes on to name what follows. Only a
            # stream that announced a pickle (PROTO 2-5) is malformed for it: raw bytes that
            # start with 0x95 (one tensor storage in 256) are not a pickle at all.
            if self._proto >= 2:
                self._add(
                    self.position,
                    "FRAME",
                    Severity.MALFORMED,
                    f"FRAME of {length} bytes where {size - here} remain",
                )
            self._frame_end = None
            return
        self._frame_end = here + length if length else None

    def _stop(self, _: object) -> object:
        self._pop()
        self.flush()
        return _STOP


_CONTAINERS = frozenset({tuple, list, dict})
# What a memo tag stands for; tag 0 means the value is kept.
_TAG_VALUES: tuple[object, ...] = (None, None, True, False, _NOT_STRING, _UNKNOWN)


def _memo_tag(value: object) -> int:
    if isinstance(value, str):
        # Only a name can feed STACK_GLOBAL usefully; other text stands as "could be anything".
        return 0 if len(value) <= _MAX_MEMO_STRING and _is_dotted_name(value) else 5
    if value is _NOT_STRING or isinstance(value, (tuple, list, dict)):
        return 4
    if value is None:
        return 1
    if value is True:
        return 2
    if value is False:
        return 3
    if value is _UNKNOWN:
        return 5
    if isinstance(value, _Instance):
        if isinstance(value.factory, _Global) and value.factory.name == "dtype":
            return 0
        return 4 if _never_string(value) else 5
    return 0  # ints and globals


def _is_dotted_name(value: str) -> bool:
    return all(map(str.isidentifier, value.split(".")))


def _set_items(target: dict[object, object], items: list[object]) -> None:
    for index in range(0, len(items) - 1, 2):
        key = items[index]
        if isinstance(key, (str, int)) and len(target) < _MAX_CONTAINER:
            target[key] = items[index + 1]


_HANDLERS: dict[str, Callable[[_Machine, Any], object]] = {
    **dict.fromkeys(["INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1"], _Machine._constant),
    **dict.fromkeys(["STRING", "UNICODE", *_STRINGS], _Machine._text),
    **dict.fromkeys(_BYTES_VALUES, _Machine._bytes_value),
    **dict.fromkeys(
        ["LONG4", "FLOAT", "BINFLOAT", "NEXT_BUFFER", "EMPTY_SET"], _Machine._not_string
    ),
    "PERSID": _Machine._unknown,
    **dict.fromkeys(["EXT1", "EXT2", "EXT4"], _Machine._extension),
    "NONE": _Machine._none,
    "NEWTRUE": _Machine._true,
    "NEWFALSE": _Machine._false,
    "READONLY_BUFFER": _Machine._readonly_buffer,
    "BINPERSID": _Machine._binpersid,
    "EMPTY_LIST": _Machine._empty_list,
    "EMPTY_DICT": _Machine._empty_dict,
    "EMPTY_TUPLE": _Machine._empty_tuple,
    "LIST": _Machine._list,
    "TUPLE": _Machine._tuple,
    "TUPLE1": partial(_Machine._tuple_n, count=1),
    "TUPLE2": partial(_Machine._tuple_n, count=2),
    "TUPLE3": partial(_Machine._tuple_n, count=3),
    "DICT": _Machine._dict,
    "APPEND": _Machine._append,
    "APPENDS": _Machine._appends,
    "SETITEM": _Machine._setitem,
    "SETITEMS": _Machine._setitems,
    "ADDITEMS": _Machine._additems,
    "FROZENSET": _Machine._frozenset,
    "POP": _Machine._pop_op,
    "POP_MARK": _Machine._pop_mark_op,
    "DUP": _Machine._dup,
    "MARK": _Machine._mark,
    "PUT": _Machine._put,
    "BINPUT": _Machine._put,
    "LONG_BINPUT": _Machine._put,
    "MEMOIZE": _Machine._memoize,
    "GET": _Machine._get,
    "BINGET": _Machine._get,
    "LONG_BINGET": _Machine._get,
    "GLOBAL": _Machine._global_op,
    "STACK_GLOBAL": _Machine._stack_global,
    "INST": _Machine._inst,
    "OBJ": _Machine._obj,
    "REDUCE": _Machine._reduce,
    "NEWOBJ": _Machine._reduce,
    "NEWOBJ_EX": _Machine._newobj_ex,
    "BUILD": _Machine._build,
    "PROTO": _Machine._proto_op,
    "FRAME": _Machine._frame,
    "STOP": _Machine._stop,
}
assert set(_HANDLERS) == {op.name for op in pickletools.opcodes}, "unhandled pickle opcode"

_Entry = tuple[str, Callable[[_ByteSource], Any] | None, Callable[..., object]]


def _dispatch_table() -> list[_Entry | None]:
    """Indexed by opcode byte: (name, argument reader, handler); None for a byte that is not one."""
    table: list[_Entry | None] = [None] * 256
    for opcode in pickletools.opcodes:
        table[ord(opcode.code)] = (opcode.name, _argument_reader(opcode), _HANDLERS[opcode.name])
    return table


_DISPATCH = _dispatch_table()
# Opcodes that pop from the stack, need a MARK or read the memo: the first opcode of a pickle
# cannot be one (INST can: it names its class before it looks for its MARK).
_CANNOT_START = frozenset(
    b"012abdeghjlopqrstuR.Q" + bytes([0x81, 0x85, 0x86, 0x87, 0x90, 0x91, 0x92, 0x93, 0x94, 0x98])
)


def _never_string(value: object) -> bool:
    """True when the unpickler's exact-``str`` check on STACK_GLOBAL operands must fail."""
    if isinstance(value, _Instance):
        # BUILD with a true state sets attributes or slots, which a plain str does not have.
        return _known_true(value.state)
    return value is None or value is _NOT_STRING or isinstance(value, (int, tuple, list, dict))


def _known_true(state: object) -> bool:
    if isinstance(state, tuple) and len(state) == 2:
        return _known_true(state[0]) or _known_true(state[1])  # (state, slotstate)
    return isinstance(state, (dict, list, tuple, str, int)) and bool(state)


def _shown(value: object) -> str:
    return value if isinstance(value, str) else "?"


def _python2_mapping(module: str, name: str) -> tuple[str, str] | None:
    """The name the unpickler imports for a Python 2 name in protocols 0-2 (fix_imports)."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    if module in _compat_pickle.IMPORT_MAPPING:
        return _compat_pickle.IMPORT_MAPPING[module], name
    return None


def _joblib_array_layout(instance: _Instance) -> _ArrayLayout | None:
    """For a joblib ``NumpyArrayWrapper``, what the joblib loader reads after it."""
    factory = instance.factory
    if (
        isinstance(factory, _Global)
        and factory.name == "_reconstructor"
        and factory.module in ("copyreg", "copy_reg")
        and isinstance(instance.args, tuple)
        and instance.args
    ):
        factory = instance.args[0]  # protocols 0 and 1
    if not (
        isinstance(factory, _Global)
        and factory.name == "NumpyArrayWrapper"
        and factory.module.rpartition(".")[2] == "numpy_pickle"
    ):
        return None
    state = instance.state
    if not isinstance(state, dict):
        raise _Malformed("joblib array wrapper without a state")
    itemsize, has_objects = _dtype_layout(state.get("dtype"))
    if has_objects:
        return _ArrayLayout(nbytes=0, aligned=False, nested_pickle=True)
    shape = state.get("shape")
    if not isinstance(shape, tuple) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        raise _Malformed(f"joblib array wrapper with shape {shape!r}")
    aligned = state.get("numpy_array_alignment_bytes") is not None
    return _ArrayLayout(nbytes=math.prod(shape) * itemsize, aligned=aligned, nested_pickle=False)


def _dtype_layout(dtype: object) -> tuple[int, bool]:
    """Item size and whether it holds Python objects, from a pickled ``numpy.dtype``."""
    if not (
        isinstance(dtype, _Instance)
        and isinstance(dtype.factory, _Global)
        and dtype.factory.name == "dtype"
        and isinstance(dtype.args, tuple)
        and dtype.args
        and isinstance(dtype.args[0], str)
    ):
        raise _Malformed("joblib array wrapper without a readable dtype")
    code = dtype.args[0]
    state = dtype.state if isinstance(dtype.state, tuple) else ()
    # numpy's dtype state: (version, byteorder, subarray, names, fields, elsize, alignment,
    # flags[, metadata]); elsize is -1 for fixed-size types, flag 0x01 means "holds objects".
    elsize = state[5] if len(state) > 7 and isinstance(state[5], int) else -1
    flags = state[7] if len(state) > 7 and isinstance(state[7], int) else 0
    if code.startswith("O") or flags & 0x01:
        return 0, True
    if elsize > 0:
        return elsize, False
    digits = code.lstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    if not digits.isdigit():
        raise _Malformed(f"joblib array with dtype {code!r} of unknown size")
    return int(digits), False


def npy_pickle_offset(stream: BinaryIO) -> int | None:
    """Where the pickle in a ``.npy`` file starts, or None when its data is not pickled.

    A file without the numpy magic is unpickled whole by ``numpy.load(allow_pickle=True)``, so
    its pickle starts at 0. Leaves the stream position anywhere.
    """
    stream.seek(0)
    magic = stream.read(len(_NPY_MAGIC) + 2)
    if not magic.startswith(_NPY_MAGIC):
        return 0 if magic else None
    width = 2 if magic[-2] == 1 else 4
    raw_length = stream.read(width)
    if len(raw_length) != width:
        return None
    length = int.from_bytes(raw_length, "little")
    offset = len(magic) + width + length
    if length > _MAX_NPY_HEADER:
        return offset  # numpy would not read it by default; scan rather than guess
    header = stream.read(length).decode("utf-8" if magic[-2] >= 3 else "latin-1", "replace")
    try:
        fields = ast.literal_eval(header)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return offset
    if isinstance(fields, dict) and not _descr_has_objects(fields.get("descr")):
        return None
    return offset


def _descr_has_objects(descr: object) -> bool:
    if isinstance(descr, str):
        return descr.lstrip("<>|=").startswith("O")
    if isinstance(descr, list):
        return any(
            isinstance(field, tuple) and len(field) >= 2 and _descr_has_objects(field[1])
            for field in descr
        )
    return True  # not a descr numpy writes: do not assume it is safe


class _Slice:
    """The next ``length`` bytes of a source, as a stream: what a nested pickle may read."""

    def __init__(self, source: _ByteSource, length: int) -> None:
        self._source = source
        self._left = length

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes, none past the slice's end."""
        data = self._source.read(min(n, self._left))
        self._left -= len(data)
        return data

    def seek(self, offset: int, whence: int) -> None:
        assert whence == os.SEEK_CUR and 0 <= offset <= self._left
        self._source.skip(offset)
        self._left -= offset


class _ShadowStream:
    """Bytes from an offset of a stream: first a window already read, then a second reader."""

    def __init__(self, window: bytes, *, start: int, reopen: Reopen | None) -> None:
        self._window = window
        self._start = start
        self._offset = 0
        self._reopen = reopen
        self._closing = ExitStack()
        self._tail: BinaryIO | None = None

    def __enter__(self) -> _ShadowStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._closing.close()

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; a read that the window can start is served by it alone."""
        data = self._window[self._offset : self._offset + n]
        if not data and (tail := self._open_tail()) is not None:
            data = tail.read(n)
        self._offset += len(data)
        return data

    def seek(self, offset: int, whence: int) -> None:
        assert whence == os.SEEK_CUR
        self._offset += offset
        if self._tail is not None:
            self._tail.seek(offset, os.SEEK_CUR)

    def _open_tail(self) -> BinaryIO | None:
        if self._tail is None and self._reopen is not None:
            self._tail = self._reopen(self._start + self._offset, self._closing)
        return self._tail
