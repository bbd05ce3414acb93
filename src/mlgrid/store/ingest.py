"""A publish's rows: the new events and, for each of them, its deliveries, written together.

Every published event passes here, usually one per request, so the unit is written for its
cost: on SQLite both inserts run in one trip to the connection's thread
(``database.run_sqlite``), on PostgreSQL as two statements — for the group commit, on the
asyncpg connection itself in a transaction of asyncpg's (``Database.write_postgres``),
skipping SQLAlchemy's per-statement work. Deliveries are only written for events that were
new: an event id the topic already holds (idempotent publishing) gets none.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.store import deliveries as delivery_store
from mlgrid.store import events as event_store
from mlgrid.store.clock import to_epoch
from mlgrid.store.database import Database, run_sqlite
from mlgrid.store.deliveries import Claim, NewDelivery
from mlgrid.store.events import NewEvent
from mlgrid.store.leases import CHANNEL

__all__ = ["Claim", "EventKey", "StoredDelivery", "StoredPublish", "commit_publish", "store_publish"]

#: ``(topic_key, event_id)``: how a published event is known before it has a sequence number.
EventKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class StoredDelivery:
    id: int
    event_seq: int
    subscription_id: str
    event_key: EventKey
    claimed: bool = False


@dataclass
class StoredPublish:
    """What was written: the sequence number of each new event, and the deliveries (in the
    order of the events, then of their subscribers)."""

    seqs: dict[EventKey, int] = field(default_factory=dict)
    deliveries: list[StoredDelivery] = field(default_factory=list)


def _deliveries_for(
    seqs: Mapping[EventKey, int],
    new_events: Sequence[NewEvent],
    subscribers: Mapping[EventKey, Sequence[str]],
    claim: Claim | None,
    claimable: Collection[str],
) -> tuple[list[NewDelivery], list[EventKey]]:
    rows: list[NewDelivery] = []
    keys: list[EventKey] = []
    node = claim.node_id if claim is not None else None
    left = claim.limit if claim is not None else 0
    for event in new_events:
        key = (event.topic_key, event.event_id)
        seq = seqs.get(key)
        if seq is None:
            continue
        for subscription_id in subscribers.get(key, ()):
            if left > 0 and subscription_id in claimable:
                rows.append(NewDelivery(seq, subscription_id, node))
                left -= 1
            else:
                rows.append(NewDelivery(seq, subscription_id))
            keys.append(key)
    return rows, keys


def _stored(
    seqs: dict[EventKey, int], rows: list[NewDelivery], keys: list[EventKey], ids: list[int]
) -> StoredPublish:
    return StoredPublish(
        seqs,
        [
            StoredDelivery(i, row.event_seq, row.subscription_id, key, row.claimed_by is not None)
            for i, row, key in zip(ids, rows, keys, strict=True)
        ],
    )


async def store_publish(
    conn: AsyncConnection,
    new_events: Sequence[NewEvent],
    subscribers: Mapping[EventKey, Sequence[str]],
    published_at: datetime,
    claim: Claim | None = None,
    claimable: Collection[str] = (),
) -> StoredPublish:
    """Insert the events the topics do not hold yet and one pending delivery per subscriber
    of each of them. Must run inside a write transaction.

    PostgreSQL: with a ``claim``, the deliveries of the subscriptions in ``claimable`` are
    inserted already claimed by ``claim.node_id`` (its dispatcher takes them without a claim
    transaction of its own). SQLite has no claims and ignores both.
    """
    if not new_events:
        return StoredPublish()
    if conn.dialect.name == "postgresql":
        seqs = await event_store.insert_new(conn, new_events, published_at)
        rows, keys = _deliveries_for(seqs, new_events, subscribers, claim, claimable)
        return _stored(seqs, rows, keys, await delivery_store.insert_pending(conn, rows, published_at, claim))
    return await run_sqlite(conn, _sqlite_writer(new_events, subscribers, published_at))


async def commit_publish(
    db: Database,
    new_events: Sequence[NewEvent],
    subscribers: Mapping[EventKey, Sequence[str]],
    published_at: datetime,
    claim: Claim | None = None,
    claimable: Collection[str] = (),
    notify: str | None = None,
) -> StoredPublish:
    """``store_publish`` in a transaction of its own, committed when this returns (the group
    commit of published events). On SQLite the whole transaction is one trip. PostgreSQL:
    ``claimable`` are the push subscriptions; when a delivery of one of them is left
    unclaimed, ``notify`` (a payload) is sent to the other nodes at commit."""
    if not new_events:
        return StoredPublish()
    if db.is_sqlite:
        return await db.write_sqlite(_sqlite_writer(new_events, subscribers, published_at))
    return await db.write_postgres(
        _postgres_writer(new_events, subscribers, published_at, claim, claimable, notify)
    )


def _postgres_writer(
    new_events: Sequence[NewEvent],
    subscribers: Mapping[EventKey, Sequence[str]],
    published_at: datetime,
    claim: Claim | None,
    claimable: Collection[str],
    notify: str | None = None,
) -> Callable[[Any], Awaitable[StoredPublish]]:
    stamp = to_epoch(published_at)

    async def write(raw: Any) -> StoredPublish:
        seqs = await event_store.insert_new_postgres(raw, new_events, stamp)
        rows, keys = _deliveries_for(seqs, new_events, subscribers, claim, claimable)
        ids = await delivery_store.insert_pending_postgres(raw, rows, stamp, claim)
        if notify is not None and any(r.claimed_by is None and r.subscription_id in claimable for r in rows):
            # Push deliveries this node did not claim: wake the other nodes' claims at commit.
            await raw.execute("SELECT pg_notify($1, $2)", CHANNEL, notify)
        return _stored(seqs, rows, keys, ids)

    return write


def _sqlite_writer(
    new_events: Sequence[NewEvent], subscribers: Mapping[EventKey, Sequence[str]], published_at: datetime
) -> Callable[[sqlite3.Connection], StoredPublish]:
    stamp = to_epoch(published_at)

    def write(raw: sqlite3.Connection) -> StoredPublish:
        seqs = event_store.insert_new_sqlite(raw, new_events, stamp)
        rows, keys = _deliveries_for(seqs, new_events, subscribers, None, ())
        return _stored(seqs, rows, keys, delivery_store.insert_pending_sqlite(raw, rows, stamp))

    return write
