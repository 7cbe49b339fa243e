"""The request and response bodies of the HTTP intake (they make its OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from rearguard.models.enums import Severity
from rearguard.models.errors import UsageError
from rearguard.models.incidents.service import as_utc

Label = Annotated[str, StringConstraints(max_length=1024)]
Labels = Annotated[
    dict[Annotated[str, StringConstraints(max_length=256)], Label], Field(max_length=64)
]


def _text_only(value: object) -> object:
    # pydantic reads a number as seconds since 1970: ``endsAt: 0`` is not a date.
    if isinstance(value, int | float):
        raise ValueError("a date and time is an ISO 8601 string, not a number")
    return value


def _in_utc(moment: datetime) -> datetime:
    try:
        return as_utc(moment, what="the time")
    except UsageError as exc:  # pydantic answers a ValueError with 422
        raise ValueError(exc.message) from None


Moment = Annotated[datetime, BeforeValidator(_text_only), AfterValidator(_in_utc)]
"""An ISO 8601 date and time, in UTC (a naive one taken as UTC), within years 1-9999 there."""


class NativeEvent(BaseModel):
    """A native incident event: what was seen, on which asset, and how it groups."""

    model_config = ConfigDict(extra="forbid")
    type: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="incident type, e.g. model_compromise"
    )
    asset: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    severity: Severity = Severity.SEV2
    since: Moment | None = Field(default=None, description="suspected start, ISO 8601")
    summary: Annotated[str, StringConstraints(max_length=10_000)] = ""
    dedup_key: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    source: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "webhook"
    labels: Labels = Field(default_factory=dict)


class AlertmanagerAlert(BaseModel):
    """One alert of an Alertmanager webhook."""

    model_config = ConfigDict(extra="ignore")
    status: Literal["firing", "resolved"]
    labels: Labels
    annotations: Labels = Field(default_factory=dict)
    startsAt: Moment | None = None  # Alertmanager spells its fields so
    endsAt: Moment | None = None
    generatorURL: Annotated[str, StringConstraints(max_length=2048)] = ""
    fingerprint: Annotated[str, StringConstraints(max_length=64)] = ""


class AlertmanagerWebhook(BaseModel):
    """The Alertmanager webhook payload, version 4."""

    model_config = ConfigDict(extra="ignore")
    version: Literal["4"]
    groupKey: Annotated[str, StringConstraints(max_length=4096)] = ""
    truncatedAlerts: int = 0
    status: Literal["firing", "resolved"] = "firing"
    receiver: Annotated[str, StringConstraints(max_length=256)] = ""
    groupLabels: Labels = Field(default_factory=dict)
    commonLabels: Labels = Field(default_factory=dict)
    commonAnnotations: Labels = Field(default_factory=dict)
    externalURL: Annotated[str, StringConstraints(max_length=2048)] = ""
    alerts: Annotated[list[AlertmanagerAlert], Field(min_length=1, max_length=1000)]


class AlertResult(BaseModel):
    """What became of one alert."""

    action: Literal["opened", "attached", "resolved", "unmatched", "rejected"]
    incident_id: int | None = None
    fingerprint: str | None = None
    error: str | None = None


class Accepted(BaseModel):
    """202: the alerts are recorded; playbooks of opened incidents run in the background."""

    incident_id: int | None = None
    action: str | None = None
    results: list[AlertResult] = Field(default_factory=list)


class Problem(BaseModel):
    """A refused request: one line saying why (never echoing the input)."""

    detail: str


class FieldProblem(BaseModel):
    """One invalid part of a request: where it is, and what is wrong with it."""

    loc: list[str]
    msg: str


class ValidationProblem(BaseModel):
    """422: the first problem in one line, and the problems found (at most 20)."""

    detail: str
    errors: list[FieldProblem] = Field(
        default_factory=list,
        description="empty when the body is valid but cannot be acted on (e.g. unknown asset)",
    )


class RequestCounts(BaseModel):
    """Answered requests: accepted, and refused (any 4xx or 5xx)."""

    accepted: int
    refused: int


class Health(BaseModel):
    """Liveness, and the counts of accepted and refused requests and of alerts."""

    status: Literal["ok"]
    instance: str = Field(
        description="the serve's instance id, new at every start (also in the home's serve.json)"
    )
    requests: RequestCounts
    refused_by_status: dict[str, int] = Field(description="HTTP status -> refused requests")
    alerts: dict[str, int] = Field(description="what became of alerts -> how many")
    playbooks: dict[str, int] | None = Field(
        description="the playbook process's counts, when it runs playbooks"
    )
    scheduler: dict[str, Any] | None = Field(description="the drill scheduler's state, if run")


class HandOffOutput(BaseModel):
    """One of the client's output streams."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    tty: bool = False
    encoding: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "utf-8"


Dimension = Annotated[int, Field(ge=0, le=10_000)]


class HandOffTerminal(BaseModel):
    """What the client prints on: serve prints the command's output for it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    outputs: dict[Literal["out", "err"], HandOffOutput] = Field(default_factory=dict)
    size: tuple[Dimension, Dimension] | None = Field(
        default=None, description="columns and lines (a pseudo-terminal may say 0, 0)"
    )
    environ: dict[Annotated[str, StringConstraints(max_length=64)], Label] = Field(
        default_factory=dict, max_length=32
    )


class HandOffRequest(BaseModel):
    """A command line handed to serve by the ``rearguard`` command (see
    :func:`rearguard.flows.intake.handoff.request_body`, which writes it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    argv: list[Annotated[str, StringConstraints(max_length=100_000)]] = Field(max_length=1000)
    fingerprint: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    cwd: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    prog: Annotated[str, StringConstraints(min_length=1, max_length=256)] = "rearguard"
    people: dict[Annotated[str, StringConstraints(max_length=64)], Label] = Field(
        default_factory=dict, max_length=8
    )
    terminal: HandOffTerminal = Field(default_factory=HandOffTerminal)
