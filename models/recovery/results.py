"""The typed results of the playbook steps, each able to say in one line what it found or did.

A step's result is recorded as JSON in its outcome event (``data["result"]``) and read back
from there by ``incident show``, the exports and the drills, so every type here has one
recorded form (:meth:`StepResult.recorded`) and one way back (:func:`read_result`, by the
step's name). The recorded form is the JSON the steps recorded before these types existed
(keys left out when they do not apply stay left out), so old timelines read as new ones do;
only two skips record less than before: ``verify_production`` no longer adds placeholder
``version``/``ok``/``problems`` keys, and ``run_hook`` leaves out an ``asset`` of None.

A step that had nothing to do returns :class:`Skipped`; a record this version cannot read (a
plug-in's step, an older shape) reads back as :class:`UnreadResult`, its values as recorded.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)

if TYPE_CHECKING:
    from rearguard.models.integrity.verification import VersionCheck


def _recorded_as(key: str, name: str, **default: Any) -> Any:
    """A field recorded under ``key`` but named ``name`` here ("from" is a Python keyword,
    ``recorded`` names the method); ``default=...`` when it may be absent."""
    return Field(validation_alias=AliasChoices(key, name), serialization_alias=key, **default)


class Recorded(BaseModel):
    """A value recorded in the timeline: frozen, read back leniently (unknown keys ignored)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    omitted_when_default: ClassVar[frozenset[str]] = frozenset()
    """Fields left out of the record while they hold their default (a key that does not apply,
    a flag that is not set), as the results recorded before these types left them out."""

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        fields = type(self).model_fields
        for name in self.omitted_when_default:
            if getattr(self, name) == fields[name].default:
                data.pop(fields[name].serialization_alias or name, None)
        return data

    def recorded(self) -> dict[str, Any]:
        """The JSON-friendly form recorded in the timeline."""
        return self.model_dump(mode="json", by_alias=True)


class StepResult(Recorded):
    """What one step body returns; its subclasses name the steps they are the result of."""

    steps: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def describe(self) -> str:
        """One human line: what the step found or did."""


def _named(asset: str | None, label: str) -> str:
    """``asset@label`` when a multi-asset playbook named the asset, else the label."""
    return f"{asset}@{label}" if asset else label


class Skipped(StepResult):
    """A step that had nothing to do, and why; with what it would have acted on."""

    skipped: str
    version: str | None = None
    hook: str | None = None
    asset: str | None = None
    event: str | None = None

    omitted_when_default = frozenset({"version", "hook", "asset", "event"})

    def describe(self) -> str:
        return f"skipped: {self.skipped}"


class UnreadResult(StepResult):
    """A recorded result of a shape this version does not know, kept as it was recorded."""

    values: dict[str, Any]

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return dict(self.values)

    def describe(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in self.values.items())


class Quarantined(StepResult):
    """A version quarantined, its content kept read-only as evidence first."""

    steps = ("quarantine",)

    asset: str | None = None
    quarantined: str
    evidence: str
    altered_files: tuple[str, ...] = ()

    omitted_when_default = frozenset({"asset"})

    def describe(self) -> str:
        altered = len(self.altered_files)
        return f"{_named(self.asset, self.quarantined)} quarantined, its files kept as evidence" + (
            f" ({altered} altered)" if altered else ""
        )


class VersionVerdict(Recorded):
    """What re-verifying one version found, as recorded."""

    asset: str
    version: str
    ok: bool
    files: int
    size: int = _recorded_as("bytes", "size")
    problems: tuple[str, ...] = ()

    @classmethod
    def of(cls, check: VersionCheck) -> VersionVerdict:
        """The recorded form of a check (its pickle details stay with the version's events)."""
        return cls(
            asset=check.asset,
            version=check.label,
            ok=check.ok,
            files=check.files,
            size=check.bytes,
            problems=tuple(check.problems),
        )


class IntegrityReport(StepResult):
    """Every trusted version of an asset re-verified; the failures are now suspect."""

    steps = ("verify_integrity",)

    checks: dict[str, VersionVerdict]
    failed: tuple[str, ...] = ()

    def describe(self) -> str:
        total = len(self.checks)
        return f"{total - len(self.failed)}/{total} versions intact" + (
            f"; suspect: {', '.join(self.failed)}" if self.failed else ""
        )


class ProductionCheck(StepResult):
    """The version production serves, re-verified now."""

    steps = ("verify_production",)

    version: str
    ok: bool
    problems: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.ok:
            return f"{self.version} in production verifies"
        return f"{self.version} in production fails verification: {'; '.join(self.problems)}"


class Rejection(Recorded):
    """A known-good version passed over, and why."""

    version: str
    reason: str


class Selection(StepResult):
    """The version chosen to roll back to, and the known-good ones rejected."""

    steps = ("select_known_good",)

    asset: str | None = None
    selected: str
    rejected: tuple[Rejection, ...] = ()

    omitted_when_default = frozenset({"asset"})

    def describe(self) -> str:
        rejected = ", ".join(r.version for r in self.rejected)
        return f"selected {_named(self.asset, self.selected)}" + (
            f"; rejected {rejected}" if rejected else ""
        )


class ApprovalDecision(StepResult):
    """How an approval gate ended: not required, skipped in a drill, decided, or timed out."""

    steps = ("await_approval",)

    step: str
    required: bool
    decision: str
    round: int | None = None
    by: str | None = None
    comment: str | None = None

    omitted_when_default = frozenset({"round", "by", "comment"})

    def describe(self) -> str:
        return f"{self.step}: {self.decision}" + (f" by {self.by}" if self.by else "")


class Rollback(StepResult):
    """The production alias moved (``from_`` is where it pointed; equal to ``to`` on a rerun)."""

    steps = ("rollback",)

    asset: str | None = None
    alias: str
    from_: str | None = _recorded_as("from", "from_")
    to: str

    omitted_when_default = frozenset({"asset"})

    def describe(self) -> str:
        where = f"{self.asset} {self.alias}" if self.asset else self.alias
        return f"{where}: {self.from_} -> {self.to}"


class ValidationRecord(StepResult):
    """A validation command's run against one version (its output tail redacted by pattern)."""

    version: str
    ok: bool
    exit_code: int | None
    duration_s: float
    output_tail: str
    reason: str


class Validated(ValidationRecord):
    """What production serves passed its validation command."""

    steps = ("validate",)

    def describe(self) -> str:
        return f"{self.version} {self.reason}"


class Degraded(ValidationRecord):
    """Production fails its validation check: the version is now suspect."""

    steps = ("confirm_degradation",)

    degraded: Literal[True] = True

    def describe(self) -> str:
        return f"{self.version} fails its validation check ({self.reason})"


class ChangedFile(Recorded):
    """A file that differs between a restored and a tampered version, and how."""

    path: str
    change: str


class DiffText(Recorded):
    """A bounded, redacted unified diff between two versions' files."""

    files: tuple[ChangedFile, ...] = ()
    diff: str = ""
    truncated: bool = False


class TamperDiff(DiffText, StepResult):
    """What tampering changed: the tampered version (``from_``) against the restored one."""

    steps = ("record_diff",)

    from_: str = _recorded_as("from", "from_")
    to: str

    def describe(self) -> str:
        changed = ", ".join(f"{f.path} {f.change}" for f in self.files)
        return f"{self.from_} (tampered) vs {self.to} (restored): " + (changed or "no difference")


class Notified(StepResult):
    """A notification queued for every routed channel (delivered after the playbook)."""

    steps = ("notify",)

    event: str
    receipts: dict[str, str] = Field(default_factory=dict)
    queued: int = 0

    def describe(self) -> str:
        return f"{self.event} queued for {', '.join(self.receipts) or 'no channel'}"


class LegalNotice(Notified):
    """Legal and privacy told of a possible exfiltration, with the regulator deadline if any."""

    steps = ("notify_legal",)

    personal_data: bool
    regulator_deadline: str | None = None

    def describe(self) -> str:
        deadline = self.regulator_deadline
        return super().describe() + (
            f"; personal data: regulator deadline {deadline}" if deadline else ""
        )


class HookRunRecord(Recorded):
    """How one hook command ended, as recorded (its own ``hook.<name>`` event, and the step's)."""

    hook: str
    index: int
    command: str
    ok: bool
    exit_code: int | None
    duration_s: float
    output_tail: str
    reason: str
    credentials: tuple[str, ...] = ()
    already_ran: bool = False

    omitted_when_default = frozenset({"already_ran"})

    def describe(self) -> str:
        """One human line: which command, how it ended, how long it took."""
        return f"{self.hook}[{self.index}] {self.command}: {self.reason} in {self.duration_s:g}s"


class HookResult(StepResult):
    """Every command of a hook succeeded (now or in an earlier run of the playbook)."""

    steps = ("run_hook",)

    hook: str
    asset: str | None
    runs: tuple[HookRunRecord, ...] = ()
    credentials: tuple[str, ...] = ()

    def describe(self) -> str:
        earlier = sum(run.already_ran for run in self.runs)
        return (
            f"{self.hook}: {len(self.runs)} command(s) succeeded"
            + (f" ({earlier} in an earlier run)" if earlier else "")
            + (f"; credentials rotated: {', '.join(self.credentials)}" if self.credentials else "")
        )


class Denylisted(StepResult):
    """A digest on the denylist, and the incident that first put it there."""

    steps = ("denylist_digest",)

    digest: str
    denylisted_by_incident: int | None

    def describe(self) -> str:
        first = self.denylisted_by_incident
        return f"{self.digest} denylisted" + (f" (by incident {first})" if first else "")


class VersionHit(Recorded):
    """A stored version holding a file with a denylisted digest."""

    asset: str
    label: str
    paths: tuple[str, ...] = ()


class TaintedVersion(Recorded):
    """A model version trained on a suspect dataset version."""

    asset: str
    label: str
    dataset_version: str


def _in_production(production: Mapping[str, str]) -> str:
    served = ", ".join(f"{asset}@{label}" for asset, label in sorted(production.items()))
    return f"; in production: {served}" if served else "; none in production"


class DigestHits(StepResult):
    """Every stored version holding the digest, and which production aliases served one.

    ``recorded`` is True when the step returned what an earlier run decided.
    """

    steps = ("find_digest_versions",)

    digest: str
    affected: tuple[VersionHit, ...] = ()
    production: dict[str, str] = Field(default_factory=dict)
    recorded_earlier: bool = _recorded_as("recorded", "recorded_earlier", default=False)

    omitted_when_default = frozenset({"recorded_earlier"})

    def describe(self) -> str:
        held = ", ".join(f"{hit.asset}@{hit.label}" for hit in self.affected)
        return f"{len(self.affected)} version(s) hold it: {held}" + _in_production(self.production)


class DatasetSuspects(StepResult):
    """The dataset versions registered since the poisoning began, now suspect."""

    steps = ("mark_dataset_suspect",)

    dataset: str
    suspect: tuple[str, ...] = ()
    clean: str | None

    def describe(self) -> str:
        return (
            f"{self.dataset}: suspect {', '.join(self.suspect)}; "
            f"last clean {self.clean or '(none)'}"
        )


class Lineage(StepResult):
    """The model versions trained on a suspect dataset version, and which served production.

    ``recorded_earlier`` is True when the step returned what an earlier run decided.
    """

    steps = ("trace_lineage",)

    tainted: tuple[TaintedVersion, ...] = ()
    production: dict[str, str] = Field(default_factory=dict)
    recorded_earlier: bool = _recorded_as("recorded", "recorded_earlier", default=False)

    omitted_when_default = frozenset({"recorded_earlier"})

    def describe(self) -> str:
        trained = ", ".join(f"{t.asset}@{t.label} ({t.dataset_version})" for t in self.tainted)
        return f"trained on suspect data: {trained}" + _in_production(self.production)


RESULT_TYPES: dict[str, type[StepResult]] = {
    step: kind
    for kind in (
        Quarantined,
        IntegrityReport,
        ProductionCheck,
        Selection,
        ApprovalDecision,
        Rollback,
        Validated,
        Degraded,
        TamperDiff,
        Notified,
        LegalNotice,
        HookResult,
        Denylisted,
        DigestHits,
        DatasetSuspects,
        Lineage,
    )
    for step in kind.steps
}
"""The result type of each built-in step, by the step's recorded name."""


def read_result(step: str, recorded: Mapping[str, Any]) -> StepResult:
    """Read a step's result back from its recorded form (an outcome event's ``data["result"]``).

    Args:
        step: the step's recorded name.
        recorded: the recorded result.

    Returns:
        The typed result; :class:`Skipped` when the step had nothing to do, and
        :class:`UnreadResult` for a step or a shape this version does not know.
    """
    kind = Skipped if "skipped" in recorded else RESULT_TYPES.get(step)
    if kind is not None:
        try:
            return kind.model_validate(recorded)
        except ValidationError:
            pass  # an older or foreign shape: still shown, as recorded
    return UnreadResult(values=dict(recorded))


def outcome_result(action: str, data: Mapping[str, Any]) -> StepResult | None:
    """The typed result an outcome event's data records.

    Args:
        action: the event's action (the step's name when the data does not name it).
        data: the event's data.

    Returns:
        The result, or None when the data holds none (a failed step, or not a step's outcome).
    """
    recorded = data.get("result")
    if not isinstance(recorded, Mapping):
        return None
    return read_result(str(data.get("step", action)), recorded)
