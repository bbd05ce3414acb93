"""What push attempts end in: retries, holds, final states and each delivery's attempt history.

The writes are the dispatcher's hot path (one row per delivered event), batched per
transaction (``commit_outcomes``) and, on PostgreSQL, fenced by the claim the attempt was made
under (``delivery_claims``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.domain.records import AttemptRecord
from mlgrid.store.database import Database
from mlgrid.store.tables import deliveries, delivery_attempts


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
