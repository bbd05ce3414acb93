"""Read-only queries behind the web UI's live event stream and delivery-health views.

The live stream never reads event bodies: a row of the feed is the event's sequence number,
topic, id, type, subject and publish time, which is all a list needs. Every query walks the
primary key (``seq``) or an existing index and is bounded by a ``LIMIT``, so a busy topic with
millions of retained events costs the viewer no more than a quiet one.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.domain.records import DeliveryRow
from mlgrid.store.clock import from_epoch
from mlgrid.store.deliveries import row_to_delivery
from mlgrid.store.rows import to_record
from mlgrid.store.tables import deliveries, events

#: How far back (in sequence numbers) a filtered backlog query looks for matches at most.
BACKLOG_WINDOW = 100_000


@dataclass(frozen=True)
class FeedRow:
    """One retained event as the live stream lists it (no body)."""

    seq: int
    topic_key: str
    event_id: str
    event_type: str
    subject: str
    published_at: datetime


@dataclass(frozen=True)
class LastFailure:
    """The most recent failed attempt of a subscription's deliveries."""

    delivery_id: int
    state: str
    outcome: str | None
    http_status: int | None
    error: str | None
    attempted_at: datetime | None


_FEED_COLUMNS = (
    events.c.seq,
    events.c.topic_key,
    events.c.event_id,
    events.c.event_type,
    events.c.subject,
    events.c.published_at,
)


def _feed_row(r: object) -> FeedRow:
    return to_record(FeedRow, r)


async def latest_seq(conn: AsyncConnection) -> int:
    """The highest sequence number stored (0 when there are no events)."""
    value = (await conn.execute(select(func.max(events.c.seq)))).scalar_one_or_none()
    return int(value or 0)


async def newest_after(conn: AsyncConnection, after_seq: int, limit: int) -> list[FeedRow]:
    """Up to ``limit`` events with ``seq > after_seq``, the *newest* ones, oldest first.

    A viewer that fell behind a burst skips to the present instead of replaying it.
    """
    query = select(*_FEED_COLUMNS).where(events.c.seq > after_seq).order_by(events.c.seq.desc()).limit(limit)
    rows = [_feed_row(r) for r in await conn.execute(query)]
    rows.reverse()
    return rows


async def by_seq(conn: AsyncConnection, seqs: Collection[int]) -> list[FeedRow]:
    """The events among ``seqs`` that exist now, oldest first."""
    if not seqs:
        return []
    query = select(*_FEED_COLUMNS).where(events.c.seq.in_(list(seqs))).order_by(events.c.seq)
    return [_feed_row(r) for r in await conn.execute(query)]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _filtered(
    query: Select[Any],
    topic_keys: Collection[str],
    type_contains: str | None,
    subject_prefix: str | None,
) -> Select[Any]:
    query = query.where(events.c.topic_key.in_(sorted(topic_keys)))
    if type_contains:
        pattern = "%" + _escape_like(type_contains.lower()) + "%"
        query = query.where(func.lower(events.c.event_type).like(pattern, escape="\\"))
    if subject_prefix:
        pattern = _escape_like(subject_prefix.lower()) + "%"
        query = query.where(func.lower(events.c.subject).like(pattern, escape="\\"))
    return query


async def recent(
    conn: AsyncConnection,
    topic_keys: Collection[str],
    *,
    type_contains: str | None = None,
    subject_prefix: str | None = None,
    before_seq: int | None = None,
    after_seq: int = 0,
    limit: int = 50,
) -> list[FeedRow]:
    """The newest matching events (of the given topics), oldest first.

    Looks at most ``BACKLOG_WINDOW`` sequence numbers back from ``before_seq`` (or the newest
    event), so a filter that matches nothing stays cheap on a large table.
    """
    if not topic_keys:
        return []
    upper = before_seq if before_seq is not None else await latest_seq(conn) + 1
    lower = max(after_seq, upper - BACKLOG_WINDOW)
    query = select(*_FEED_COLUMNS).where(events.c.seq < upper, events.c.seq > lower)
    query = _filtered(query, topic_keys, type_contains, subject_prefix)
    rows = [_feed_row(r) for r in await conn.execute(query.order_by(events.c.seq.desc()).limit(limit))]
    rows.reverse()
    return rows


async def deliveries_of_event(conn: AsyncConnection, seq: int, limit: int = 200) -> list[DeliveryRow]:
    """Every delivery of one event (one per matching subscription, more after redelivery)."""
    query = select(deliveries).where(deliveries.c.event_seq == seq).order_by(deliveries.c.id).limit(limit)
    return [row_to_delivery(r) for r in await conn.execute(query)]


async def recent_deliveries(conn: AsyncConnection, subscription_id: str, limit: int = 50) -> list[
    tuple[DeliveryRow, int, str, str]
]:
    """The newest deliveries of a subscription with their event's seq, id and type."""
    query = (
        select(deliveries, events.c.event_id, events.c.event_type)
        .join(events, events.c.seq == deliveries.c.event_seq)
        .where(deliveries.c.subscription_id == subscription_id)
        .order_by(deliveries.c.id.desc())
        .limit(limit)
    )
    rows = await conn.execute(query)
    return [(row_to_delivery(r), r.event_seq, r.event_id, r.event_type) for r in rows]


async def last_failure(
    conn: AsyncConnection, subscription_id: str, states: Sequence[str], not_failures: Collection[str]
) -> LastFailure | None:
    """The newest delivery (in ``states``) whose last outcome is not one of ``not_failures``.

    Walks the (subscription, state) index newest first; failures live in the pending,
    dead-lettered and dropped states, so callers leave ``delivered`` out of ``states``.
    """
    found: list[tuple[int, LastFailure]] = []
    for state in states:
        query = (
            select(
                deliveries.c.id,
                deliveries.c.last_outcome,
                deliveries.c.last_http_status,
                deliveries.c.last_error,
                deliveries.c.last_attempt_at,
            )
            .where(
                deliveries.c.subscription_id == subscription_id,
                deliveries.c.state == state,
                deliveries.c.last_outcome.is_not(None),
                deliveries.c.last_outcome.not_in(sorted(not_failures)),
            )
            .order_by(deliveries.c.id.desc())
            .limit(1)
        )
        row = (await conn.execute(query)).first()
        if row is not None:
            found.append(
                (row.id, LastFailure(row.id, state, row.last_outcome, row.last_http_status, row.last_error,
                                     from_epoch(row.last_attempt_at)))
            )
    if not found:
        return None
    return max(found, key=lambda item: item[0])[1]


async def newest_in_state(conn: AsyncConnection, subscription_id: str, state: str) -> int | None:
    """The highest delivery id of a subscription in ``state`` (an index seek)."""
    query = select(func.max(deliveries.c.id)).where(
        deliveries.c.subscription_id == subscription_id, deliveries.c.state == state
    )
    value = (await conn.execute(query)).scalar_one_or_none()
    return None if value is None else int(value)


#: The delivery state a person reads: ``pending`` split by whether an attempt already failed.
RETRYING = "retrying"


async def delivery_states(
    conn: AsyncConnection, seqs: Collection[int]
) -> dict[int, tuple[str, dict[str, int]]]:
    """For each retained event among ``seqs``: its topic key and how many of its deliveries
    are in each state (``retrying`` for pending deliveries with a failed attempt behind them).

    An event without deliveries maps to an empty count (no subscription matched it); an
    event no longer retained is absent. One grouped query over the ``event_seq`` index.
    """
    if not seqs:
        return {}
    shown = case(
        (and_(deliveries.c.state == "pending", deliveries.c.attempts > 0), RETRYING),
        else_=deliveries.c.state,
    ).label("shown")
    query = (
        select(events.c.seq, events.c.topic_key, shown, func.count(deliveries.c.id).label("n"))
        .select_from(events.outerjoin(deliveries, deliveries.c.event_seq == events.c.seq))
        .where(events.c.seq.in_(sorted(set(seqs))))
        .group_by(events.c.seq, events.c.topic_key, shown)
    )
    found: dict[int, tuple[str, dict[str, int]]] = {}
    for row in await conn.execute(query):
        _, counts = found.setdefault(row.seq, (row.topic_key, {}))
        if row.shown is not None and row.n:
            counts[row.shown] = int(row.n)
    return found
