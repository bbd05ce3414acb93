"""Delivery operations the API exposes: listing, redelivery, replay, and closing a deleted
subscription's deliveries.

Redelivery and replay create *new* pending deliveries for retained events (the event rows are
shared, so receivers see the same event ids, SPEC §8) and announce them through the ingest
listeners, exactly as a publish does: the dispatcher and waiting pull receivers pick them up
at once, and other nodes on PostgreSQL at their next poll.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlgrid.delivery.dead_letters import DeadLetterService, Undeliverable
from mlgrid.delivery.dispatcher import Dispatcher
from mlgrid.delivery.retry import DeadLetterReason
from mlgrid.domain.deliveries import CommittedDelivery, DeliveryState
from mlgrid.domain.error_codes import ErrorCode
from mlgrid.domain.records import AttemptRecord, DeadLetterRow, DeliveryRow
from mlgrid.domain.subscription import Subscription
from mlgrid.errors import Conflict, NotFound
from mlgrid.events.jsoncodec import loads_exact
from mlgrid.filters import compile_filter
from mlgrid.store import dead_letters as dead_letter_store
from mlgrid.store import deliveries as delivery_store
from mlgrid.store import delivery_outcomes as outcome_store
from mlgrid.store import delivery_pull as pull_store
from mlgrid.store import events as event_store
from mlgrid.store.clock import to_epoch
from mlgrid.store.database import Database
from mlgrid.store.deliveries import NewDelivery
from mlgrid.store.events import EventCursor

__all__ = ["DeliveryManager", "RedeliveryResult", "ReplayResult"]


def _delivery_not_found(sub: Subscription, delivery_id: int) -> NotFound:
    return NotFound(
        f"event subscription {sub.name!r} has no delivery {delivery_id}", code=ErrorCode.DELIVERY_NOT_FOUND
    )

log = logging.getLogger("mlgrid.delivery")

_PAGE = 500
#: Most dead letters one redeliver call accepts by id.
MAX_REDELIVER_IDS = 1000


@dataclass(frozen=True)
class RedeliveryResult:
    redelivered: list[tuple[str, str, int]]  # (dead letter id, event id, new delivery id)
    not_retained: list[str]  # dead letters whose event is no longer retained
    unknown: list[str]  # ids that are not dead letters of this subscription


@dataclass(frozen=True)
class ReplayResult:
    examined: int
    replayed: int


class DeliveryManager:
    def __init__(
        self,
        db: Database,
        dead_letters: DeadLetterService,
        dispatcher: Dispatcher,
        announce: Callable[[list[CommittedDelivery]], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._dead_letters = dead_letters
        self._dispatcher = dispatcher
        self._announce = announce
        self._clock = clock

    # -- reads ----------------------------------------------------------------------------------

    async def deliveries(
        self, sub: Subscription, state: str | None, after_id: int, limit: int
    ) -> list[tuple[DeliveryRow, str, str]]:
        async with self._db.read() as conn:
            return await delivery_store.list_for_subscription(conn, sub.id, state, after_id, limit)

    async def dead_letter_page(
        self, sub: Subscription, after: tuple[float, str] | None, limit: int
    ) -> list[DeadLetterRow]:
        async with self._db.read() as conn:
            return await dead_letter_store.list_page(conn, sub.id, after, limit)

    async def delivery(
        self, sub: Subscription, delivery_id: int
    ) -> tuple[DeliveryRow, str, str, list[AttemptRecord]]:
        """One delivery of the subscription with its event id, type and attempt history."""
        async with self._db.read() as conn:
            found = await delivery_store.get_for_subscription(conn, sub.id, delivery_id)
            if found is None:
                raise _delivery_not_found(sub, delivery_id)
            history = await outcome_store.attempt_history(conn, delivery_id)
        return (*found, history)

    # -- dead-lettering now ------------------------------------------------------------------------

    async def dead_letter_now(self, sub: Subscription, delivery_id: int) -> str:
        """End a pending delivery at once, as the retry policy would when it gives up: a dead
        letter (reason ``DeadLetteredByOperator``) with a dead-letter destination, dropped
        without one. Returns the state it ended in; 409 when it is not pending any more."""
        now = self._clock()
        async with self._db.write() as conn:
            rows = await pull_store.pending_with_events(conn, sub.id, delivery_id - 1, 1)
            if not rows or rows[0].id != delivery_id:
                found = await delivery_store.get_for_subscription(conn, sub.id, delivery_id)
                if found is None:
                    raise _delivery_not_found(sub, delivery_id)
                raise Conflict(
                    f"delivery {delivery_id} is {found[0].state}, not pending: it has ended already",
                    code=ErrorCode.DELIVERY_NOT_PENDING,
                )
            row = rows[0]
            item = Undeliverable(
                delivery_id=row.id,
                subscription_id=sub.id,
                subscription=sub,
                event=loads_exact(row.event_body),
                published_at=row.published_at,
                reason=DeadLetterReason.DEAD_LETTERED_BY_OPERATOR,
                attempts=row.attempts,
                last_outcome=row.last_outcome,
                last_http_status=row.last_http_status,
                last_error=None,
                last_attempt_at=row.last_attempt_at,
            )
            closed = await self._dead_letters.close(conn, [item], now)
        self._dispatcher.forget_delivery(delivery_id)
        self._dead_letters.report(closed)
        state = closed[0].state if closed else DeliveryState.DELIVERED
        log.info(
            "delivery %s of %s ended by an operator: %s",
            delivery_id,
            sub.name,
            state,
            extra={
                "action": "dead_lettered_by_operator", "subscription_id": sub.id, "delivery_id": delivery_id
            },
        )
        return str(state)

    # -- redelivery -----------------------------------------------------------------------------

    async def redeliver(self, sub: Subscription, ids: Sequence[str] | None) -> RedeliveryResult:
        """Queue dead letters again as new deliveries: all not yet redelivered, or those named
        by ``ids`` — dead-letter ids or event ids; an event is queued once however named."""
        now = self._clock()
        stamp = datetime.fromtimestamp(now, tz=UTC)
        async with self._db.write() as conn:
            candidates = await dead_letter_store.redelivery_candidates(conn, sub.id, ids)
            queued: dict[int, list[str]] = {}  # event seq -> dead letters it answers
            for c in candidates:
                if c.event_seq is not None:
                    queued.setdefault(c.event_seq, []).append(c.id)
            seqs = list(queued)
            new_ids = await delivery_store.insert_pending(
                conn, [NewDelivery(seq, sub.id) for seq in seqs], stamp
            )
            answered = [i for group in queued.values() for i in group]
            await dead_letter_store.mark_redelivered(conn, answered, now)
        delivery_of = dict(zip(seqs, new_ids, strict=True))
        known = {c.id for c in candidates} | {c.event_id for c in candidates}
        result = RedeliveryResult(
            redelivered=[
                (c.id, c.event_id, delivery_of[c.event_seq]) for c in candidates if c.event_seq is not None
            ],
            not_retained=[c.id for c in candidates if c.event_seq is None],
            unknown=[i for i in (ids or []) if i not in known],
        )
        self._announce([CommittedDelivery(delivery_of[seq], seq, sub.id, stamp) for seq in seqs])
        log.info(
            "redelivering %d event(s) of %s",
            len(seqs),
            sub.name,
            extra={"action": "redelivered", "subscription_id": sub.id, "count": len(seqs)},
        )
        return result

    # -- replay -----------------------------------------------------------------------------------

    async def replay(self, sub: Subscription, start: datetime, end: datetime) -> ReplayResult:
        """Re-match the retained events published in ``[start, end)`` against the subscription's
        current filter and queue a new delivery for each match."""
        matches = compile_filter(sub.event_filter, sub.stored_schema)
        after: EventCursor | None = None
        examined = replayed = 0
        while True:
            async with self._db.read() as conn:
                page = await event_store.list_page(
                    conn, sub.topic_key, since=start, until=end, event_type=None,
                    after=after, limit=_PAGE,
                )
            if not page:
                break
            after = event_store.cursor_of(page[-1])
            examined += len(page)
            matched: list[tuple[int, dict[str, Any], float, int, str | None]] = []
            for stored in page:
                parsed = loads_exact(stored.body)
                if matches(parsed):
                    stamp = to_epoch(stored.published_at)
                    matched.append((stored.seq, parsed, stamp, len(stored.body), stored.traceparent))
            if matched:
                now = datetime.fromtimestamp(self._clock(), tz=UTC)
                async with self._db.write() as conn:
                    new_ids = await delivery_store.insert_pending(
                        conn, [NewDelivery(seq, sub.id) for seq, *_ in matched], now
                    )
                # The events are parsed already: hand them over so the dispatcher need not
                # read them back.
                self._dispatcher.remember_events(matched)
                self._announce([
                    CommittedDelivery(i, seq, sub.id, now)
                    for i, (seq, *_) in zip(new_ids, matched, strict=True)
                ])
                replayed += len(matched)
            if len(page) < _PAGE:
                break
        log.info(
            "replayed %d of %d event(s) to %s",
            replayed,
            examined,
            sub.name,
            extra={"action": "replayed", "subscription_id": sub.id, "count": replayed},
        )
        return ReplayResult(examined, replayed)

    # -- a deleted subscription ---------------------------------------------------------------------

    async def subscription_deleted(self, sub: Subscription) -> None:
        """End every pending delivery of a deleted subscription: dead-lettered (with a
        dead-letter destination) or dropped, reason ``SubscriptionDeleted``."""
        self._dispatcher.forget_subscription(sub.id)
        after = 0
        total = 0
        while True:
            now = self._clock()
            async with self._db.write() as conn:
                rows = await pull_store.pending_with_events(conn, sub.id, after, _PAGE)
                items = [
                    Undeliverable(
                        delivery_id=row.id,
                        subscription_id=sub.id,
                        subscription=sub,
                        event=loads_exact(row.event_body),
                        published_at=row.published_at,
                        reason=DeadLetterReason.SUBSCRIPTION_DELETED,
                        attempts=row.attempts,
                        last_outcome=row.last_outcome,
                        last_http_status=row.last_http_status,
                        last_error=None,
                        last_attempt_at=row.last_attempt_at,
                    )
                    for row in rows
                ]
                closed = await self._dead_letters.close(conn, items, now)
            self._dead_letters.report(closed)
            total += len(closed)
            if len(rows) < _PAGE:
                break
            after = rows[-1].id
        if total:
            log.info(
                "closed %d pending deliveries of deleted subscription %s",
                total,
                sub.name,
                extra={"action": "subscription_deleted", "subscription_id": sub.id, "count": total},
            )
