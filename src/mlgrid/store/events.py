"""Retained events: the durable record of everything published, per topic.

Event ids are unique per topic (idempotent publishing): inserting an id the topic already
holds does nothing, and the caller learns which events were new from the returned rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import and_, delete, exists, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.store.clock import to_epoch
from mlgrid.store.database import run_sqlite
from mlgrid.store.rows import to_record
from mlgrid.store.tables import deliveries, events


@dataclass(frozen=True)
class NewEvent:
    """An event ready to store: ``body`` is its JSON text in the stored schema."""

    topic_key: str
    event_id: str
    event_type: str
    subject: str
    body: str


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    topic_key: str
    event_id: str
    event_type: str
    subject: str
    published_at: datetime
    body: str
    traceparent: str | None = None


def _stored(r: object) -> StoredEvent:
    return to_record(StoredEvent, r)


# Rows per INSERT statement on SQLite: 6 parameters each stays far below SQLite's limit of
# 32,766 bound variables, and one statement per chunk keeps the per-row overhead in C.
_SQLITE_ROWS_PER_STATEMENT = 1_000
# Rows per INSERT on PostgreSQL: the whole chunk travels as six array parameters.
_POSTGRES_ROWS_PER_STATEMENT = 10_000
_COLUMNS = "topic_key, event_id, event_type, subject, published_at, body"
_ON_CONFLICT = "ON CONFLICT (topic_key, event_id) DO NOTHING RETURNING seq, topic_key, event_id"
_POSTGRES_INSERT = (
    f"INSERT INTO events ({_COLUMNS}) "
    "SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::text[], $5::float8[], $6::text[]) "
    + _ON_CONFLICT
)


@lru_cache(maxsize=64)
def _sqlite_insert(rows: int) -> str:
    values = ",".join(["(?,?,?,?,?,?)"] * rows)
    return f"INSERT INTO events ({_COLUMNS}) VALUES {values} {_ON_CONFLICT}"


async def insert_new(
    conn: AsyncConnection, new_events: Sequence[NewEvent], published_at: datetime
) -> dict[tuple[str, str], int]:
    """Insert the events whose (topic, id) is not stored yet.

    Returns ``{(topic_key, event_id): seq}`` for the events that were inserted; duplicates
    (already stored, or repeated within ``new_events``) are absent from the result.

    This is the hottest statement of the product (every published event passes here), so it
    is written as driver SQL rather than built by the SQLAlchemy compiler, which spent more
    time processing the parameters of a multi-row insert than the database spent inserting:
    SQLite gets one multi-row ``VALUES`` statement per chunk, PostgreSQL one ``unnest`` of
    six arrays. Both keep ``ON CONFLICT DO NOTHING RETURNING``, so idempotency and the new
    sequence numbers come from the same statement. The column list matches ``tables.events``.
    """
    if not new_events:
        return {}
    stamp = to_epoch(published_at)
    if conn.dialect.name == "postgresql":
        inserted: dict[tuple[str, str], int] = {}
        for parameters in _postgres_parameters(new_events, stamp):
            rows: Sequence[Any] = (await conn.exec_driver_sql(_POSTGRES_INSERT, parameters)).all()
            for seq, topic_key, event_id in rows:
                inserted[(topic_key, event_id)] = seq
        return inserted
    return await run_sqlite(conn, lambda raw: insert_new_sqlite(raw, new_events, stamp))


def _postgres_parameters(new_events: Sequence[NewEvent], stamp: float) -> list[tuple[list[Any], ...]]:
    """The six arrays of ``_POSTGRES_INSERT``, one tuple per statement's chunk."""
    chunks: list[tuple[list[Any], ...]] = []
    for start in range(0, len(new_events), _POSTGRES_ROWS_PER_STATEMENT):
        chunk = new_events[start : start + _POSTGRES_ROWS_PER_STATEMENT]
        chunks.append((
            [e.topic_key for e in chunk],
            [e.event_id for e in chunk],
            [e.event_type for e in chunk],
            [e.subject for e in chunk],
            [stamp] * len(chunk),
            [e.body for e in chunk],
        ))
    return chunks


async def insert_new_postgres(
    raw: Any, new_events: Sequence[NewEvent], stamp: float
) -> dict[tuple[str, str], int]:
    """``insert_new`` on an asyncpg connection in a transaction asyncpg manages itself
    (``Database.write_postgres``), without SQLAlchemy's per-statement work."""
    inserted: dict[tuple[str, str], int] = {}
    for parameters in _postgres_parameters(new_events, stamp):
        for seq, topic_key, event_id in await raw.fetch(_POSTGRES_INSERT, *parameters):
            inserted[(topic_key, event_id)] = seq
    return inserted


def insert_new_sqlite(
    raw: sqlite3.Connection, new_events: Sequence[NewEvent], stamp: float
) -> dict[tuple[str, str], int]:
    """``insert_new`` on SQLite's own connection (see ``database.run_sqlite``)."""
    inserted: dict[tuple[str, str], int] = {}
    for start in range(0, len(new_events), _SQLITE_ROWS_PER_STATEMENT):
        chunk = new_events[start : start + _SQLITE_ROWS_PER_STATEMENT]
        flat: list[object] = []
        for e in chunk:
            flat += (e.topic_key, e.event_id, e.event_type, e.subject, stamp, e.body)
        for seq, topic_key, event_id in raw.execute(_sqlite_insert(len(chunk)), flat).fetchall():
            inserted[(topic_key, event_id)] = seq
    return inserted


async def set_traceparent(conn: AsyncConnection, seqs: Sequence[int], traceparent: str) -> None:
    """Record the trace context the events were emitted in (a traced workspace change). Only
    called when there is one: with tracing off the column stays NULL at no cost."""
    if seqs:
        await conn.execute(update(events).where(events.c.seq.in_(list(seqs))).values(traceparent=traceparent))


async def get_by_seq(conn: AsyncConnection, seqs: Sequence[int]) -> dict[int, StoredEvent]:
    if not seqs:
        return {}
    rows = await conn.execute(select(events).where(events.c.seq.in_(list(seqs))))
    return {r.seq: _stored(r) for r in rows}


#: Where a page of events ends: ``(published_at as epoch seconds, seq)`` of its last event.
#: Events are listed in that order, which the index ``ix_events_topic_published_seq``
#: (topic_key, published_at, seq) serves directly, with or without a time window.
EventCursor = tuple[float, int]


def cursor_of(event: StoredEvent) -> EventCursor:
    """The paging cursor that continues after ``event``."""
    return (to_epoch(event.published_at), event.seq)


async def latest_by_type(conn: AsyncConnection, topic_keys: Sequence[str]) -> list[tuple[str, str, int]]:
    """For each (topic, event type) retained on ``topic_keys``: the newest event's seq."""
    if not topic_keys:
        return []
    rows = await conn.execute(
        select(events.c.topic_key, events.c.event_type, func.max(events.c.seq))
        .where(events.c.topic_key.in_(list(topic_keys)))
        .group_by(events.c.topic_key, events.c.event_type)
    )
    return [(r[0], r[1], int(r[2])) for r in rows]


async def list_page(
    conn: AsyncConnection,
    topic_key: str,
    *,
    since: datetime | None,
    until: datetime | None,
    event_type: str | None,
    after: EventCursor | None = None,
    limit: int,
) -> list[StoredEvent]:
    """Events oldest first (by publish time, then sequence), continuing after ``after``.

    Keyset paging: every page is one index range scan from the cursor on, however many events
    the topic retains (an ``OFFSET`` would read and skip every earlier row). ``published_at >=``
    is repeated beside the row comparison so that SQLite, too, starts the scan at the cursor.
    """
    query = select(events).where(events.c.topic_key == topic_key)
    if since is not None:
        query = query.where(events.c.published_at >= to_epoch(since))
    if until is not None:
        query = query.where(events.c.published_at < to_epoch(until))
    if after is not None:
        stamp, seq = after
        query = query.where(
            events.c.published_at >= stamp, tuple_(events.c.published_at, events.c.seq) > tuple_(stamp, seq)
        )
    if event_type:
        query = query.where(func.lower(events.c.event_type) == event_type.lower())
    rows = await conn.execute(query.order_by(events.c.published_at, events.c.seq).limit(limit))
    return [_stored(r) for r in rows]


async def count_for_topic(conn: AsyncConnection, topic_key: str) -> int:
    row = await conn.execute(select(func.count()).select_from(events).where(events.c.topic_key == topic_key))
    return int(row.scalar_one())


async def delete_expired(
    conn: AsyncConnection, topic_key: str, older_than: datetime, limit: int, after: EventCursor | None = None
) -> tuple[int, EventCursor | None]:
    """Delete up to ``limit`` events published before ``older_than`` that no delivery still
    waits for, with their (final) deliveries; examine at most ``limit`` candidates, oldest
    first, from ``after`` on.

    Returns (events deleted, the cursor after the last candidate examined — None when no
    candidate was left). Continuing from the cursor keeps each batch one bounded index range,
    even when old events held back by a pending delivery sit at the start of the range.
    """
    pending = exists().where(
        and_(deliveries.c.event_seq == events.c.seq, deliveries.c.state == "pending")
    )
    candidates = select(events.c.seq, events.c.published_at, ~pending).where(
        events.c.topic_key == topic_key, events.c.published_at < to_epoch(older_than)
    )
    if after is not None:
        stamp, seq = after
        candidates = candidates.where(
            events.c.published_at >= stamp, tuple_(events.c.published_at, events.c.seq) > tuple_(stamp, seq)
        )
    rows = (await conn.execute(candidates.order_by(events.c.published_at, events.c.seq).limit(limit))).all()
    if not rows:
        return 0, None
    seqs = [seq for seq, _, deletable in rows if deletable]
    if seqs:
        await conn.execute(delete(deliveries).where(deliveries.c.event_seq.in_(seqs)))
        await conn.execute(delete(events).where(events.c.seq.in_(seqs)))
    last_seq, last_stamp, _ = rows[-1]
    return len(seqs), (float(last_stamp), int(last_seq))


_SQLITE_CANDIDATES = (
    "SELECT seq, published_at, NOT EXISTS (SELECT 1 FROM deliveries "
    "WHERE deliveries.event_seq = events.seq AND deliveries.state = 'pending') "
    "FROM events WHERE topic_key = ? AND published_at < ? {after}"
    "ORDER BY published_at, seq LIMIT ?"
)
_SQLITE_AFTER = "AND published_at >= ? AND (published_at, seq) > (?, ?) "


def delete_expired_sqlite(
    raw: sqlite3.Connection, topic_key: str, older_than: float, limit: int, after: EventCursor | None
) -> tuple[int, EventCursor | None]:
    """``delete_expired`` on SQLite's own connection, in one trip to its thread
    (``Database.write_sqlite``): the write lock is held for the statements' own time only,
    not for a thread hop per statement, which on a loaded machine is what publishes waited for."""
    if after is None:
        rows = raw.execute(_SQLITE_CANDIDATES.format(after=""), (topic_key, older_than, limit)).fetchall()
    else:
        stamp, seq = after
        rows = raw.execute(
            _SQLITE_CANDIDATES.format(after=_SQLITE_AFTER), (topic_key, older_than, stamp, stamp, seq, limit)
        ).fetchall()
    if not rows:
        return 0, None
    seqs = [seq for seq, _, deletable in rows if deletable]
    if seqs:
        marks = ",".join("?" * len(seqs))
        raw.execute(f"DELETE FROM deliveries WHERE event_seq IN ({marks})", seqs)
        raw.execute(f"DELETE FROM events WHERE seq IN ({marks})", seqs)
    last_seq, last_stamp, _ = rows[-1]
    return len(seqs), (float(last_stamp), int(last_seq))


async def delete_topic_events(conn: AsyncConnection, topic_key: str) -> None:
    seqs = select(events.c.seq).where(events.c.topic_key == topic_key)
    await conn.execute(delete(deliveries).where(deliveries.c.event_seq.in_(seqs)))
    await conn.execute(delete(events).where(events.c.topic_key == topic_key))
