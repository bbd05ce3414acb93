"""Pull (``Queue``) subscriptions: receivers lock, acknowledge, release and renew delivery rows.

A received event is a pending row with a ``lock_token`` and ``lease_until`` (the lock's
expiry); ``attempts`` counts how often it was handed out (its ``deliveryCount``). When the
lock runs out the row is receivable again. Acknowledge finishes it; release clears the
lock; renew moves ``lease_until``. ``PulledRow`` (a row with its event) also serves closing
every pending row of a subscription (``pending_with_events``), push or pull.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.domain.deliveries import DeliveryState
from mlgrid.store.deliveries import pull_subscription_query
from mlgrid.store.rows import to_record
from mlgrid.store.tables import deliveries, events


@dataclass(frozen=True)
class PulledRow:
    """A receivable (or locked) pull delivery with its event, for receive and reject."""

    id: int
    event_seq: int
    subscription_id: str
    attempts: int
    created_at: float
    lock_token: str | None
    last_attempt_at: float | None
    last_outcome: str | None
    last_http_status: int | None
    event_body: str
    published_at: float
    #: The trace context the event was published in (``events.traceparent``), if any.
    traceparent: str | None = None


_PULLED_COLUMNS = (
    deliveries.c.id,
    deliveries.c.event_seq,
    deliveries.c.subscription_id,
    deliveries.c.attempts,
    deliveries.c.created_at,
    deliveries.c.lock_token,
    deliveries.c.last_attempt_at,
    deliveries.c.last_outcome,
    deliveries.c.last_http_status,
    events.c.body,
    events.c.published_at,
    events.c.traceparent,
)


def _pulled(r: Any) -> PulledRow:
    return to_record(PulledRow, r, columns={"event_body": "body"})


async def receivable(conn: AsyncConnection, subscription_id: str, now: float, limit: int) -> list[PulledRow]:
    """Pending rows of a pull subscription that are due and not locked, oldest first.

    Must run in a write transaction; on PostgreSQL the rows are locked (``SKIP LOCKED``) so two
    receivers on different nodes never get the same event.
    """
    query = (
        select(*_PULLED_COLUMNS)
        .join(events, events.c.seq == deliveries.c.event_seq)
        .where(
            deliveries.c.subscription_id == subscription_id,
            deliveries.c.state == DeliveryState.PENDING,
            deliveries.c.next_attempt_at <= now,
            or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until <= now),
        )
        .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=deliveries)
    return [_pulled(r) for r in await conn.execute(query)]


async def lock_for_receiver(
    conn: AsyncConnection, locks: Sequence[tuple[int, str, int]], node_id: str, now: float, lock_until: float
) -> None:
    """Hand rows to a receiver: ``(id, lock_token, attempts)`` each."""
    if not locks:
        return
    await conn.execute(
        update(deliveries)
        .where(deliveries.c.id == bindparam("b_id"))
        .values(
            lock_token=bindparam("b_token"),
            attempts=bindparam("b_attempts"),
            claimed_by=node_id,
            lease_until=lock_until,
            last_attempt_at=now,
            last_outcome="Received",
        ),
        [{"b_id": i, "b_token": t, "b_attempts": a} for i, t, a in locks],
    )


def _locked(tokens: Sequence[str], subscription_id: str, now: float) -> Any:
    return (
        deliveries.c.subscription_id == subscription_id,
        deliveries.c.lock_token.in_(list(tokens)),
        deliveries.c.state == DeliveryState.PENDING,
        deliveries.c.lease_until > now,
    )


async def locked_rows(
    conn: AsyncConnection, subscription_id: str, tokens: Sequence[str], now: float
) -> list[PulledRow]:
    """The rows still locked under these tokens (unknown, expired or finished ones are absent)."""
    if not tokens:
        return []
    query = select(*_PULLED_COLUMNS).join(events, events.c.seq == deliveries.c.event_seq).where(
        *_locked(tokens, subscription_id, now)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(of=deliveries)
    return [_pulled(r) for r in await conn.execute(query)]


async def acknowledge_locked(
    conn: AsyncConnection, subscription_id: str, tokens: Sequence[str], now: float
) -> list[str]:
    """Finish the rows locked under ``tokens`` as delivered; returns the tokens that were."""
    if not tokens:
        return []
    result = await conn.execute(
        update(deliveries)
        .where(*_locked(tokens, subscription_id, now))
        .values(
            state=DeliveryState.DELIVERED,
            last_outcome="Acknowledged",
            finished_at=now,
            lease_until=None,
            claimed_by=None,
        )
        .returning(deliveries.c.lock_token)
    )
    return [r[0] for r in result]


async def release_rows(conn: AsyncConnection, ids: Sequence[int], available_at: float) -> None:
    """Unlock rows (found with ``locked_rows``) so they can be received again from
    ``available_at``; their ``attempts`` already counts the delivery they were locked for."""
    if not ids:
        return
    await conn.execute(
        update(deliveries)
        .where(deliveries.c.id.in_(list(ids)), deliveries.c.state == DeliveryState.PENDING)
        .values(
            next_attempt_at=available_at,
            last_outcome="Released",
            lease_until=None,
            claimed_by=None,
            lock_token=None,
        )
    )


async def renew_locked(
    conn: AsyncConnection, subscription_id: str, tokens: Sequence[str], now: float, lock_until: float
) -> list[str]:
    """Extend the locks that are still held; returns the tokens renewed."""
    if not tokens:
        return []
    result = await conn.execute(
        update(deliveries)
        .where(*_locked(tokens, subscription_id, now))
        .values(lease_until=lock_until)
        .returning(deliveries.c.lock_token)
    )
    return [r[0] for r in result]


async def pull_subscription_ids(conn: AsyncConnection) -> list[str]:
    return [r[0] for r in await conn.execute(pull_subscription_query())]


async def exhausted_pull_rows(
    conn: AsyncConnection,
    subscription_id: str,
    max_count: int,
    created_before: float,
    now: float,
    limit: int,
    *,
    lock: bool = True,
) -> list[PulledRow]:
    """Unlocked pull rows that may not be handed out again: delivered ``max_count`` times
    already (their last lock ran out) or older than the time to live."""
    query = (
        select(*_PULLED_COLUMNS)
        .join(events, events.c.seq == deliveries.c.event_seq)
        .where(
            deliveries.c.subscription_id == subscription_id,
            deliveries.c.state == DeliveryState.PENDING,
            or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until <= now),
            or_(deliveries.c.attempts >= max_count, deliveries.c.created_at < created_before),
        )
        .order_by(deliveries.c.id)
        .limit(limit)
    )
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=deliveries)
    return [_pulled(r) for r in await conn.execute(query)]


# -- whole-subscription operations -----------------------------------------------------------


async def pending_with_events(
    conn: AsyncConnection, subscription_id: str, after_id: int, limit: int
) -> list[PulledRow]:
    """Pending rows of a subscription with their events, in id order (to close them all)."""
    rows = await conn.execute(
        select(*_PULLED_COLUMNS)
        .join(events, events.c.seq == deliveries.c.event_seq)
        .where(
            deliveries.c.subscription_id == subscription_id,
            deliveries.c.state == DeliveryState.PENDING,
            deliveries.c.id > after_id,
        )
        .order_by(deliveries.c.id)
        .limit(limit)
    )
    return [_pulled(r) for r in rows]
