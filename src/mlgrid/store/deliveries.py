"""Delivery rows: one per (event, matching subscription), the dispatcher's only input.

States: ``pending`` (waiting for an attempt, leased to a node while in flight, or locked by a
pull receiver), then exactly one final state: ``delivered``, ``deadLettered`` or ``dropped``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.store.clock import from_epoch, to_epoch, utc_from_epoch
from mlgrid.store.tables import deliveries, events

PENDING = "pending"
DELIVERED = "delivered"
DEAD_LETTERED = "deadLettered"
DROPPED = "dropped"
STATES = (PENDING, DELIVERED, DEAD_LETTERED, DROPPED)


@dataclass(frozen=True)
class NewDelivery:
    event_seq: int
    subscription_id: str


@dataclass(frozen=True)
class DeliveryRow:
    id: int
    event_seq: int
    subscription_id: str
    state: str
    attempts: int
    next_attempt_at: datetime
    claimed_by: str | None
    lease_until: datetime | None
    lock_token: str | None
    last_outcome: str | None
    last_http_status: int | None
    last_error: str | None
    last_attempt_at: datetime | None
    final_reason: str | None
    created_at: datetime
    finished_at: datetime | None


def row_to_delivery(r: object) -> DeliveryRow:
    return DeliveryRow(
        id=r.id,  # type: ignore[attr-defined]
        event_seq=r.event_seq,  # type: ignore[attr-defined]
        subscription_id=r.subscription_id,  # type: ignore[attr-defined]
        state=r.state,  # type: ignore[attr-defined]
        attempts=r.attempts,  # type: ignore[attr-defined]
        next_attempt_at=utc_from_epoch(r.next_attempt_at),  # type: ignore[attr-defined]
        claimed_by=r.claimed_by,  # type: ignore[attr-defined]
        lease_until=from_epoch(r.lease_until),  # type: ignore[attr-defined]
        lock_token=r.lock_token,  # type: ignore[attr-defined]
        last_outcome=r.last_outcome,  # type: ignore[attr-defined]
        last_http_status=r.last_http_status,  # type: ignore[attr-defined]
        last_error=r.last_error,  # type: ignore[attr-defined]
        last_attempt_at=from_epoch(r.last_attempt_at),  # type: ignore[attr-defined]
        final_reason=r.final_reason,  # type: ignore[attr-defined]
        created_at=utc_from_epoch(r.created_at),  # type: ignore[attr-defined]
        finished_at=from_epoch(r.finished_at),  # type: ignore[attr-defined]
    )


async def insert_pending(
    conn: AsyncConnection, new: Sequence[NewDelivery], now: datetime
) -> list[int]:
    """Insert pending deliveries due now; returns their ids in the order given."""
    if not new:
        return []
    stamp = to_epoch(now)
    rows = [
        {
            "event_seq": d.event_seq,
            "subscription_id": d.subscription_id,
            "state": PENDING,
            "attempts": 0,
            "next_attempt_at": stamp,
            "created_at": stamp,
        }
        for d in new
    ]
    result = await conn.execute(
        deliveries.insert().returning(deliveries.c.id, sort_by_parameter_order=True), rows
    )
    return [r[0] for r in result.all()]


async def list_for_subscription(
    conn: AsyncConnection, subscription_id: str, state: str | None, after_id: int, limit: int
) -> list[tuple[DeliveryRow, str, str]]:
    """Deliveries of a subscription with their event id and type, oldest first."""
    query = (
        select(deliveries, events.c.event_id, events.c.event_type)
        .join(events, events.c.seq == deliveries.c.event_seq)
        .where(deliveries.c.subscription_id == subscription_id, deliveries.c.id > after_id)
    )
    if state is not None:
        query = query.where(deliveries.c.state == state)
    rows = await conn.execute(query.order_by(deliveries.c.id).limit(limit))
    return [(row_to_delivery(r), r.event_id, r.event_type) for r in rows]


async def count_by_state(conn: AsyncConnection, subscription_id: str) -> dict[str, int]:
    rows = await conn.execute(
        select(deliveries.c.state, func.count())
        .where(deliveries.c.subscription_id == subscription_id)
        .group_by(deliveries.c.state)
    )
    counts = dict.fromkeys(STATES, 0)
    counts.update({state: int(n) for state, n in rows})
    return counts
