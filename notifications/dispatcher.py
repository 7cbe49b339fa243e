"""The dispatcher: delivers outbox rows, in order, at most once per destination.

One round (:meth:`Dispatcher.run_once`):

1. **Claim**, in one write transaction: for each ordering key (one incident's messages to one
   destination) the due rows from its head, in id order, are marked ``sending`` with a lease
   and this dispatcher's name. A key whose head is waiting (backoff, ``Retry-After``) or being
   sent by another live dispatcher is skipped whole, so messages never overtake each other.
   A row found ``sending`` with an expired lease was claimed by a dispatcher that died: it is
   *in doubt*, since the message may have gone out before the receipt was recorded.
2. **Send**, outside any transaction, keys in parallel, each key's rows in order. A row in
   doubt is first looked up on the channel (Slack history by the key in the message metadata,
   the file's lines); only a channel that says "not there" gets it again. A transient error
   stops the key (its later rows wait); a permanent one fails that row only.
3. **Record**, in one write transaction: each row's new status, and for each delivered or
   failed row a timeline event with the receipt or the error; a Slack thread's channel and
   ``ts`` when a first message started one. Updates are conditional on the claim, so a
   dispatcher that lost its lease records nothing (the next one finds the message instead).

:meth:`Dispatcher.drain` repeats rounds until the rows of interest are settled or a bounded
wait is over, sleeping until the next row is due.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, insert, or_, select, update

from rearguard.models.audit.chain import append_event
from rearguard.models.backoff import backoff_s
from rearguard.models.config.settings import Settings
from rearguard.models.config.slack_commands import RESPONSE_CHANNEL, shown_destination
from rearguard.models.db.engine import Database
from rearguard.models.enums import EventKind
from rearguard.models.errors import ConfigurationError
from rearguard.models.failpoints import failpoint
from rearguard.models.metrics.counters import count_deliveries
from rearguard.models.runtime import SecretBlockLoader
from rearguard.notifications.channels.base import Delivery, DeliveryError, Receipt, SlackThread
from rearguard.notifications.factory import ChannelPool
from rearguard.notifications.outbox import (
    DELIVERED,
    FAILED,
    OUTBOX,
    PENDING,
    SENDING,
    THREADS,
)
from rearguard.notifications.templates import Renderer, TemplateError

ACTOR = "rearguard:notifier"
_FORMATS = {
    "slack": frozenset({"slack"}),
    RESPONSE_CHANNEL: frozenset({"slack"}),
    "email": frozenset({"html"}),
}
_CANDIDATES = 5000


@dataclass
class _Row:
    id: int
    incident_id: int | None
    event: str
    channel: str
    destination: str
    ordering_key: str
    idempotency_key: str
    payload: str
    attempts: int
    in_doubt: bool
    created_at: datetime
    previous_attempts: int


@dataclass
class _Outcome:
    row: _Row
    status: str  # delivered, failed, pending, or "released" (not attempted this round)
    receipt: dict[str, Any] | None = None
    thread: SlackThread | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None
    in_doubt: bool = False
    rate_limited: bool = False


@dataclass
class RoundReport:
    """What one round did."""

    claimed: int = 0
    delivered: int = 0
    failed: int = 0
    retrying: int = 0


@dataclass
class DrainReport:
    """What a drain did, and what is still waiting among the rows it waited for."""

    delivered: int = 0
    failed: int = 0
    pending: int = 0
    errors: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line for the user."""
        parts = [f"{self.delivered} delivered"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.pending:
            parts.append(f"{self.pending} waiting")
        line = ", ".join(parts)
        if self.errors:
            line += f" ({self.errors[-1]})"
        return line


def _asset_of(payload: str) -> str | None:
    """The incident's asset, from an outbox row's render context."""
    incident = json.loads(payload).get("incident") or {}
    return incident.get("asset")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


class Dispatcher:
    """Delivers the outbox of one database.

    Args:
        settings: the resolved settings (channels, retry policy, templates).
        db: the database holding the outbox.
        pool: the channels to use (built from the settings by default).
        secret_blocks: reads the Slack token's Prefect Secret block for the default pool.
        max_per_key: at most this many rows of one key per round.
        max_rows: at most this many rows per round.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        pool: ChannelPool | None = None,
        secret_blocks: SecretBlockLoader | None = None,
        max_per_key: int = 50,
        max_rows: int = 500,
    ) -> None:
        self.settings = settings
        self.db = db
        self.pool = pool or ChannelPool(settings, secret_blocks=secret_blocks)
        self.renderer = Renderer(settings.notifications.templates_dir)
        self.max_per_key = max_per_key
        self.max_rows = max_rows
        self.owner = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._paused: dict[str, datetime] = {}
        # Ordering keys whose head's last attempts found its channel down (not a rate limit): a
        # drain does not wait for a key that failed twice in a row, nor for the rows behind it.
        self._down: dict[str, int] = {}
        self._lock = threading.Lock()
        workers = settings.notifications.dispatch_workers
        self._executor = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None

    def close(self) -> None:
        """Stop the workers and close the channels."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self.pool.close()

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- pausing a channel that asked us to wait -------------------------------------------

    def _pause(self, channel: str, until: datetime) -> None:
        with self._lock:
            if until > self._paused.get(channel, until - timedelta(seconds=1)):
                self._paused[channel] = until

    def _paused_until(self, channel: str, now: datetime) -> datetime | None:
        with self._lock:
            until = self._paused.get(channel)
        return until if until is not None and until > now else None

    # -- one round --------------------------------------------------------------------------

    def run_once(self) -> RoundReport:
        """Claim what is due, send it, record the outcomes."""
        runs, threads = self._claim()
        report = RoundReport(claimed=sum(len(rows) for rows in runs))
        if not runs:
            return report
        if self._executor is not None and len(runs) > 1:
            outcomes = [
                o
                for result in self._executor.map(lambda rows: self._send_run(rows, threads), runs)
                for o in result
            ]
        else:
            outcomes = [o for rows in runs for o in self._send_run(rows, threads)]
        self._record(outcomes, threads)
        with self._lock:
            for outcome in outcomes:
                key = outcome.row.ordering_key
                if outcome.status == PENDING and not outcome.rate_limited:
                    self._down[key] = self._down.get(key, 0) + 1
                elif outcome.status != "released":
                    self._down.pop(key, None)
        for outcome in outcomes:
            if outcome.status == DELIVERED:
                report.delivered += 1
            elif outcome.status == FAILED:
                report.failed += 1
            elif outcome.status == PENDING:
                report.retrying += 1
        return report

    def _claim(self) -> tuple[list[list[_Row]], dict[tuple[int, str], SlackThread]]:
        now = _utcnow()
        lease_until = now + timedelta(seconds=self.settings.notifications.lease_s)
        columns = [
            OUTBOX.c.id,
            OUTBOX.c.incident_id,
            OUTBOX.c.event,
            OUTBOX.c.channel,
            OUTBOX.c.destination,
            OUTBOX.c.ordering_key,
            OUTBOX.c.idempotency_key,
            OUTBOX.c.payload,
            OUTBOX.c.attempts,
            OUTBOX.c.in_doubt,
            OUTBOX.c.created_at,
            OUTBOX.c.status,
            OUTBOX.c.next_attempt_at,
            OUTBOX.c.lease_until,
        ]
        runs: dict[str, list[_Row]] = {}
        with self.db.transaction() as connection:
            candidates = connection.execute(
                select(*columns)
                .where(OUTBOX.c.status.in_((PENDING, SENDING)))
                .order_by(OUTBOX.c.id)
                .limit(_CANDIDATES)
            ).all()
            blocked: set[str] = set()
            total = 0
            for c in candidates:
                key = c.ordering_key
                if key in blocked:
                    continue
                lease = _aware(c.lease_until) if c.lease_until is not None else None
                if c.status == SENDING and lease is not None and lease > now:
                    blocked.add(key)  # another dispatcher is sending this key
                    continue
                if (
                    _aware(c.next_attempt_at) > now
                    or self._paused_until(c.channel, now) is not None
                    or len(runs.get(key, ())) >= self.max_per_key
                    or total >= self.max_rows
                ):
                    blocked.add(key)
                    continue
                # A row still "sending" after its lease: its dispatcher died, maybe after
                # sending. It is looked up before it is sent again.
                in_doubt = bool(c.in_doubt) or c.status == SENDING
                claimed = connection.execute(
                    update(OUTBOX)
                    .where(
                        OUTBOX.c.id == c.id,
                        OUTBOX.c.status == c.status,
                        OUTBOX.c.attempts == c.attempts,
                    )
                    .values(
                        status=SENDING,
                        attempts=c.attempts + 1,
                        in_doubt=in_doubt,
                        lease_until=lease_until,
                        claimed_by=self.owner,
                        updated_at=now,
                    )
                )
                if claimed.rowcount != 1:
                    blocked.add(key)  # another dispatcher got there first
                    continue
                runs.setdefault(key, []).append(
                    _Row(
                        id=c.id,
                        incident_id=c.incident_id,
                        event=c.event,
                        channel=c.channel,
                        destination=c.destination,
                        ordering_key=key,
                        idempotency_key=c.idempotency_key,
                        payload=c.payload,
                        attempts=c.attempts + 1,
                        in_doubt=in_doubt,
                        created_at=_aware(c.created_at),
                        previous_attempts=c.attempts,
                    )
                )
                total += 1
            threads = self._threads(connection, runs)
        return list(runs.values()), threads

    def _threads(
        self, connection: Any, runs: dict[str, list[_Row]]
    ) -> dict[tuple[int, str], SlackThread]:
        incidents = {
            rows[0].incident_id
            for rows in runs.values()
            if rows[0].channel == "slack" and rows[0].incident_id is not None
        }
        if not incidents:
            return {}
        found = connection.execute(
            select(THREADS).where(THREADS.c.incident_id.in_(incidents))
        ).mappings()
        return {
            (t["incident_id"], t["destination"]): SlackThread(t["channel_id"], t["thread_ts"])
            for t in found
        }

    def _send_run(
        self, rows: list[_Row], threads: dict[tuple[int, str], SlackThread]
    ) -> list[_Outcome]:
        first = rows[0]
        thread = (
            threads.get((first.incident_id, first.destination))
            if first.incident_id is not None
            else None
        )
        outcomes: list[_Outcome] = []
        for index, row in enumerate(rows):
            if self._paused_until(row.channel, _utcnow()) is not None:
                outcomes.extend(_Outcome(r, "released") for r in rows[index:])
                break
            outcome = self._deliver(row, thread)
            outcomes.append(outcome)
            if outcome.thread is not None:
                thread = outcome.thread
            if outcome.status == PENDING:
                # Later messages of this key wait, so they cannot overtake this one.
                outcomes.extend(_Outcome(r, "released") for r in rows[index + 1 :])
                break
        return outcomes

    def _deliver(self, row: _Row, thread: SlackThread | None) -> _Outcome:
        try:
            channel = self.pool.get(row.channel)
        except ConfigurationError as exc:
            error = exc.message + (f" ({exc.hint})" if exc.hint else "")
            return _Outcome(row, FAILED, error=f"{row.channel} is not configured: {error}")
        context = json.loads(row.payload)
        delivery = Delivery(
            outbox_id=row.id,
            idempotency_key=row.idempotency_key,
            incident_id=row.incident_id,
            event=row.event,
            destination=row.destination,
            created_at=row.created_at,
            thread=thread,
            mentions=tuple(context.get("mentions") or ()),
        )
        try:
            message = self.renderer.render(
                row.event, context, formats=_FORMATS.get(row.channel, frozenset())
            )
        except TemplateError as exc:
            return _Outcome(row, FAILED, error=str(exc))
        except Exception as exc:  # a template that breaks in another way fails only itself
            return _Outcome(row, FAILED, error=f"rendering failed: {type(exc).__name__}: {exc}")
        try:
            if row.in_doubt:
                found = channel.find_sent(delivery)
                if found is not None:
                    return self._delivered(row, found, thread)
            failpoint("notification.before_send")
            receipt = channel.send(message, delivery)
            failpoint("notification.after_send")
        except DeliveryError as exc:
            return self._failed_attempt(row, exc)
        except Exception as exc:  # a channel's own bug must not stop the other channels
            failure = DeliveryError(f"{row.channel}: {type(exc).__name__}: {exc}", in_doubt=True)
            return self._failed_attempt(row, failure)
        return self._delivered(row, receipt, thread)

    def _delivered(self, row: _Row, receipt: Receipt, thread: SlackThread | None) -> _Outcome:
        new_thread = receipt.thread if receipt.thread is not None and thread is None else None
        return _Outcome(row, DELIVERED, receipt=receipt.details, thread=new_thread)

    def _failed_attempt(self, row: _Row, exc: DeliveryError) -> _Outcome:
        now = _utcnow()
        if exc.permanent:
            return _Outcome(row, FAILED, error=exc.message)
        policy = self.settings.notifications
        if (now - row.created_at).total_seconds() > policy.give_up_after_s:
            return _Outcome(
                row, FAILED, error=f"gave up after {row.attempts} attempts: {exc.message}"
            )
        delay = backoff_s(row.attempts, base_s=policy.backoff_base_s, max_s=policy.backoff_max_s)
        if exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
            # The channel asked everyone to wait, not just this message.
            self._pause(row.channel, now + timedelta(seconds=exc.retry_after))
        return _Outcome(
            row,
            PENDING,
            error=exc.message,
            next_attempt_at=now + timedelta(seconds=delay),
            in_doubt=row.in_doubt or exc.in_doubt,
            rate_limited=exc.retry_after is not None,
        )

    def _record(
        self, outcomes: list[_Outcome], threads: dict[tuple[int, str], SlackThread]
    ) -> None:
        now = _utcnow()
        ended: list[tuple[str, str]] = []
        with self.db.transaction() as connection:
            for outcome in sorted(outcomes, key=lambda o: o.row.id):
                row = outcome.row
                mine = and_(
                    OUTBOX.c.id == row.id,
                    OUTBOX.c.claimed_by == self.owner,
                    OUTBOX.c.attempts == row.attempts,
                    OUTBOX.c.status == SENDING,
                )
                if outcome.status == "released":
                    values: dict[str, Any] = {
                        "status": PENDING,
                        "attempts": row.previous_attempts,
                        "lease_until": None,
                        "claimed_by": None,
                        "updated_at": now,
                    }
                elif outcome.status == PENDING:
                    values = {
                        "status": PENDING,
                        "next_attempt_at": outcome.next_attempt_at,
                        "last_error": outcome.error,
                        "in_doubt": outcome.in_doubt,
                        "lease_until": None,
                        "claimed_by": None,
                        "updated_at": now,
                    }
                elif outcome.status == DELIVERED:
                    values = {
                        "status": DELIVERED,
                        "receipt": json.dumps(outcome.receipt, sort_keys=True),
                        "delivered_at": now,
                        "last_error": None,
                        "in_doubt": False,
                        "lease_until": None,
                        "updated_at": now,
                    }
                else:
                    values = {
                        "status": FAILED,
                        "last_error": outcome.error,
                        "lease_until": None,
                        "updated_at": now,
                    }
                changed = connection.execute(update(OUTBOX).where(mine).values(**values))
                if changed.rowcount != 1 or outcome.status not in (DELIVERED, FAILED):
                    continue
                if (
                    outcome.thread is not None
                    and row.incident_id is not None
                    and (row.incident_id, row.destination) not in threads
                ):
                    connection.execute(
                        insert(THREADS).values(
                            incident_id=row.incident_id,
                            destination=row.destination,
                            channel_id=outcome.thread.channel_id,
                            thread_ts=outcome.thread.thread_ts,
                            created_at=now,
                        )
                    )
                    threads[(row.incident_id, row.destination)] = outcome.thread
                data: dict[str, Any] = {
                    "outbox_id": row.id,
                    "event": row.event,
                    "channel": row.channel,
                    "destination": shown_destination(row.channel, row.destination),
                    "attempts": row.attempts,
                }
                if outcome.status == DELIVERED:
                    data["receipt"] = outcome.receipt
                else:
                    data["error"] = outcome.error
                append_event(
                    connection,
                    kind=EventKind.NOTIFICATION,
                    action=f"notification.{outcome.status}",
                    actor=ACTOR,
                    incident_id=row.incident_id,
                    asset=_asset_of(row.payload),
                    data=data,
                )
                ended.append((row.channel, outcome.status))
            count_deliveries(connection, ended)

    # -- draining -----------------------------------------------------------------------------

    def drain(
        self,
        *,
        wait_s: float,
        incident_id: int | None = None,
        outbox_ids: list[int] | None = None,
        stop_when_down: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> DrainReport:
        """Deliver until the rows of interest are settled or ``wait_s`` has passed.

        Every due row is delivered; the wait is for the rows of one incident, or the given
        rows, or (neither given) all of them. With ``stop_when_down``, the wait also ends when
        every row waiting is of an ordering key whose head failed twice in a row on a channel
        that is down (not rate-limiting): the rest of an outage is not waited out.

        Returns:
            Counts over the rows of interest: delivered, failed, still waiting.
        """
        deadline = time.monotonic() + wait_s
        report = DrainReport()
        while True:
            round_ = self.run_once()
            report.delivered += round_.delivered
            report.failed += round_.failed
            waiting, next_due, errors = self._waiting(incident_id, outbox_ids)
            if not waiting:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (stop_when_down and self._all_down(waiting)):
                break
            if not round_.claimed:
                pause = (next_due - _utcnow()).total_seconds() if next_due else 0.0
                sleep(min(remaining, max(pause, 0.02)))
        report.pending = len(waiting)
        report.errors = errors
        if incident_id is not None or outbox_ids is not None:
            self._summarise(report, incident_id, outbox_ids)
        return report

    def _scope(self, incident_id: int | None, outbox_ids: list[int] | None) -> Any:
        clauses = []
        if incident_id is not None:
            clauses.append(OUTBOX.c.incident_id == incident_id)
        if outbox_ids is not None:
            clauses.append(OUTBOX.c.id.in_(outbox_ids))
        return and_(*clauses) if clauses else None

    def _all_down(self, waiting: list[str]) -> bool:
        with self._lock:
            return all(self._down.get(key, 0) >= 2 for key in waiting)

    def _waiting(
        self, incident_id: int | None, outbox_ids: list[int] | None
    ) -> tuple[list[str], datetime | None, list[str]]:
        now = _utcnow()
        statement = select(
            OUTBOX.c.ordering_key,
            OUTBOX.c.channel,
            OUTBOX.c.status,
            OUTBOX.c.next_attempt_at,
            OUTBOX.c.lease_until,
            OUTBOX.c.last_error,
        ).where(or_(OUTBOX.c.status == PENDING, OUTBOX.c.status == SENDING))
        scope = self._scope(incident_id, outbox_ids)
        if scope is not None:
            statement = statement.where(scope)
        with self.db.read_session() as session:
            rows = session.connection().execute(statement).all()
        next_due: datetime | None = None
        for r in rows:
            due = _aware(r.next_attempt_at)
            if r.status == SENDING and r.lease_until is not None:
                due = _aware(r.lease_until)
            paused = self._paused_until(r.channel, now)
            if paused is not None and paused > due:
                due = paused
            next_due = due if next_due is None or due < next_due else next_due
        errors = list(dict.fromkeys(r.last_error for r in rows if r.last_error))
        return [r.ordering_key for r in rows], next_due, errors

    def _summarise(
        self, report: DrainReport, incident_id: int | None, outbox_ids: list[int] | None
    ) -> None:
        """Count the rows of interest by status (a scoped drain reports on them all)."""
        statement = (
            select(OUTBOX.c.status, OUTBOX.c.last_error)
            .where(self._scope(incident_id, outbox_ids))
            .order_by(OUTBOX.c.id)
        )
        with self.db.read_session() as session:
            rows = session.connection().execute(statement).all()
        report.delivered = report.failed = report.pending = 0
        for r in rows:
            if r.status == DELIVERED:
                report.delivered += 1
            elif r.status == FAILED:
                report.failed += 1
            else:
                report.pending += 1
            if r.status != DELIVERED and r.last_error and r.last_error not in report.errors:
                report.errors.append(r.last_error)
