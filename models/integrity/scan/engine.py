"""The artifact scanner: every file identified by its bytes and scanned as what it is.

A file's name says nothing: its first bytes decide. Containers (zip, tar, 7z, and gzip, bz2, xz,
lzma, zlib, zstd and lz4 streams) are opened recursively and every member is scanned the same
way, whatever it is called, within :class:`Limits` on depth, member count and expanded size (a
bomb is a ``malformed`` finding, never an out-of-memory). A container that a loader would read
but that does not parse cleanly (bad CRC, encryption or unknown flag bits, a local header whose
name differs from the central directory's, overlapping or duplicate members) is ``malformed``:
fail closed. Members are scanned as a loader that ignores CRCs reads them (PyTorch's does), so
a bad CRC cannot hide a payload; the CRC itself is checked for every member that is anything
(a pickle, a container, a known format) and every member up to 1 MiB, not for larger raw bytes
(tensor storages), whose every byte would have to be read. What is not a container is offered
to each format scanner whose ``sniff`` accepts its first bytes (:data:`FORMAT_SCANNERS`: 32 KiB,
read on to 64 KiB when they may be text), and to the pickle scanner when it starts with a
pickle opcode; a pickle is read from those first bytes, and from the stream only past them.
Bytes that no scanner recognises (safetensors weights, raw tensors) give nothing. A stored zip
member is read straight from the archive's bytes, and its CRC checked on the bytes already read
when they are the whole member.

Nothing is extracted to disk except 7z members (py7zr reads whole folders at a time), into a
temporary directory that is removed afterwards; nothing is ever loaded.
"""

from __future__ import annotations

import bz2
import copy

# zipfile decodes a member name without the UTF-8 flag with the cp437 codec, which Python
# imports on first use: loaded with the scanner, it is not paid inside the first scan.
import encodings.cp437  # noqa: F401
import errno
import gzip
import io
import itertools
import lzma
import os
import struct
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from rearguard.models.integrity.scan import (
    chat_template,
    gguf,
    json_document,
    keras,
    onnx,
    savedmodel,
)
from rearguard.models.integrity.scan import pickle as pickle_scan
from rearguard.models.integrity.scan.findings import Finding, Location, Severity

__all__ = [
    "FORMAT_SCANNERS",
    "FormatScanner",
    "Limits",
    "iter_files",
    "scan_file",
]

HEAD_SIZE = 64 * 1024
# The first read of a blob: enough for every binary format's sniff (the HDF5 signature is
# looked for up to offset 32 KiB); text that a JSON or template scanner may want is read on to
# HEAD_SIZE (a JSON head shorter than that is parsed as the whole file).
_BINARY_HEAD_SIZE = 32 * 1024 + 8
_CHUNK = 1024 * 1024
_ARCHIVES_EXTRA = "not scanned: install rearguard[archives]"


class FormatScanner(Protocol):
    """A scanner of one non-pickle format (a module of ``rearguard.models.integrity.scan``)."""

    def sniff(self, head: bytes) -> bool:
        """True when ``head`` (the first 64 KiB of a file or member) is this format."""
        ...

    def scan(self, stream: BinaryIO, *, location: Location) -> list[Finding]:
        """The findings in a seekable binary stream of this format."""
        ...


def _format_scanners() -> tuple[FormatScanner, ...]:
    """The non-pickle format scanners, in the order they are tried; the first whose ``sniff``
    accepts a blob scans it (a file is one of these formats at most).

    JSON comes before chat templates: a tokenizer config holds ``{{`` too, and its templates
    are scanned as the JSON document's fields.
    """
    return (gguf, keras, savedmodel, onnx, json_document, chat_template)


FORMAT_SCANNERS: tuple[FormatScanner, ...] = _format_scanners()


@dataclass(frozen=True)
class Limits:
    """How far the scanner opens containers before it calls a file a bomb.

    Attributes:
        max_depth: containers inside containers (a zip in a tar.gz is depth 3).
        max_members: members of all containers of one file together.
        max_expanded_bytes: bytes read out of all containers of one file together.
    """

    max_depth: int = 8
    max_members: int = 100_000
    max_expanded_bytes: int = 64 * 1024**3


class _LimitExceeded(OSError):
    """A container goes past a :class:`Limits` bound (raised from reads, hence an OSError)."""


@dataclass
class _Budget:
    limits: Limits
    members: int = 0
    expanded: int = 0

    def member(self) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise _LimitExceeded(f"more than {self.limits.max_members} container members")

    def bytes(self, count: int) -> None:
        self.expanded += count
        if self.expanded > self.limits.max_expanded_bytes:
            raise _LimitExceeded(
                f"expands past {self.limits.max_expanded_bytes} bytes (a decompression bomb?)"
            )


@dataclass
class _Blob:
    """Bytes to identify and scan: a file, a member, a decompressed stream."""

    location: Location
    open: Callable[[], BinaryIO]  # a fresh reader at offset 0; the caller closes it
    size: int | None
    depth: int
    # Seeking is cheap (a file, or a member of a tar held in a file): worth looking for a zip
    # directory at the end of bytes that do not start like one.
    random_access: bool = False
    errors: tuple[type[BaseException], ...] = field(default=())
    # Its first bytes (see _read_head), once read: identifying a blob twice reads them once. A
    # zip reads a stored member's ahead, straight from the archive.
    head: bytes | None = None
    # Whether the head is anything a scanner reads (not raw data), once identified.
    recognised: bool | None = None


_DECOMPRESS_ERRORS: tuple[type[BaseException], ...] = (
    EOFError,
    OSError,
    ValueError,
    zlib.error,
    lzma.LZMAError,
    zipfile.BadZipFile,
    tarfile.TarError,
    NotImplementedError,
    RuntimeError,
)


# Reading a zip member: what zipfile raises for a bad CRC, a bad size, an unknown method.
_ZIP_ERRORS = _DECOMPRESS_ERRORS
# Members up to this size, and members that are something (a pickle, a container, a format a
# scanner knows), have their CRC checked (read to the end). The CRC of raw bytes (a tensor's
# storage) would only tell of corruption, at the cost of reading every byte of a checkpoint:
# they are scanned as a loader that ignores CRCs reads them, so a bad CRC hides nothing.
_CRC_ALWAYS_CHECKED = 1024 * 1024


def scan_file(
    path: Path, *, display: str | None = None, limits: Limits | None = None
) -> list[Finding]:
    """Scan one file by its content, opening containers recursively.

    Args:
        path: the file.
        display: the name to report (default: the path as given).
        limits: container limits (default: :class:`Limits`).

    Returns:
        Every finding, in the order met.

    Raises:
        OSError: the file cannot be opened or read.
    """
    size = path.stat().st_size
    blob = _Blob(
        location=Location(display if display is not None else str(path)),
        open=_file_opener(path),
        size=size,
        depth=0,
        random_access=True,
    )
    with path.open("rb"):
        pass  # unreadable files raise here, before anything is reported
    return _scan_blob(blob, _Budget(limits or Limits()))


def _file_opener(path: Path) -> Callable[[], BinaryIO]:
    return lambda: path.open("rb")


def iter_files(root: Path) -> Iterator[Path]:
    """Every regular file under ``root`` (itself when it is a file), sorted, links not followed.

    Raises:
        FileNotFoundError: ``root`` does not exist.
    """
    if root.is_file():
        yield root
        return
    if not root.is_dir():
        raise FileNotFoundError(errno.ENOENT, "no such file or directory", str(root))
    for directory, subdirectories, files in os.walk(root):
        subdirectories.sort()
        for name in sorted(files):
            path = Path(directory, name)
            if path.is_file():
                yield path


def _scan_blob(blob: _Blob, budget: _Budget) -> list[Finding]:
    try:
        head = blob.head
        if head is None or _may_want_more(head):
            with blob.open() as stream:
                head = _read_head(stream)
        blob.head = head
        budget.bytes(0)
        return _dispatch(blob, head, budget)
    except _LimitExceeded as exc:
        return [_malformed(blob.location, "container", str(exc))]
    except blob.errors as exc:
        return [_malformed(blob.location, "stream", f"unreadable: {exc}")]


def _read_head(stream: BinaryIO) -> bytes:
    """The first bytes of a blob, as many as its identification needs (see HEAD_SIZE)."""
    head = stream.read(_BINARY_HEAD_SIZE)
    if _may_want_more(head):
        head += stream.read(HEAD_SIZE - len(head))
    return head


def _may_want_more(head: bytes) -> bool:
    """Whether a first read may be text that a JSON or template scanner reads further."""
    return len(head) == _BINARY_HEAD_SIZE and (
        json_document.starts_like_json(head) or chat_template.has_no_control_bytes(head)
    )


def _dispatch(blob: _Blob, head: bytes, budget: _Budget) -> list[Finding]:
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        blob.recognised = True
        return _scan_zip(blob, budget)
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        blob.recognised = True
        return _scan_7z(blob, budget)
    if _is_tar(head):
        blob.recognised = True
        return _scan_tar(blob, budget)
    findings: list[Finding] = []
    if blob.random_access and _has_zip_directory(blob):
        # Not starting like a zip, but zipfile (and loaders using it) would open it as one.
        findings += _scan_zip(blob, budget)
    compression = _compression(head)
    npy = head.startswith(b"\x93NUMPY")
    if compression is not None:
        findings += _scan_compressed(blob, compression, budget)
    elif npy:
        findings += _scan_npy(blob)
    scanner = _format_of(head)
    if scanner is not None:
        findings += _scan_format(blob, scanner)
    pickle_like = False
    if not npy and pickle_scan.sniff(head):
        scanned = _scan_pickle(blob)
        findings += scanned.findings
        pickle_like = scanned.looks_like_pickle(len(head))
    blob.recognised = compression is not None or npy or scanner is not None or pickle_like
    return findings


def _format_of(head: bytes) -> FormatScanner | None:
    """The first format scanner whose sniff accepts ``head``, if any."""
    for scanner in FORMAT_SCANNERS:
        if scanner.sniff(head):
            return scanner
    return None


def _recognised(blob: _Blob) -> bool:
    """Whether a blob's first bytes are anything a scanner reads (not raw data)."""
    if blob.recognised is not None:
        return blob.recognised
    if blob.head is not None:
        return _recognised_head(blob.head)
    try:
        with blob.open() as stream:
            head = _read_head(stream)
    except blob.errors:
        return True
    return _recognised_head(head)


def _recognised_head(head: bytes) -> bool:
    """Whether a file's first bytes are anything a scanner reads (not raw data)."""
    return (
        head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"7z\xbc\xaf\x27\x1c", b"\x93NUMPY"))
        or _is_tar(head)
        or _compression(head) is not None
        or _format_of(head) is not None
        or pickle_scan.looks_like_pickle(head)
    )


def _malformed(location: Location, construct: str, reason: str) -> Finding:
    return location.finding(construct=construct, severity=Severity.MALFORMED, reason=reason)


def _reopen(blob: _Blob) -> pickle_scan.Reopen:
    def reopen(offset: int, closing: ExitStack) -> BinaryIO:
        stream = closing.enter_context(blob.open())
        _skip(stream, offset)
        return stream

    return reopen


def _skip(stream: BinaryIO, count: int) -> None:
    if stream.seekable():
        stream.seek(count, os.SEEK_CUR)
        return
    while count:
        chunk = stream.read(min(count, _CHUNK))
        if not chunk:
            return
        count -= len(chunk)


def _scan_pickle(blob: _Blob, *, start: int = 0) -> pickle_scan.StreamScan:
    with ExitStack() as closing:
        return pickle_scan.scan(
            _HeadFirst(blob, start, closing),
            location=blob.location,
            size=blob.size,
            start=start,
            reopen=_reopen(blob),
            errors=blob.errors,
        )


class _HeadFirst:
    """A blob read forward from ``start``: from its head while the reads stay in it (most
    pickles end there, and raw data that starts like one stops being one there), from a reader
    opened only when they get past it."""

    def __init__(self, blob: _Blob, start: int, closing: ExitStack) -> None:
        self._blob = blob
        self._head = blob.head or b""
        self._whole = blob.size is not None and len(self._head) >= blob.size
        self._position = start
        self._closing = closing
        self._stream: BinaryIO | None = None

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; a read that the head can start is served by it alone."""
        if self._stream is None:
            if self._position < len(self._head) or self._whole:
                data = self._head[self._position : self._position + n]
                self._position += len(data)
                return data
            self._stream = self._closing.enter_context(self._blob.open())
            _skip(self._stream, self._position)
        data = self._stream.read(n)
        self._position += len(data)
        return data

    def seek(self, offset: int, whence: int) -> None:
        """Forward from the current position (``os.SEEK_CUR``) only."""
        assert whence == os.SEEK_CUR and offset >= 0
        if self._stream is None:
            self._position += offset
        else:
            self._stream.seek(offset, os.SEEK_CUR)
            self._position += offset


def _scan_npy(blob: _Blob) -> list[Finding]:
    with blob.open() as stream:
        start = pickle_scan.npy_pickle_offset(stream)
    return [] if start is None else _scan_pickle(blob, start=start).findings


def _scan_format(blob: _Blob, scanner: FormatScanner) -> list[Finding]:
    with ExitStack() as closing:
        stream = closing.enter_context(blob.open())
        if not stream.seekable():
            stream = _spool(stream, closing)
        return scanner.scan(stream, location=blob.location)


# Zip


# General-purpose flag bits a loader handles: compression options (1, 2), a data descriptor
# (3) and UTF-8 names (11). Encryption (0, 6), patched data (5) and masked headers (13) are not.
_ZIP_KNOWN_FLAGS = 0x2 | 0x4 | 0x8 | 0x800
# Bit 0: the member is encrypted (judged by its bytes: see _encrypted_member).
_ZIP_ENCRYPTED = 0x1
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")


def _has_zip_directory(blob: _Blob) -> bool:
    with blob.open() as stream:
        try:
            return zipfile.is_zipfile(stream)
        except (OSError, ValueError):
            return False


def _random_access(blob: _Blob, closing: ExitStack) -> BinaryIO:
    """A reader of the blob that seeks cheaply anywhere (the file, or a spooled copy)."""
    raw = closing.enter_context(blob.open())
    return raw if blob.random_access else _spool(raw, closing)


def _spool(raw: BinaryIO, closing: ExitStack) -> BinaryIO:
    """A copy of a stream in memory, or on disk past 64 MiB (bounded by the scan's limits)."""
    spool = closing.enter_context(tempfile.SpooledTemporaryFile(max_size=_CHUNK * 64))  # noqa: SIM115
    while chunk := raw.read(_CHUNK):
        spool.write(chunk)
    spool.seek(0)
    return spool  # type: ignore[return-value]  # a binary file; the stub says IO[bytes]


def _scan_zip(blob: _Blob, budget: _Budget) -> list[Finding]:
    with ExitStack() as closing:
        raw = _random_access(blob, closing)
        try:
            archive = zipfile.ZipFile(raw)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            return [_malformed(blob.location, "zip", f"unreadable zip archive: {exc}")]
        with archive:
            read_at = _reader_at(raw)
            findings, data_offsets = _zip_structure(blob.location, archive, read_at)
            declared = sum(info.file_size for info in archive.infolist())
            if declared > budget.limits.max_expanded_bytes - budget.expanded:
                raise _LimitExceeded(f"members declare {declared} bytes (a zip bomb?)")
            for info in archive.infolist():
                if info.is_dir():
                    continue
                budget.member()
                member = blob.location.inside(info.filename)
                if info.flag_bits & _ZIP_ENCRYPTED:
                    findings += _encrypted_member(archive, info, member, blob.depth + 1, budget)
                    continue
                data_offset = data_offsets.get(info.header_offset)
                stored = info.compress_type == zipfile.ZIP_STORED and data_offset is not None
                size = min(info.file_size, info.compress_size)
                blob_of_member = _Blob(
                    location=member,
                    open=(
                        _stored_opener(read_at, data_offset, info, budget)
                        if stored and data_offset is not None
                        else _zip_opener(archive, info, budget)
                    ),
                    size=info.file_size,
                    depth=blob.depth + 1,
                    errors=_ZIP_ERRORS,
                )
                if stored and data_offset is not None:
                    # Its first bytes straight from the archive, with the header's.
                    blob_of_member.head = read_at(data_offset, min(size, _BINARY_HEAD_SIZE))
                    budget.bytes(len(blob_of_member.head))
                findings += _scan_child(blob_of_member, budget)
                head = blob_of_member.head
                if (
                    stored
                    and head is not None
                    and info.file_size == info.compress_size == len(head)
                ):
                    # The whole member was read to identify it: its CRC is checked on that.
                    if zlib.crc32(head) != info.CRC:
                        reason = f"unreadable: Bad CRC-32 for file {info.filename!r}"
                        findings.append(_malformed(member, "zip member", reason))
                elif info.file_size <= _CRC_ALWAYS_CHECKED or _recognised(blob_of_member):
                    findings += _zip_crc(archive, info, member, budget)
    return findings


def _zip_opener(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget
) -> Callable[[], BinaryIO]:
    def open_member() -> BinaryIO:
        stream = archive.open(info)
        # The scan reads as a loader that ignores CRCs would (torch's reader does not check
        # them), so a bad CRC cannot hide a payload; _zip_crc checks it separately.
        stream._expected_crc = None  # type: ignore[attr-defined]  # ZipExtFile private, no stub
        return _Counted(stream, budget)

    return open_member


def _stored_opener(
    read_at: _ReadAt, data_offset: int, info: zipfile.ZipInfo, budget: _Budget
) -> Callable[[], BinaryIO]:
    """A stored (uncompressed) member read straight from the archive's bytes, as torch's
    reader reads its records: no decompressor, no CRC (see :func:`_zip_crc`)."""
    size = min(info.file_size, info.compress_size)
    return lambda: _StoredMember(read_at, data_offset, size, budget)


def _encrypted_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, member: Location, depth: int, budget: _Budget
) -> list[Finding]:
    """A member marked encrypted, read as a loader that ignores the mark would (torch's does).

    Real ciphertext reads as nothing a loader could run (it needs the password first): no
    finding. Bytes a scanner recognises behind the mark are a member that one reader refuses
    and another reads: malformed, and scanned as what they are.
    """
    unmarked = copy.copy(info)
    unmarked.flag_bits &= ~_ZIP_ENCRYPTED
    child = _Blob(
        location=member,
        open=_zip_opener(archive, unmarked, budget),
        size=info.file_size,
        depth=depth,
        errors=_ZIP_ERRORS,
    )
    try:
        with child.open() as stream:
            head = _read_head(stream)
    except _ZIP_ERRORS:
        return []  # ciphertext that does not even decompress
    # Ciphertext starts like a protocol 0 pickle about one time in fourteen: only bytes that
    # say what they are (a PROTO, a magic number) or whose scan finds something count.
    found = _scan_child(child, budget) if _recognised_head(head) else []
    if not found and not _announced(head):
        return []
    reason = "marked encrypted, but its bytes read without a password"
    return [_malformed(member, "zip member", reason), *found]


def _announced(head: bytes) -> bool:
    """Whether bytes say what they are: a pickle's PROTO, or a format's magic number."""
    return pickle_scan.says_pickle(head) or (
        _recognised_head(head) and not pickle_scan.looks_like_pickle(head)
    )


def _zip_crc(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, member: Location, budget: _Budget
) -> list[Finding]:
    """Read the member to its end, which is when zipfile checks its CRC and size."""
    try:
        with _Counted(archive.open(info), budget) as stream:
            while stream.read(_CHUNK):
                pass
    except _LimitExceeded:
        raise
    except _ZIP_ERRORS as exc:
        return [_malformed(member, "zip member", f"unreadable: {exc}")]
    return []


def _zip_structure(
    location: Location, archive: zipfile.ZipFile, read_at: _ReadAt
) -> tuple[list[Finding], dict[int, int]]:
    """Defects of the archive as a whole: what one reader and another would read differently.

    Returns:
        The findings, and where each member's data starts (after its local header), by the
        offset of that header, for members whose local header is there.
    """
    defects: list[tuple[str, str]] = []  # (member, reason)
    data_offsets: dict[int, int] = {}
    spans: list[tuple[int, int, str]] = []
    names: set[str] = set()
    for info in archive.infolist():
        name = info.filename
        if name in names:
            defects.append((name, "duplicate member name"))
        names.add(name)
        if info.flag_bits & ~(_ZIP_KNOWN_FLAGS | _ZIP_ENCRYPTED):
            defects.append((name, f"unexpected flag bits {info.flag_bits:#x}"))
        central_name = _encoded_name(info)
        # The header and the name it should hold, in one read.
        data = read_at(info.header_offset, _LOCAL_HEADER.size + len(central_name))
        header = data[: _LOCAL_HEADER.size]
        if len(header) != _LOCAL_HEADER.size or not header.startswith(b"PK\x03\x04"):
            defects.append((name, "no local header where announced"))
            continue
        fields = _LOCAL_HEADER.unpack(header)
        local_name = data[_LOCAL_HEADER.size :]
        if fields[9] != len(central_name):
            local_name = read_at(info.header_offset + _LOCAL_HEADER.size, fields[9])
        if local_name != central_name:
            shown = local_name.decode("utf-8", "replace")
            defects.append((name, f"local header names it {shown!r}"))
        end = info.header_offset + _LOCAL_HEADER.size + fields[9] + fields[10]
        data_offsets[info.header_offset] = end
        spans.append((info.header_offset, end + info.compress_size, name))
    spans.sort()
    for (_, end, name), (start, _, other) in itertools.pairwise(spans):
        if start < end:
            defects.append((other, f"overlaps member {name!r}"))
    findings = [
        _malformed(location.inside(member), "zip member", reason) for member, reason in defects
    ]
    return findings, data_offsets


_ReadAt = Callable[[int, int], bytes]


def _encoded_name(info: zipfile.ZipInfo) -> bytes:
    """A member's name as its headers hold it (UTF-8 when flagged, else code page 437, which
    is ASCII for ASCII names: the common case, without Python's slower cp437 codec)."""
    if info.flag_bits & 0x800:
        return info.orig_filename.encode("utf-8")
    if info.orig_filename.isascii():
        return info.orig_filename.encode("ascii")
    return info.orig_filename.encode("cp437")


def _reader_at(raw: BinaryIO) -> _ReadAt:
    """Reads up to ``size`` bytes at ``offset`` of ``raw``: one ``pread`` for a file (its
    buffer and position untouched), else a seek and a read."""
    if isinstance(raw, io.BufferedReader):
        descriptor = raw.fileno()
        return lambda offset, size: os.pread(descriptor, size, offset)

    def seek_and_read(offset: int, size: int) -> bytes:
        raw.seek(offset)
        return raw.read(size)

    return seek_and_read


# Tar


def _is_tar(head: bytes) -> bool:
    if len(head) < 512:
        return False
    if head[257:262] == b"ustar":
        return True
    # Version 7 tar has no magic: a header whose checksum matches.
    try:
        recorded = int(head[148:156].rstrip(b" \x00").decode("ascii") or "-1", 8)
    except ValueError:
        return False
    computed = sum(head[:148]) + 8 * 32 + sum(head[156:512])
    return recorded == computed and head[:1] not in (b"", b"\x00")


def _scan_tar(blob: _Blob, budget: _Budget) -> list[Finding]:
    findings: list[Finding] = []
    with ExitStack() as closing:
        raw = _random_access(blob, closing)
        try:
            archive = closing.enter_context(tarfile.open(fileobj=raw, mode="r:"))
            for info in archive:
                if not info.isreg():
                    continue
                budget.member()
                budget.bytes(0)
                if info.size > budget.limits.max_expanded_bytes:
                    raise _LimitExceeded(f"member {info.name!r} of {info.size} bytes")
                findings += _scan_child(
                    _Blob(
                        location=blob.location.inside(info.name),
                        open=_tar_opener(archive, info, budget),
                        size=info.size,
                        depth=blob.depth + 1,
                        random_access=True,
                        errors=_DECOMPRESS_ERRORS,
                    ),
                    budget,
                )
        except tarfile.TarError as exc:
            findings.append(_malformed(blob.location, "tar", f"unreadable tar archive: {exc}"))
    return findings


def _tar_opener(
    archive: tarfile.TarFile, info: tarfile.TarInfo, budget: _Budget
) -> Callable[[], BinaryIO]:
    def open_member() -> BinaryIO:
        stream = archive.extractfile(info)
        assert stream is not None  # a regular file
        return _Counted(stream, budget)

    return open_member


# 7z


def _scan_7z(blob: _Blob, budget: _Budget) -> list[Finding]:
    try:
        import py7zr  # lazy: optional extra rearguard[archives]
    except ImportError:
        return [
            blob.location.finding(
                construct="7z", severity=Severity.NOT_SCANNED, reason=_ARCHIVES_EXTRA
            )
        ]
    errors: tuple[type[BaseException], ...] = (
        py7zr.exceptions.ArchiveError,
        py7zr.exceptions.PasswordRequired,
        *_DECOMPRESS_ERRORS,
    )
    findings: list[Finding] = []
    with ExitStack() as closing:
        raw = _random_access(blob, closing)
        try:
            archive = closing.enter_context(py7zr.SevenZipFile(raw, mode="r"))
            if archive.needs_password():
                return [_malformed(blob.location, "7z", "encrypted archive: cannot be scanned")]
            entries = [entry for entry in archive.list() if not entry.is_directory]
            for entry in entries:
                budget.member()
                budget.bytes(entry.uncompressed or 0)
            target = Path(closing.enter_context(tempfile.TemporaryDirectory()))
            # py7zr refuses absolute paths and paths out of the target (AbsolutePathError).
            archive.extractall(path=target)  # noqa: S202
        except errors as exc:
            if isinstance(exc, _LimitExceeded):
                raise
            return [_malformed(blob.location, "7z", f"unreadable 7z archive: {exc}")]
        for path in iter_files(target):
            findings += _scan_child(
                _Blob(
                    location=blob.location.inside(path.relative_to(target).as_posix()),
                    open=_file_opener(path),
                    size=path.stat().st_size,
                    depth=blob.depth + 1,
                    random_access=True,
                ),
                budget,
            )
    return findings


# Compressed streams


@dataclass(frozen=True)
class _Compression:
    name: str
    open: Callable[[BinaryIO], _Readable] | None  # None: the library is not installed


def _compression(head: bytes) -> _Compression | None:
    """The compression whose magic number starts ``head``, if any."""
    if head[:1] not in _COMPRESSION_FIRST_BYTES:
        return None
    if head.startswith(b"\x1f\x8b\x08"):
        return _Compression("gzip", lambda raw: gzip.GzipFile(fileobj=raw, mode="rb"))
    if head[:3] == b"BZh" and head[3:4].isdigit() and head[4:10] == b"1AY&SY":
        return _Compression("bz2", lambda raw: bz2.BZ2File(raw, mode="rb"))
    if head.startswith(b"\xfd7zXZ\x00"):
        return _Compression("xz", lambda raw: lzma.LZMAFile(raw, mode="rb", format=lzma.FORMAT_XZ))
    if head.startswith(b"]\x00\x00") and len(head) >= 13:
        return _Compression(
            "lzma", lambda raw: lzma.LZMAFile(raw, mode="rb", format=lzma.FORMAT_ALONE)
        )
    if len(head) >= 2 and head[0] == 0x78 and head[1] in (0x01, 0x5E, 0x9C, 0xDA):
        return _Compression("zlib", lambda raw: io.BufferedReader(_ZlibReader(raw), _CHUNK))
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return _Compression("zstd", _zstd_opener())
    if head.startswith(b"\x04\x22\x4d\x18"):
        return _Compression("lz4", _lz4_opener())
    return None


# The first byte of each magic number _compression knows.
_COMPRESSION_FIRST_BYTES = frozenset([b"\x1f", b"B", b"\xfd", b"]", b"\x78", b"\x28", b"\x04"])


def _zstd_opener() -> Callable[[BinaryIO], _Readable] | None:
    try:
        import zstandard  # lazy: optional extra rearguard[archives]
    except ImportError:
        return None
    decompressor = zstandard.ZstdDecompressor()
    return lambda raw: decompressor.stream_reader(raw, read_across_frames=True)


def _lz4_opener() -> Callable[[BinaryIO], _Readable] | None:
    try:
        import lz4.frame  # lazy: optional extra rearguard[archives]
    except ImportError:
        return None
    return lambda raw: lz4.frame.LZ4FrameFile(raw, mode="rb")


def _scan_compressed(blob: _Blob, compression: _Compression, budget: _Budget) -> list[Finding]:
    opener = compression.open
    if opener is None:
        return [
            blob.location.finding(
                construct=compression.name,
                severity=Severity.NOT_SCANNED,
                reason=_ARCHIVES_EXTRA,
            )
        ]

    def open_decompressed() -> BinaryIO:
        raw = blob.open()
        try:
            return _Counted(opener(raw), budget, closes=raw)
        except BaseException:
            raw.close()
            raise

    try:
        import zstandard  # lazy: optional extra rearguard[archives]

        errors: tuple[type[BaseException], ...] = (*_DECOMPRESS_ERRORS, zstandard.ZstdError)
    except ImportError:
        errors = _DECOMPRESS_ERRORS
    try:
        with open_decompressed() as stream:
            if not stream.read(1):
                return []  # decompresses to nothing
    except errors:
        # Not one byte comes out: raw data that starts like a magic number (one tensor
        # storage in 16,384 starts like zlib), nothing a loader could run.
        return []
    child = _Blob(
        location=blob.location,
        open=open_decompressed,
        size=None,
        depth=blob.depth + 1,
        errors=errors,
    )
    findings = _scan_child(child, budget)
    if any(f.severity == Severity.MALFORMED for f in findings):
        return findings
    # Decompress to the end, as a loader would: a bomb or a corrupt tail is a finding even
    # when the start is nothing the scanners recognise.
    try:
        with open_decompressed() as stream:
            while stream.read(_CHUNK):
                pass
    except _LimitExceeded as exc:
        findings.append(_malformed(blob.location, compression.name, str(exc)))
    except errors as exc:
        findings.append(_malformed(blob.location, compression.name, f"unreadable: {exc}"))
    return findings


def _scan_child(blob: _Blob, budget: _Budget) -> list[Finding]:
    if blob.depth > budget.limits.max_depth:
        return [
            _malformed(blob.location, "container", f"nested deeper than {budget.limits.max_depth}")
        ]
    return _scan_blob(blob, budget)


class _Readable(Protocol):
    """What :class:`_Counted` reads: a member of a container, or a decompressor over one."""

    def read(self, size: int = ..., /) -> bytes: ...

    def seekable(self) -> bool: ...

    def seek(self, offset: int, whence: int = ..., /) -> int: ...

    def close(self) -> object: ...


class _Counted(io.RawIOBase, BinaryIO):
    """A stream read out of a container, charged to the file's expanded-size budget.

    A ``BinaryIO`` too: what the scanners, ``zipfile``, ``tarfile`` and ``py7zr`` read from.
    """

    def __init__(
        self, inner: _Readable, budget: _Budget, *, closes: BinaryIO | None = None
    ) -> None:
        super().__init__()
        self._inner = inner
        self._budget = budget
        self._closes = closes
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return bool(self._inner.seekable())

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_END and self.seekable():
            self._position = self._inner.seek(offset, os.SEEK_END)
            return self._position
        target = {os.SEEK_SET: offset, os.SEEK_CUR: self._position + offset}.get(whence)
        if target is None or not self.seekable():
            # Forward only, by reading: decompressors cannot do better anyway.
            if whence == os.SEEK_CUR and offset >= 0:
                _skip_by_reading(self, offset)
                return self._position
            raise io.UnsupportedOperation("seek")
        if target > self._position:
            self._budget.bytes(target - self._position)
        self._position = self._inner.seek(target)
        return self._position

    def readinto(self, buffer: Any) -> int:
        data = self._inner.read(len(buffer))
        count = len(data)
        buffer[:count] = data
        self._position += count
        self._budget.bytes(count)
        return count

    def read(self, size: int | None = -1) -> bytes:
        data = self._inner.read(size if size is not None and size >= 0 else _CHUNK * 64)
        self._position += len(data)
        self._budget.bytes(len(data))
        return bytes(data)

    def close(self) -> None:
        if not self.closed:
            with suppress(Exception):
                self._inner.close()
            if self._closes is not None:
                self._closes.close()
        super().close()


class _StoredMember(io.RawIOBase, BinaryIO):
    """A stored (uncompressed) zip member: ``size`` bytes of the archive from ``offset``, read
    with a position of its own (several members of one archive are read in turn), charged to
    the file's expanded-size budget. The archive's stream stays open when it is closed."""

    def __init__(self, read_at: _ReadAt, offset: int, size: int, budget: _Budget) -> None:
        super().__init__()
        self._read_at = read_at
        self._offset = offset
        self._size = size
        self._budget = budget
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        left = self._size - self._position
        count = left if size is None or size < 0 else min(size, left)
        if count <= 0:
            return b""
        data = self._read_at(self._offset + self._position, count)
        self._position += len(data)
        self._budget.bytes(len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._size}[whence]
        target = max(0, base + offset)
        if target > self._position:
            self._budget.bytes(min(target, self._size) - self._position)
        self._position = target
        return target


def _skip_by_reading(stream: _Counted, count: int) -> None:
    while count:
        chunk = stream.read(min(count, _CHUNK))
        if not chunk:
            return
        count -= len(chunk)


class _ZlibReader(io.RawIOBase):
    """A raw zlib stream (joblib's ``compress=True``) decompressed as it is read."""

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self._raw = raw
        self._inflater = zlib.decompressobj()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self._inflater.eof:
            data = self._inflater.unconsumed_tail or self._raw.read(_CHUNK)
            if not data:
                raise EOFError("compressed stream ends early")
            out = self._inflater.decompress(data, len(view))
            if out:
                view[: len(out)] = out
                return len(out)
        return 0

    def close(self) -> None:
        self._raw.close()
        super().close()
