"""Enumerations shared by the tables, the services and the CLI."""

from __future__ import annotations

from enum import StrEnum


class AssetKind(StrEnum):
    """What an asset is."""

    MODEL = "model"
    PROMPT = "prompt"
    CONFIG = "config"
    DATASET = "dataset"


class VersionStatus(StrEnum):
    """Trust in one version. Only a person makes a version known-good."""

    CANDIDATE = "candidate"
    KNOWN_GOOD = "known_good"
    SUSPECT = "suspect"
    QUARANTINED = "quarantined"
    RETIRED = "retired"


class Severity(StrEnum):
    """Incident severity, sev1 the worst."""

    SEV1 = "sev1"
    SEV2 = "sev2"
    SEV3 = "sev3"
    SEV4 = "sev4"


class IncidentStatus(StrEnum):
    """Where an incident is in its life."""

    OPEN = "open"
    CONTAINED = "contained"
    RECOVERED = "recovered"
    RESOLVED = "resolved"
    FAILED = "failed"


class IncidentSource(StrEnum):
    """What opened an incident."""

    CLI = "cli"
    ALERT = "alert"
    DRILL = "drill"
    SWEEP = "sweep"
    SLACK = "slack"


class EventKind(StrEnum):
    """The kind of a timeline event."""

    INTENT = "intent"
    OUTCOME = "outcome"
    DECISION = "decision"
    NOTIFICATION = "notification"
    STATE = "state"
    ALERT = "alert"
