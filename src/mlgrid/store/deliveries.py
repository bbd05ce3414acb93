"""Delivery rows: one per (event, matching subscription), the dispatcher's only input.

States: ``pending`` (waiting for an attempt, leased to a node while in flight, or locked by a
pull receiver), then exactly one final state: ``delivered``, ``deadLettered`` or ``dropped``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, exists, func, literal, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.domain.deliveries import DeliveryState
from mlgrid.domain.endpoints import EndpointType
from mlgrid.domain.records import AttemptRecord, DeliveryRow
from mlgrid.store.clock import to_epoch
from mlgrid.store.database import Database, run_sqlite
from mlgrid.store.rows import to_record
from mlgrid.store.tables import deliveries, delivery_attempts, events, nodes, subscriptions


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


# -- the dispatcher's side ------------------------------------------------------------------
#
# Two ways to find work. On SQLite one process owns the database: the dispatcher keeps due
# a bounded window of due work in memory and reads the backlog a page at a time in due order
# (``due_after``). On
# PostgreSQL several nodes share the table: each claims due rows under a lease
# (``claim_due_push``, ``FOR UPDATE SKIP LOCKED`` so claimers never wait for each other) and a
# node that dies leaves rows whose lease simply runs out.


@dataclass(frozen=True)
class DueDelivery:
    """What the dispatcher needs of a pending row to attempt it (times as epoch seconds)."""

    id: int
    event_seq: int
    subscription_id: str
    attempts: int
    next_attempt_at: float
    created_at: float
    last_outcome: str | None = None
    last_http_status: int | None = None
    last_attempt_at: float | None = None


_DUE_COLUMNS = (
    deliveries.c.id,
    deliveries.c.event_seq,
    deliveries.c.subscription_id,
    deliveries.c.attempts,
    deliveries.c.next_attempt_at,
    deliveries.c.created_at,
    deliveries.c.last_outcome,
    deliveries.c.last_http_status,
    deliveries.c.last_attempt_at,
    deliveries.c.attempts_started,
)


def _due(r: Any) -> DueDelivery:
    # An attempt that started but never finished (the server died meanwhile) counts: the next
    # one tells the receiver so in ``aeg-delivery-count``.
    return to_record(DueDelivery, r, attempts=max(r.attempts, r.attempts_started or 0))


def _pull_subscription_ids() -> Any:
    return select(subscriptions.c.id).where(subscriptions.c.endpoint_type == EndpointType.QUEUE)


#: A position in due order: ``(next_attempt_at, id)``; the store reads after it.
DueKey = tuple[float, int]


async def due_after(
    conn: AsyncConnection,
    after: DueKey | None,
    limit: int,
    subscription_id: str | None = None,
    upto: DueKey | None = None,
) -> list[DueDelivery]:
    """Pending push deliveries in due order (``next_attempt_at``, then id), after ``after``
    (exclusive; None: from the start) and up to ``upto`` (inclusive; None: no end), whatever
    their lease: the SQLite dispatcher's window reads the backlog a page at a time.

    One subscription's rows when ``subscription_id`` is given (``ix_deliveries_subscription_due``),
    all of them otherwise (``ix_deliveries_due``). Rows of pull (``Queue``) subscriptions are
    left out: receivers fetch those themselves. Rows of subscriptions that no longer exist are
    included so the dispatcher can close them.
    """
    key = tuple_(deliveries.c.next_attempt_at, deliveries.c.id)
    conditions = [deliveries.c.state == DeliveryState.PENDING]
    if subscription_id is not None:
        conditions.append(deliveries.c.subscription_id == subscription_id)
    if after is not None:
        conditions.append(key > tuple_(literal(after[0]), literal(after[1])))
    if upto is not None:
        conditions.append(key <= tuple_(literal(upto[0]), literal(upto[1])))
    rows = await conn.execute(
        select(*_DUE_COLUMNS)
        .where(*conditions)
        .where(deliveries.c.subscription_id.not_in(_pull_subscription_ids()))
        .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
        .limit(limit)
    )
    return [_due(r) for r in rows]


async def claim_due_push(
    conn: AsyncConnection,
    node_id: str,
    now: float,
    lease_until: float,
    limit: int,
    skip_subscriptions: Collection[str] = (),
) -> list[DueDelivery]:
    """Claim up to ``limit`` due push deliveries for ``node_id`` until ``lease_until``.

    Due means pending, ``next_attempt_at`` reached, and not leased (or the lease ran out: the
    node that held it died or hung). On PostgreSQL the candidate rows are locked with
    ``SKIP LOCKED`` so concurrent claimers on other nodes take different rows. Rows of
    ``skip_subscriptions`` (whose endpoints have all the work they can take now) stay in the
    store, unclaimed.
    """
    conditions = [
        deliveries.c.state == DeliveryState.PENDING,
        deliveries.c.next_attempt_at <= now,
        or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now),
        deliveries.c.subscription_id.not_in(_pull_subscription_ids()),
    ]
    if conn.dialect.name == "postgresql":
        # A node declared dead claims nothing until it has rejoined under a new id.
        conditions.append(exists().where(nodes.c.id == node_id))
    if skip_subscriptions:
        conditions.append(deliveries.c.subscription_id.not_in(sorted(skip_subscriptions)))
    candidates = (
        select(deliveries.c.id)
        .where(*conditions)
        .order_by(deliveries.c.next_attempt_at)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True, of=deliveries)
    statement = (
        update(deliveries)
        .where(deliveries.c.id.in_(candidates.scalar_subquery()))
        .values(claimed_by=node_id, lease_until=lease_until)
        .returning(*_DUE_COLUMNS)
    )
    rows = await conn.execute(statement)
    return sorted((_due(r) for r in rows), key=lambda d: (d.next_attempt_at, d.id))


@dataclass(frozen=True)
class AttemptUpdate:
    """A non-final change after an attempt (or a hold): attempts, next time, last outcome.

    ``last_*`` fields of ``None`` keep what the row had (a hold by the circuit breaker makes
    no attempt, so there is nothing new to record but the time).
    """

    id: int
    attempts: int
    next_attempt_at: float
    last_outcome: str | None
    last_http_status: int | None
    last_error: str | None
    last_attempt_at: float | None
    last_duration_ms: int | None = None
    last_response: str | None = None


# The outcome writes below are the dispatcher's hot path: one row per delivered event. They run
# as driver-level ``executemany`` with plain tuples, because SQLAlchemy's per-row parameter
# processing costs several times what the database spends on the update itself. The SQL is
# written once with ``?`` placeholders and numbered for PostgreSQL's driver.

_RESCHEDULE_SQL = (
    "UPDATE deliveries SET attempts = ?, next_attempt_at = ?, last_outcome = ?, last_http_status = ?, "
    "last_error = ?, last_attempt_at = ?, last_duration_ms = ?, last_response = ?, "
    "claimed_by = NULL, lease_until = NULL "
    "WHERE id = ? AND state = 'pending'"
)
_HOLD_SQL = (
    "UPDATE deliveries SET next_attempt_at = ?, claimed_by = NULL, lease_until = NULL "
    "WHERE id = ? AND state = 'pending'"
)
_FINALIZE_SQL = (
    "UPDATE deliveries SET state = ?, attempts = ?, last_outcome = ?, last_http_status = ?, "
    "last_error = ?, last_attempt_at = ?, last_duration_ms = ?, last_response = ?, "
    "final_reason = ?, finished_at = ?, "
    "claimed_by = NULL, lease_until = NULL, lock_token = NULL "
    "WHERE id = ? AND state = 'pending'"
)


MAX_ATTEMPT_HISTORY = 20
"""Attempts kept per delivery in ``delivery_attempts`` (the newest; older ones are pruned)."""

# A retried attempt goes to the history too (the delivery row keeps only the latest). Typed
# casts let PostgreSQL resolve the parameters; EXISTS skips a delivery deleted meanwhile (its
# topic went away), which a plain INSERT would turn into a foreign-key error for the batch.
_HISTORY_SQL = (
    "INSERT INTO delivery_attempts "
    "(delivery_id, attempt, outcome, http_status, error, attempted_at, duration_ms, response) "
    "SELECT CAST(? AS BIGINT), CAST(? AS INTEGER), CAST(? AS VARCHAR(64)), CAST(? AS INTEGER), "
    "CAST(? AS TEXT), CAST(? AS DOUBLE PRECISION), CAST(? AS INTEGER), CAST(? AS TEXT) "
    "WHERE EXISTS (SELECT 1 FROM deliveries WHERE id = CAST(? AS BIGINT)) "
    "AND NOT EXISTS (SELECT 1 FROM delivery_attempts "
    "WHERE delivery_id = CAST(? AS BIGINT) AND attempt = CAST(? AS INTEGER))"
)
_PRUNE_HISTORY_SQL = "DELETE FROM delivery_attempts WHERE delivery_id = ? AND attempt <= ?"


def _history_rows(
    updates: Sequence[AttemptUpdate],
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Parameter rows of ``_HISTORY_SQL`` for the attempts that will be retried, and of
    ``_PRUNE_HISTORY_SQL`` for deliveries past ``MAX_ATTEMPT_HISTORY``."""
    inserts = [
        (u.id, u.attempts, u.last_outcome, u.last_http_status, u.last_error, u.last_attempt_at,
         u.last_duration_ms, u.last_response, u.id, u.id, u.attempts)
        for u in updates
        if u.last_attempt_at is not None
    ]
    prunes: list[tuple[Any, ...]] = [
        (u.id, u.attempts - MAX_ATTEMPT_HISTORY)
        for u in updates
        if u.last_attempt_at is not None and u.attempts > MAX_ATTEMPT_HISTORY
    ]
    return inserts, prunes


async def attempt_history(conn: AsyncConnection, delivery_id: int) -> list[AttemptRecord]:
    """The recorded attempts of a delivery, oldest first: the retried ones from
    ``delivery_attempts`` and the latest from the delivery row (at most ``MAX_ATTEMPT_HISTORY``
    earlier ones)."""
    table = delivery_attempts
    rows = await conn.execute(
        select(
            table.c.attempt, table.c.outcome, table.c.http_status, table.c.error, table.c.attempted_at,
            table.c.duration_ms, table.c.response,
        )
        .where(table.c.delivery_id == delivery_id)
        .order_by(table.c.attempt)
    )
    history = [AttemptRecord(*row) for row in rows]
    d = deliveries
    last = (
        await conn.execute(
            select(
                d.c.attempts, d.c.last_outcome, d.c.last_http_status, d.c.last_error, d.c.last_attempt_at,
                d.c.last_duration_ms, d.c.last_response,
            ).where(d.c.id == delivery_id)
        )
    ).first()
    newer = last is not None and (not history or history[-1].attempt < last.attempts)
    if last is not None and newer and last.last_attempt_at is not None and last.attempts > 0:
        history.append(AttemptRecord(*last))
    return history


def _driver_sql(conn: AsyncConnection, sql: str) -> str:
    """``?`` placeholders for SQLite, ``$1, $2, ...`` for asyncpg."""
    if conn.dialect.paramstyle != "numeric_dollar":
        return sql
    parts = sql.split("?")
    return "".join(f"{part}${n}" for n, part in enumerate(parts[:-1], start=1)) + parts[-1]


async def _executemany(
    conn: AsyncConnection, sql: str, rows: list[tuple[Any, ...]], claimed_by: str | None = None
) -> None:
    sql, rows = _fenced(sql, rows, claimed_by)
    await conn.exec_driver_sql(_driver_sql(conn, sql), rows)  # type: ignore[arg-type]


def _fenced(
    sql: str, rows: list[tuple[Any, ...]], claimed_by: str | None
) -> tuple[str, list[tuple[Any, ...]]]:
    """Fencing (PostgreSQL, several nodes): an outcome is written only while the row is still
    claimed by the node that made the attempt. A node that was declared dead (its claims were
    freed, perhaps taken by another node) cannot record what it did under the lost claim;
    the delivery is attempted again by its new holder (at least once)."""
    if claimed_by is None:
        return sql, rows
    return sql + " AND claimed_by = ?", [(*row, claimed_by) for row in rows]


def _reschedule_rows(updates: Sequence[AttemptUpdate]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The parameter rows of ``_RESCHEDULE_SQL`` (attempted) and ``_HOLD_SQL`` (held back)."""
    attempted = [
        (u.attempts, u.next_attempt_at, u.last_outcome, u.last_http_status, u.last_error, u.last_attempt_at,
         u.last_duration_ms, u.last_response, u.id)
        for u in updates
        if u.last_attempt_at is not None
    ]
    held: list[tuple[Any, ...]] = [(u.next_attempt_at, u.id) for u in updates if u.last_attempt_at is None]
    return attempted, held


async def reschedule(
    conn: AsyncConnection, updates: Sequence[AttemptUpdate], claimed_by: str | None = None
) -> None:
    """Write retries and holds (one executemany per kind); rows no longer pending (or, with
    ``claimed_by``, no longer claimed by that node) are untouched. Each retried attempt is also
    kept in the delivery's attempt history (the attempt happened, so it is not fenced)."""
    attempted, held = _reschedule_rows(updates)
    history, prunes = _history_rows(updates)
    if attempted:
        await _executemany(conn, _RESCHEDULE_SQL, attempted, claimed_by)
    if held:
        await _executemany(conn, _HOLD_SQL, held, claimed_by)
    if history:
        await _executemany(conn, _HISTORY_SQL, history)
    if prunes:
        await _executemany(conn, _PRUNE_HISTORY_SQL, prunes)


@dataclass(frozen=True)
class FinalUpdate:
    """The one final state of a delivery, with the last attempt's facts."""

    id: int
    state: str  # delivered | deadLettered | dropped
    attempts: int
    last_outcome: str | None
    last_http_status: int | None
    last_error: str | None
    last_attempt_at: float | None
    final_reason: str | None
    finished_at: float
    last_duration_ms: int | None = None
    last_response: str | None = None


def _final_row(u: FinalUpdate) -> tuple[Any, ...]:
    return (
        u.state,
        u.attempts,
        u.last_outcome,
        u.last_http_status,
        u.last_error,
        u.last_attempt_at,
        u.last_duration_ms,
        u.last_response,
        u.final_reason,
        u.finished_at,
        u.id,
    )


async def finalize_many(
    conn: AsyncConnection, updates: Sequence[FinalUpdate], claimed_by: str | None = None
) -> None:
    """Finish many deliveries in one executemany (successes: nothing else hangs on them).

    The ``state = 'pending'`` guard keeps the first final state: a success that lands after
    the subscription was deleted does not overwrite ``SubscriptionDeleted``.
    """
    if updates:
        await _executemany(conn, _FINALIZE_SQL, [_final_row(u) for u in updates], claimed_by)


async def commit_outcomes(
    db: Database,
    finals: Sequence[FinalUpdate],
    attempts: Sequence[AttemptUpdate],
    claimed_by: str | None = None,
) -> None:
    """``finalize_many`` then ``reschedule``, in a transaction of their own (the dispatcher's
    batch of outcomes). On SQLite the whole transaction is one trip to the database thread.
    ``claimed_by`` (PostgreSQL): only rows still claimed by that node are written."""
    if not finals and not attempts:
        return
    if db.is_sqlite:
        final_rows = [_final_row(u) for u in finals]
        attempted, held = _reschedule_rows(attempts)
        history, prunes = _history_rows(attempts)
        statements = (
            (_FINALIZE_SQL, final_rows), (_RESCHEDULE_SQL, attempted), (_HOLD_SQL, held),
            (_HISTORY_SQL, history), (_PRUNE_HISTORY_SQL, prunes),
        )

        def write(raw: sqlite3.Connection) -> None:
            for sql, rows in statements:
                if rows:
                    raw.executemany(sql, rows)

        await db.write_sqlite(write)
        return
    async with db.write() as conn:
        await finalize_many(conn, finals, claimed_by)
        await reschedule(conn, attempts, claimed_by)


_START_SQL = (
    "UPDATE deliveries SET attempts_started = ? "
    "WHERE id = ? AND state = 'pending' AND attempts_started < ?"
)


async def mark_attempts_started(db: Database, marks: Sequence[tuple[int, int]]) -> None:
    """Count attempts about to start: ``marks`` are ``(delivery id, attempts including the one
    starting)``, written to ``attempts_started`` before the request goes out, so a delivery
    re-sent after a crash says how many attempts were made (``aeg-delivery-count``), while
    ``attempts`` (the API's ``deliveryAttempts``) keeps counting finished ones. Final rows are
    untouched."""
    if not marks:
        return
    rows = [(count, delivery_id, count) for delivery_id, count in marks]
    if db.is_sqlite:

        def write(raw: sqlite3.Connection) -> None:
            raw.executemany(_START_SQL, rows)

        await db.write_sqlite(write)
        return
    async with db.write() as conn:
        await _executemany(conn, _START_SQL, rows)


async def finalize_one(conn: AsyncConnection, final: FinalUpdate, claimed_by: str | None = None) -> bool:
    """Finish one delivery; False when it was already final, or (``claimed_by``) no longer
    claimed by that node (then record nothing else)."""
    sql, rows = _fenced(_FINALIZE_SQL, [_final_row(final)], claimed_by)
    result = await conn.exec_driver_sql(_driver_sql(conn, sql), rows[0])
    return bool(result.rowcount)


async def renew_leases(conn: AsyncConnection, node_id: str, ids: Sequence[int], lease_until: float) -> None:
    """Keep this node's claims alive while their work waits for capacity or is in flight."""
    ids = list(ids)
    for start in range(0, len(ids), 5000):  # within SQLite's bound on parameters
        await conn.execute(
            update(deliveries)
            .where(
                deliveries.c.id.in_(ids[start:start + 5000]),
                deliveries.c.claimed_by == node_id,
                deliveries.c.state == DeliveryState.PENDING,
            )
            .values(lease_until=lease_until)
        )


async def release_claims_of(conn: AsyncConnection, node_id: str) -> int:
    """Forget the push claims a node held before it restarted, so it resumes them at once
    instead of waiting for its own leases to run out (pull locks are left to expire)."""
    result = await conn.execute(
        update(deliveries)
        .where(
            deliveries.c.claimed_by == node_id,
            deliveries.c.state == DeliveryState.PENDING,
            deliveries.c.lock_token.is_(None),
        )
        .values(claimed_by=None, lease_until=None)
    )
    return int(result.rowcount or 0)


async def release_push_claims(conn: AsyncConnection, node_id: str, ids: Sequence[int]) -> None:
    """Give claimed rows back to the store unattempted (their subscription cannot take more
    work now), so they wait there, for this node or another."""
    ids = list(ids)
    for start in range(0, len(ids), 5000):  # within SQLite's bound on parameters
        await conn.execute(
            update(deliveries)
            .where(
                deliveries.c.id.in_(ids[start:start + 5000]),
                deliveries.c.claimed_by == node_id,
                deliveries.c.state == DeliveryState.PENDING,
            )
            .values(claimed_by=None, lease_until=None)
        )


async def advance_due(conn: AsyncConnection, ids: Sequence[int], now: float) -> None:
    """Make waiting deliveries due now (held back by a circuit that has closed since)."""
    ids = list(ids)
    for start in range(0, len(ids), 5000):  # within SQLite's bound on parameters
        await conn.execute(
            update(deliveries)
            .where(
                deliveries.c.id.in_(ids[start:start + 5000]),
                deliveries.c.state == DeliveryState.PENDING,
                deliveries.c.next_attempt_at > now,
            )
            .values(next_attempt_at=now)
        )


# -- pull (Queue) subscriptions ---------------------------------------------------------------
#
# A received event is a pending row with a ``lock_token`` and ``lease_until`` (the lock's
# expiry); ``attempts`` counts how often it was handed out (its ``deliveryCount``). When the
# lock runs out the row is receivable again. Acknowledge finishes it; release clears the
# lock; renew moves ``lease_until``.


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
    return [r[0] for r in await conn.execute(_pull_subscription_ids())]


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
