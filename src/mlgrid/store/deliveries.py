"""Delivery rows: one per (event, matching subscription), the dispatcher's only input.

States: ``pending`` (waiting for an attempt, leased to a node while in flight, or locked by a
pull receiver), then exactly one final state: ``delivered``, ``deadLettered`` or ``dropped``.

This module writes new rows (a publish's fan-out) and reads them for the API. The other jobs on
the same table have modules of their own: push claims and leases (``delivery_claims``), the
outcome of attempts and their history (``delivery_outcomes``), and pull (``Queue``) receivers'
locks (``delivery_pull``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.domain.deliveries import DeliveryState
from mlgrid.domain.endpoints import EndpointType
from mlgrid.domain.records import DeliveryRow
from mlgrid.store.clock import to_epoch
from mlgrid.store.database import run_sqlite
from mlgrid.store.rows import to_record
from mlgrid.store.tables import deliveries, events, subscriptions


@dataclass(frozen=True)
class NewDelivery:
    event_seq: int
    subscription_id: str
    #: The node whose dispatcher takes it at once (PostgreSQL: a claim made at insert, with
    #: ``Claim.lease_until``), or None to leave it to whichever node claims it first.
    claimed_by: str | None = None


@dataclass(frozen=True)
class Claim:
    """Deliveries claimed as they are inserted: by ``node_id``, leased until ``lease_until``,
    at most ``limit`` of them (the rest stay free for any node)."""

    node_id: str
    lease_until: float
    limit: int


def row_to_delivery(r: object) -> DeliveryRow:
    return to_record(DeliveryRow, r)


_INSERT_SQL = (
    "INSERT INTO deliveries (id, event_seq, subscription_id, state, attempts, next_attempt_at, created_at) "
    "VALUES (?, ?, ?, 'pending', 0, ?, ?)"
)


#: PostgreSQL: every row of a publish in one statement, the columns as arrays. RETURNING gives
#: no order, so the rows come back with their (event, subscription) pair, unique in a publish.
_POSTGRES_INSERT_SQL = (
    "INSERT INTO deliveries (event_seq, subscription_id, state, attempts, next_attempt_at, created_at, "
    "claimed_by, lease_until) "
    "SELECT e, s, 'pending', 0, $3, $3, c, CASE WHEN c IS NULL THEN NULL ELSE $5::float8 END "
    "FROM unnest($1::bigint[], $2::varchar[], $4::varchar[]) AS u(e, s, c) "
    "RETURNING id, event_seq, subscription_id"
)


async def insert_pending(
    conn: AsyncConnection, new: Sequence[NewDelivery], now: datetime, claim: Claim | None = None
) -> list[int]:
    """Insert pending deliveries due now; returns their ids in the order given.

    Rows with ``claimed_by`` are inserted already claimed, leased until ``claim.lease_until``
    (PostgreSQL only: on SQLite one process owns the database and nothing is claimed).

    SQLite: the ids are allocated first and the rows written with one ``executemany`` (an
    ``INSERT ... RETURNING`` that must keep the order of its rows runs row by row there).
    PostgreSQL: one ``INSERT ... SELECT FROM unnest(...)`` for all of them.
    """
    if not new:
        return []
    stamp = to_epoch(now)
    if conn.dialect.name != "postgresql":
        return await run_sqlite(conn, lambda raw: insert_pending_sqlite(raw, new, stamp))
    rows: Sequence[Any] = (
        await conn.exec_driver_sql(_POSTGRES_INSERT_SQL, _postgres_parameters(new, stamp, claim))
    ).all()
    return _ids_in_order(new, rows)


async def insert_pending_postgres(
    raw: Any, new: Sequence[NewDelivery], stamp: float, claim: Claim | None = None
) -> list[int]:
    """``insert_pending`` on an asyncpg connection in a transaction asyncpg manages itself
    (``Database.write_postgres``), without SQLAlchemy's per-statement work."""
    if not new:
        return []
    rows = await raw.fetch(_POSTGRES_INSERT_SQL, *_postgres_parameters(new, stamp, claim))
    return _ids_in_order(new, rows)


def _postgres_parameters(new: Sequence[NewDelivery], stamp: float, claim: Claim | None) -> tuple[Any, ...]:
    return (
        [d.event_seq for d in new],
        [d.subscription_id for d in new],
        stamp,
        [d.claimed_by if claim is not None else None for d in new],
        claim.lease_until if claim is not None else None,
    )


def _ids_in_order(new: Sequence[NewDelivery], rows: Sequence[Any]) -> list[int]:
    """The returned ``(id, event_seq, subscription_id)`` rows, in the order of ``new``."""
    ids = {(int(seq), sid): int(i) for i, seq, sid in rows}
    if len(ids) != len(new):
        raise ValueError("insert_pending takes one delivery per (event, subscription) pair")
    return [ids[(d.event_seq, d.subscription_id)] for d in new]


_TOP_ID_SQL = (
    "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'deliveries'), 0), "
    "coalesce((SELECT max(id) FROM deliveries), 0))"
)


def insert_pending_sqlite(raw: sqlite3.Connection, new: Sequence[NewDelivery], stamp: float) -> list[int]:
    """``insert_pending`` on SQLite's own connection. One writer at a time holds the database
    inside this transaction, so the ids after the largest ever used are free.

    The largest *ever* (``sqlite_sequence``, which AUTOINCREMENT keeps, and the ids written
    here raise), not the largest now: deleting a topic deletes its newest deliveries, and an
    id used again would be taken by the dispatcher for the delivery it already ended."""
    if not new:
        return []
    top = int(raw.execute(_TOP_ID_SQL).fetchone()[0])
    ids = list(range(top + 1, top + 1 + len(new)))
    rows = [(i, d.event_seq, d.subscription_id, stamp, stamp) for i, d in zip(ids, new, strict=True)]
    raw.executemany(_INSERT_SQL, rows)
    return ids


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


async def get_for_subscription(
    conn: AsyncConnection, subscription_id: str, delivery_id: int
) -> tuple[DeliveryRow, str, str] | None:
    """One delivery of a subscription with its event id and type (``None``: not one of its)."""
    row = (
        await conn.execute(
            select(deliveries, events.c.event_id, events.c.event_type)
            .join(events, events.c.seq == deliveries.c.event_seq)
            .where(deliveries.c.subscription_id == subscription_id, deliveries.c.id == delivery_id)
        )
    ).first()
    return None if row is None else (row_to_delivery(row), row.event_id, row.event_type)


async def count_by_state(conn: AsyncConnection, subscription_id: str) -> dict[str, int]:
    rows = await conn.execute(
        select(deliveries.c.state, func.count())
        .where(deliveries.c.subscription_id == subscription_id)
        .group_by(deliveries.c.state)
    )
    counts = {state.value: 0 for state in DeliveryState}
    counts.update({state: int(n) for state, n in rows})
    return counts


def pull_subscription_query() -> Any:
    """The ids of pull (``Queue``) subscriptions, as a subquery: push claims leave their rows
    out, receivers fetch those themselves."""
    return select(subscriptions.c.id).where(subscriptions.c.endpoint_type == EndpointType.QUEUE)


async def count_pending(conn: AsyncConnection, subscription_id: str | None = None) -> int:
    query = select(func.count()).select_from(deliveries).where(deliveries.c.state == DeliveryState.PENDING)
    if subscription_id is not None:
        query = query.where(deliveries.c.subscription_id == subscription_id)
    return int((await conn.execute(query)).scalar_one())


async def get_many(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, DeliveryRow]:
    if not ids:
        return {}
    rows = await conn.execute(select(deliveries).where(deliveries.c.id.in_(list(ids))))
    return {r.id: row_to_delivery(r) for r in rows}
