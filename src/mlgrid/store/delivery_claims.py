"""Push delivery claims: which node attempts which due row, and for how long.

Two ways to find work. On SQLite one process owns the database: the dispatcher keeps a bounded
window of due work in memory and reads the backlog a page at a time in due order
(``due_after``). On PostgreSQL several nodes share the table: each claims due rows under a
lease (``claim_due_push``, ``FOR UPDATE SKIP LOCKED`` so claimers never wait for each other)
and a node that dies leaves rows whose lease simply runs out. What an attempt ends in is
written by ``delivery_outcomes``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, exists, literal, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.domain.deliveries import DeliveryState
from mlgrid.store.deliveries import pull_subscription_query
from mlgrid.store.rows import to_record
from mlgrid.store.tables import deliveries, nodes


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
        .where(deliveries.c.subscription_id.not_in(pull_subscription_query()))
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
        deliveries.c.subscription_id.not_in(pull_subscription_query()),
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


async def _update_pending(
    conn: AsyncConnection, ids: Sequence[int], *where: ColumnElement[bool], **values: Any
) -> None:
    """Set ``values`` on the pending rows of ``ids`` that also match ``where``, in chunks
    within SQLite's bound on parameters."""
    ids = list(ids)
    for start in range(0, len(ids), 5000):
        await conn.execute(
            update(deliveries)
            .where(
                deliveries.c.id.in_(ids[start:start + 5000]),
                deliveries.c.state == DeliveryState.PENDING,
                *where,
            )
            .values(**values)
        )


async def _update_own_claims(conn: AsyncConnection, node_id: str, ids: Sequence[int], **values: Any) -> None:
    """Set ``values`` on the pending rows of ``ids`` this node still claims."""
    await _update_pending(conn, ids, deliveries.c.claimed_by == node_id, **values)


async def renew_leases(conn: AsyncConnection, node_id: str, ids: Sequence[int], lease_until: float) -> None:
    """Keep this node's claims alive while their work waits for capacity or is in flight."""
    await _update_own_claims(conn, node_id, ids, lease_until=lease_until)


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
    await _update_own_claims(conn, node_id, ids, claimed_by=None, lease_until=None)


async def advance_due(conn: AsyncConnection, ids: Sequence[int], now: float) -> None:
    """Make waiting deliveries due now (held back by a circuit that has closed since)."""
    await _update_pending(conn, ids, deliveries.c.next_attempt_at > now, next_attempt_at=now)
