"""Ingest: store published events and their deliveries in one transaction, with group commit.

``publish`` returns only after the events are committed (a 200 means durable). Concurrent
publishes are gathered by one writer task into a single transaction, so a burst of requests
costs one commit instead of one each; on SQLite this is what makes batched publishing fast.

``emit`` is the same work inside a caller's transaction: the workspace commits its change and
the event that reports it together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.broker.routing import Router
from mlgrid.domain.deliveries import CommittedDelivery
from mlgrid.domain.error_codes import ErrorCode
from mlgrid.errors import ErrorDetail, InvalidField
from mlgrid.events.convert import event_id, event_subject, event_type
from mlgrid.events.jsoncodec import dumps
from mlgrid.metrics import Metrics
from mlgrid.store import events as event_store
from mlgrid.store import ingest as ingest_store
from mlgrid.store.database import Database
from mlgrid.store.faults import database_fault
from mlgrid.store.ingest import Claim, EventKey, StoredPublish

log = logging.getLogger("mlgrid.ingest")

# How many events one group-commit transaction may carry before the next one starts.
MAX_EVENTS_PER_COMMIT = 20_000


@dataclass(frozen=True)
class PublishBatch:
    """Validated events for one topic, in the topic's stored schema."""

    topic_key: str
    schema: str
    events: Sequence[dict[str, Any]]
    #: The W3C trace context the events were emitted in (a traced workspace change), stored
    #: beside them so their deliveries continue it; ``None`` when tracing is off (and on the
    #: publish path: a CloudEvent carries its own ``traceparent``).
    traceparent: str | None = None


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    deliveries: list[CommittedDelivery] = field(default_factory=list)


DeliveryListener = Callable[[list[CommittedDelivery]], None]
#: Asked before each group commit: a claim for this node's dispatcher, or None (no room).
Claimer = Callable[[], Claim | None]


@dataclass
class _Routed:
    """Published events made ready to store: deduplicated, serialised and matched."""

    new_rows: list[event_store.NewEvent] = field(default_factory=list)
    by_key: dict[EventKey, tuple[PublishBatch, dict[str, Any]]] = field(default_factory=dict)
    subscribers: dict[EventKey, list[str]] = field(default_factory=dict)
    published: int = 0


def _route(batches: Sequence[PublishBatch], router: Router) -> _Routed:
    """Match before writing, so the database does the whole write in one go (on SQLite, one
    trip to its thread); the matches of an event that turns out to be a duplicate are simply
    not used."""
    routed = _Routed()
    match = router.match
    for batch in batches:
        routed.published += len(batch.events)
        for ev in batch.events:
            eid = event_id(ev)
            key = (batch.topic_key, eid)
            if key in routed.by_key:
                continue
            routed.by_key[key] = (batch, ev)
            routed.new_rows.append(
                event_store.NewEvent(
                    topic_key=batch.topic_key,
                    event_id=eid,
                    event_type=event_type(ev),
                    subject=event_subject(ev),
                    body=dumps(ev).decode(),
                )
            )
            matched = match(batch.topic_key, ev, batch.schema)
            if matched:
                routed.subscribers[key] = matched
    return routed


def _result(
    routed: _Routed, stored: StoredPublish, router: Router, now: datetime, metrics: Metrics | None
) -> IngestResult:
    result = IngestResult(accepted=len(stored.seqs), duplicates=routed.published - len(stored.seqs))
    if metrics is not None:
        # Counted here and added to the metrics once per label set: a labelled counter costs
        # a lock and two look-ups per increment, which per event was a tenth of the ingest time.
        unmatched: Counter[str] = Counter(key[0] for key in stored.seqs if key not in routed.subscribers)
        matched_counts: Counter[tuple[str, str]] = Counter(
            (d.event_key[0], d.subscription_id) for d in stored.deliveries
        )
        for topic_key, count in unmatched.items():
            metrics.child(metrics.unmatched, topic_key).inc(count)
        for (topic_key, subscription_id), count in matched_counts.items():
            metrics.child(metrics.matched, topic_key, router.subscription_name(subscription_id)).inc(count)
    sizes = {(row.topic_key, row.event_id): len(row.body) for row in routed.new_rows}
    result.deliveries = [
        CommittedDelivery(
            d.id, d.event_seq, d.subscription_id, now, routed.by_key[d.event_key][1], sizes[d.event_key],
            d.claimed,
        )
        for d in stored.deliveries
    ]
    return result


async def _record_traceparents(
    conn: AsyncConnection, routed: _Routed, seqs: Mapping[EventKey, int], result: IngestResult
) -> None:
    """Store each traced batch's context with its new events and hand it to their deliveries.
    Called only when a batch has one (a traced workspace change), never on the publish path."""
    traced: dict[int, str] = {}
    for key, seq in seqs.items():
        traceparent = routed.by_key[key][0].traceparent
        if traceparent is not None:
            traced[seq] = traceparent
    for traceparent in set(traced.values()):
        seqs_in_context = [s for s, t in traced.items() if t == traceparent]
        await event_store.set_traceparent(conn, seqs_in_context, traceparent)
    result.deliveries = [
        replace(d, traceparent=traced[d.event_seq]) if d.event_seq in traced else d for d in result.deliveries
    ]


async def store_and_route(
    conn: AsyncConnection,
    batches: Sequence[PublishBatch],
    router: Router,
    now: datetime,
    metrics: Metrics | None = None,
) -> IngestResult:
    """Insert new events, match them against subscriptions, insert one delivery per match.

    Must run inside a write transaction. Events whose id the topic already holds are skipped
    (idempotent publishing) and produce no deliveries. A batch's ``traceparent`` (if any) is
    stored with its events.
    """
    routed = _route(batches, router)
    stored = await ingest_store.store_publish(conn, routed.new_rows, routed.subscribers, now)
    result = _result(routed, stored, router, now, metrics)
    if any(batch.traceparent is not None for batch in batches):
        await _record_traceparents(conn, routed, stored.seqs, result)
    return result


_COLUMN_FIELDS = ("id", "eventType", "type", "subject")


def check_storable(events: Sequence[dict[str, Any]]) -> None:
    """Refuse (400) what validation accepts but a database cannot store: U+0000 in the fields
    that also live in their own columns (PostgreSQL text cannot hold it). Refused on SQLite as
    well, so both databases accept the same events. The body keeps such characters elsewhere
    (``data``), escaped in its JSON text."""
    details: list[ErrorDetail] = []
    for index, ev in enumerate(events):
        for name in _COLUMN_FIELDS:
            value = ev.get(name)
            if isinstance(value, str) and "\x00" in value:
                target = f"[{index}].{name}"
                message = f"{target}: must not contain U+0000 (NUL)"
                details.append(ErrorDetail(ErrorCode.INVALID_FIELD_VALUE, message, target))
    if details:
        first = details[0]
        raise InvalidField(message=first.message, field_name=first.target or "", details=details)


@dataclass
class _Pending:
    batch: PublishBatch
    future: asyncio.Future[IngestResult]


class Ingestor:
    """Owns the group-commit writer task."""

    def __init__(
        self,
        db: Database,
        router: Router,
        metrics: Metrics,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._router = router
        self._metrics = metrics
        self._clock = clock
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[DeliveryListener] = []
        self._claimer: Claimer | None = None
        self._due_notice: Callable[[], str] | None = None

    def add_listener(self, listener: DeliveryListener) -> None:
        """Called after each commit with the deliveries it created (the dispatcher's wake-up)."""
        self._listeners.append(listener)

    def set_claimer(self, claimer: Claimer, due_notice: Callable[[], str] | None = None) -> None:
        """Claim the new push deliveries of each group commit for this node as they are
        inserted (PostgreSQL): its dispatcher starts them at once instead of claiming them in
        a transaction of its own. ``claimer`` returns None when the node has no room, and the
        deliveries are left to whichever node claims them first. ``due_notice`` makes the
        payload sent to the other nodes (LISTEN/NOTIFY) when a commit leaves push deliveries
        unclaimed."""
        self._claimer = claimer
        self._due_notice = due_notice

    def notify(self, deliveries: list[CommittedDelivery]) -> None:
        if not deliveries:
            return
        for listener in self._listeners:
            try:
                listener(deliveries)
            except Exception:  # a listener bug must not fail a committed publish
                log.exception("delivery listener failed", extra={"action": "listener_failed"})

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._writer(), name="mlgrid-ingest-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def publish(self, batch: PublishBatch) -> IngestResult:
        """Queue the batch for the next group commit and wait until it is durable."""
        if self._task is None:
            raise RuntimeError("ingestor is not started")
        check_storable(batch.events)
        started = time.perf_counter()
        future: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(batch, future))
        result = await future
        elapsed = time.perf_counter() - started
        self._metrics.child(self._metrics.publish_latency, batch.topic_key).observe(elapsed)
        self._metrics.child(self._metrics.published, batch.topic_key).inc(len(batch.events))
        return result

    async def emit(self, conn: AsyncConnection, batch: PublishBatch) -> IngestResult:
        """Store and route inside the caller's transaction; call ``notify`` after its commit."""
        result = await store_and_route(conn, [batch], self._router, self._clock(), self._metrics)
        self._metrics.published.labels(batch.topic_key).inc(result.accepted)
        return result

    async def _writer(self) -> None:
        while True:
            first = await self._queue.get()
            group = [first]
            count = len(first.batch.events)
            while count < MAX_EVENTS_PER_COMMIT:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                group.append(item)
                count += len(item.batch.events)
            await self._commit(group)

    async def _commit(self, group: list[_Pending]) -> None:
        live = [p for p in group if not p.future.cancelled()]
        if not live:
            return
        try:
            now = self._clock()
            routed = _route([p.batch for p in live], self._router)
            claim = self._claimer() if self._claimer is not None and routed.subscribers else None
            claimable: set[str] = set()
            if self._claimer is not None and routed.subscribers:
                is_pushed = self._router.is_pushed
                claimable = {s for subs in routed.subscribers.values() for s in subs if is_pushed(s)}
            stored = await ingest_store.commit_publish(
                self._db, routed.new_rows, routed.subscribers, now, claim, claimable,
                None if self._due_notice is None else self._due_notice(),
            )
            result = _result(routed, stored, self._router, now, self._metrics)
        except Exception as exc:
            if database_fault(exc) is not None:
                # The database is away, full or read-only: every publish of the group fails
                # the same way, answered 503 by the API, which logs the outage once.
                for p in live:
                    if not p.future.done():
                        p.future.set_exception(exc)
                return
            if len(live) > 1:
                # One publish the database refuses must not fail the others that happened to
                # share its transaction: commit them one by one, so only the culprit fails.
                log.warning("group commit failed; committing its %d publishes one by one", len(live),
                            extra={"action": "commit_split"})
                for p in live:
                    await self._commit([p])
                return
            log.exception("commit failed", extra={"action": "commit_failed"})
            if not live[0].future.done():
                live[0].future.set_exception(exc)
            return
        for p in live:
            if not p.future.done():
                # One transaction carried the whole group: each caller sees the group's result.
                p.future.set_result(result)
        self.notify(result.deliveries)
