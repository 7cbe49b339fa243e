"""What an incident's playbook runs did, read back from its timeline.

Which production aliases moved (from where to where), which versions were quarantined, which
passed a validation command, and which known-good versions were passed over for a rollback and
why. The messages that say how an incident went (the CLI's last lines, the notifications) are
built from this, so that they say what the timeline records, not what a playbook meant to do:
a data-poisoning run names the models it moved, not the dataset; a run that validated nothing
does not claim a validation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from rearguard.models.db.tables import TimelineEvent
from rearguard.models.recovery.results import (
    Quarantined,
    Rollback,
    Selection,
    Validated,
    outcome_result,
)


@dataclass(frozen=True)
class AliasMove:
    """A production alias an incident moved: where it pointed before the first move, and where
    the last one left it."""

    asset: str
    alias: str
    from_: str | None
    to: str


@dataclass(frozen=True)
class Rejected:
    """A known-good version passed over for a rollback, and why."""

    asset: str
    version: str
    reason: str


@dataclass(frozen=True)
class Effects:
    """What an incident's runs did, in the order the timeline records it."""

    moves: tuple[AliasMove, ...] = ()
    quarantined: tuple[str, ...] = ()
    """``asset@label`` of every version the incident quarantined."""
    validated: tuple[str, ...] = ()
    """``asset@label`` of every version that passed its validation command in the incident."""
    rejected: tuple[Rejected, ...] = ()
    """The rejections of the latest selection for each asset."""

    def was_validated(self, asset: str, label: str) -> bool:
        """Whether ``asset@label`` passed its validation command in this incident."""
        return f"{asset}@{label}" in self.validated


def effects_of(events: Iterable[TimelineEvent]) -> Effects:
    """Read what an incident's runs did from its timeline events (in sequence order).

    A rerun's no-op steps add nothing: a rollback that left the alias where it was is no move,
    and a version quarantined twice is named once.

    Args:
        events: the incident's events, oldest first.

    Returns:
        The alias moves (one per asset, from before the first move to after the last; none when
        the alias ended where it started), the quarantined and validated versions, and the
        rejections of each asset's latest selection.
    """
    first_from: dict[str, str | None] = {}
    last: dict[str, Rollback] = {}
    quarantined: dict[str, None] = {}
    validated: dict[str, None] = {}
    rejected: dict[str, tuple[Rejected, ...]] = {}
    for event in events:
        if event.kind != "outcome":
            continue
        result = outcome_result(event.action, json.loads(event.data))
        # The step records the asset it acted on (its argument, else the incident's).
        asset = event.asset or ""
        if isinstance(result, Rollback):
            first_from.setdefault(asset, result.from_)
            last[asset] = result
        elif isinstance(result, Quarantined):
            quarantined[f"{asset}@{result.quarantined}"] = None
        elif isinstance(result, Validated):
            validated[f"{asset}@{result.version}"] = None
        elif isinstance(result, Selection):
            rejected[asset] = tuple(
                Rejected(asset=asset, version=r.version, reason=r.reason) for r in result.rejected
            )
    moves = tuple(
        AliasMove(asset=asset, alias=moved.alias, from_=first_from[asset], to=moved.to)
        for asset, moved in last.items()
        if first_from[asset] != moved.to
    )
    return Effects(
        moves=moves,
        quarantined=tuple(quarantined),
        validated=tuple(validated),
        rejected=tuple(r for found in rejected.values() for r in found),
    )
