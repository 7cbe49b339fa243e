"""What a scan reports: one finding per construct that would run code (or may), with where it is.

Every format scanner returns these; the engine adds them up per file and per version. A finding
of any severity blocks trust by default (approval, promotion, known-good selection); only a
person widens what is allowed, per asset.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    """How bad a finding is. Every severity blocks trust unless the asset allows the construct.

    - ``dangerous``: known to run code, read or write files, open sockets or import modules.
    - ``unknown``: not on the allow-list (a pickle global, a Keras layer, an ONNX op domain).
    - ``malformed``: a file or container a loader would read but that does not parse cleanly
      (bad CRC, names that differ, a frame that runs past its end, a bomb past the limits).
    - ``not_scanned``: a format that needs a parser that is not installed
      (``install rearguard[...]``), or a file past a limit that the scanner cannot read whole.
    """

    DANGEROUS = "dangerous"
    UNKNOWN = "unknown"
    MALFORMED = "malformed"
    NOT_SCANNED = "not_scanned"


@dataclass(frozen=True, slots=True)
class Location:
    """Where the bytes being scanned come from.

    Attributes:
        file: the file as the user named it (or relative to the version's root).
        member: the path inside containers, outermost first, joined with ``!``
            (``weights.tar!model/data.pkl``); None for the file itself.
    """

    file: str
    member: str | None = None

    def inside(self, name: str) -> Location:
        """The location of a member ``name`` of this container."""
        return Location(self.file, name if self.member is None else f"{self.member}!{name}")

    def finding(
        self, *, construct: str, severity: Severity, reason: str, offset: int | None = None
    ) -> Finding:
        """A finding at this location."""
        return Finding(
            file=self.file,
            member=self.member,
            offset=offset,
            construct=construct,
            severity=severity,
            reason=reason,
        )


@dataclass(frozen=True, slots=True)
class Finding:
    """One construct found in a file.

    Attributes:
        file: the file, as in :class:`Location`.
        member: the container member, as in :class:`Location`.
        offset: byte offset in the (decompressed) stream of the file or member, when known.
        construct: what was found: a callable (``os.system``), a layer (``Lambda``), an op
            (``PyFunc``), a template expression (``__globals__``), a container defect.
        severity: see :class:`Severity`.
        reason: why it matters, in a few words.
    """

    file: str
    member: str | None
    offset: int | None
    construct: str
    severity: Severity
    reason: str

    def describe(self) -> str:
        """One line for the user: where, what, how bad and why."""
        where = self.file + (f"!{self.member}" if self.member else "")
        at = f" @{self.offset}" if self.offset is not None else ""
        return f"{where}{at}: {self.severity} {self.construct}: {self.reason}"
