"""Dead-letter records: the events a subscription gave up on, kept for listing and redelivery.

Each row holds the full record (the event in the subscription's delivery schema plus
``deadLetterReason``, ``deliveryAttempts``, ...) as JSON text, exactly as written to the blob,
and the blob's path under the data directory. ``redelivered_at`` is set when the record was
queued again, so "redeliver all" does not send the same dead letter twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.domain.records import DeadLetterRow
from mlgrid.store.rows import to_record
from mlgrid.store.tables import dead_letters, deliveries, events


@dataclass(frozen=True)
class NewDeadLetter:
    id: str
    subscription_id: str
    delivery_id: int | None
    event_id: str
    reason: str
    record: str  # JSON text of the record
    blob_path: str | None
    created_at: float


def _row(r: Any) -> DeadLetterRow:
    return to_record(DeadLetterRow, r)


async def insert_many(conn: AsyncConnection, rows: Sequence[NewDeadLetter]) -> None:
    if not rows:
        return
    await conn.execute(
        dead_letters.insert(),
        [
            {
                "id": r.id,
                "subscription_id": r.subscription_id,
                "delivery_id": r.delivery_id,
                "event_id": r.event_id,
                "reason": r.reason,
                "record": r.record,
                "blob_path": r.blob_path,
                "created_at": r.created_at,
            }
            for r in rows
        ],
    )


async def list_page(
    conn: AsyncConnection, subscription_id: str, after: tuple[float, str] | None, limit: int
) -> list[DeadLetterRow]:
    """Dead letters of a subscription, oldest first, continuing after ``(created_at, id)``."""
    query = select(dead_letters).where(dead_letters.c.subscription_id == subscription_id)
    if after is not None:
        created, last_id = after
        # ``created_at >=`` beside the exact condition: the index range starts at the cursor.
        query = query.where(
            dead_letters.c.created_at >= created,
            or_(
                dead_letters.c.created_at > created,
                and_(dead_letters.c.created_at == created, dead_letters.c.id > last_id),
            ),
        )
    rows = await conn.execute(query.order_by(dead_letters.c.created_at, dead_letters.c.id).limit(limit))
    return [_row(r) for r in rows]


async def count_for_subscription(conn: AsyncConnection, subscription_id: str) -> int:
    query = select(func.count()).select_from(dead_letters)
    result = await conn.execute(query.where(dead_letters.c.subscription_id == subscription_id))
    return int(result.scalar_one())


@dataclass(frozen=True)
class RedeliveryCandidate:
    """A dead letter and the retained event it came from (``event_seq`` None: not retained)."""

    id: str
    event_id: str
    event_seq: int | None


async def redelivery_candidates(
    conn: AsyncConnection, subscription_id: str, ids: Sequence[str] | None
) -> list[RedeliveryCandidate]:
    """The dead letters to queue again: every one not redelivered yet, or those whose id or
    event id is among ``ids``."""
    query = (
        select(dead_letters.c.id, dead_letters.c.event_id, events.c.seq)
        .select_from(
            # Matched on subscription and event id too: a delivery id can only point to the
            # right event while that delivery row exists, and ids of deleted rows may return.
            dead_letters.outerjoin(
                deliveries,
                and_(
                    deliveries.c.id == dead_letters.c.delivery_id,
                    deliveries.c.subscription_id == dead_letters.c.subscription_id,
                ),
            ).outerjoin(
                events,
                and_(events.c.seq == deliveries.c.event_seq, events.c.event_id == dead_letters.c.event_id),
            )
        )
        .where(dead_letters.c.subscription_id == subscription_id)
    )
    if ids is None:
        query = query.where(dead_letters.c.redelivered_at.is_(None))
    else:
        query = query.where(or_(dead_letters.c.id.in_(list(ids)), dead_letters.c.event_id.in_(list(ids))))
    rows = await conn.execute(query.order_by(dead_letters.c.created_at, dead_letters.c.id))
    return [RedeliveryCandidate(r[0], r[1], r[2]) for r in rows]


async def mark_redelivered(conn: AsyncConnection, ids: Sequence[str], now: float) -> None:
    if ids:
        await conn.execute(
            update(dead_letters).where(dead_letters.c.id.in_(list(ids))).values(redelivered_at=now)
        )


async def waiting_by_delivery(conn: AsyncConnection, delivery_ids: Sequence[int]) -> dict[int, str]:
    """The dead letter of each of ``delivery_ids`` that was not redelivered yet, by delivery id
    (the event page's *Redeliver* button)."""
    if not delivery_ids:
        return {}
    query = select(dead_letters.c.delivery_id, dead_letters.c.id).where(
        dead_letters.c.delivery_id.in_(list(delivery_ids)), dead_letters.c.redelivered_at.is_(None)
    )
    return {int(r.delivery_id): str(r.id) for r in await conn.execute(query)}
