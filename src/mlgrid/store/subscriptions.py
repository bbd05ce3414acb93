"""Event subscriptions: ARM properties (without secrets) plus sealed secrets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.errors import AlreadyExists
from mlgrid.store.clock import to_epoch
from mlgrid.store.rows import to_record
from mlgrid.store.tables import subscriptions


@dataclass(frozen=True)
class SubscriptionRow:
    id: str
    topic_key: str
    name: str
    endpoint_type: str
    properties: str  # JSON text
    secrets_sealed: str | None
    provisioning_state: str
    validation_code: str | None
    validation_expires_at: datetime | None
    expires_at: datetime | None
    etag: str
    created_at: datetime
    updated_at: datetime


def _row(r: object) -> SubscriptionRow:
    return to_record(SubscriptionRow, r)


def _values(row: SubscriptionRow) -> dict[str, object]:
    return {
        "id": row.id,
        "topic_key": row.topic_key,
        "name_key": row.name.lower(),
        "name": row.name,
        "endpoint_type": row.endpoint_type,
        "properties": row.properties,
        "secrets_sealed": row.secrets_sealed,
        "provisioning_state": row.provisioning_state,
        "validation_code": row.validation_code,
        "validation_expires_at": None
        if row.validation_expires_at is None
        else to_epoch(row.validation_expires_at),
        "expires_at": None if row.expires_at is None else to_epoch(row.expires_at),
        "etag": row.etag,
        "created_at": to_epoch(row.created_at),
        "updated_at": to_epoch(row.updated_at),
    }


async def get(conn: AsyncConnection, topic_key: str, name: str) -> SubscriptionRow | None:
    row = (
        await conn.execute(
            select(subscriptions).where(
                subscriptions.c.topic_key == topic_key, subscriptions.c.name_key == name.lower()
            )
        )
    ).first()
    return None if row is None else _row(row)


async def get_by_id(conn: AsyncConnection, subscription_id: str) -> SubscriptionRow | None:
    row = (await conn.execute(select(subscriptions).where(subscriptions.c.id == subscription_id))).first()
    return None if row is None else _row(row)


async def get_many(conn: AsyncConnection, ids: list[str]) -> dict[str, SubscriptionRow]:
    if not ids:
        return {}
    rows = await conn.execute(select(subscriptions).where(subscriptions.c.id.in_(ids)))
    return {r.id: _row(r) for r in rows}


async def list_for_topic(conn: AsyncConnection, topic_key: str) -> list[SubscriptionRow]:
    rows = await conn.execute(
        select(subscriptions).where(subscriptions.c.topic_key == topic_key).order_by(subscriptions.c.name_key)
    )
    return [_row(r) for r in rows]


async def list_all(conn: AsyncConnection) -> list[SubscriptionRow]:
    rows = await conn.execute(
        select(subscriptions).order_by(subscriptions.c.topic_key, subscriptions.c.name_key)
    )
    return [_row(r) for r in rows]


async def count_for_topic(conn: AsyncConnection, topic_key: str) -> int:
    rows = await conn.execute(select(subscriptions.c.id).where(subscriptions.c.topic_key == topic_key))
    return len(rows.all())


async def insert(conn: AsyncConnection, row: SubscriptionRow) -> None:
    try:
        async with conn.begin_nested():
            await conn.execute(subscriptions.insert().values(**_values(row)))
    except IntegrityError as exc:
        raise AlreadyExists(f"event subscription {row.name!r} already exists") from exc


async def update(conn: AsyncConnection, row: SubscriptionRow) -> None:
    values = _values(row)
    values.pop("id")
    values.pop("created_at")
    await conn.execute(subscriptions.update().where(subscriptions.c.id == row.id).values(**values))


async def delete_by_id(conn: AsyncConnection, subscription_id: str) -> bool:
    result = await conn.execute(delete(subscriptions).where(subscriptions.c.id == subscription_id))
    return bool(result.rowcount)


async def delete_for_topic(conn: AsyncConnection, topic_key: str) -> list[str]:
    query = select(subscriptions.c.id).where(subscriptions.c.topic_key == topic_key)
    ids = [r[0] for r in await conn.execute(query)]
    if ids:
        await conn.execute(delete(subscriptions).where(subscriptions.c.id.in_(ids)))
    return ids


async def list_expired(conn: AsyncConnection, now: datetime) -> list[SubscriptionRow]:
    rows = await conn.execute(
        select(subscriptions).where(
            subscriptions.c.expires_at.is_not(None), subscriptions.c.expires_at <= to_epoch(now)
        )
    )
    return [_row(r) for r in rows]


async def signature(conn: AsyncConnection) -> tuple[int, float, float]:
    """(row count, latest and summed ``updated_at``): changes whenever any node creates,
    changes or deletes a subscription, so a node can poll it cheaply and reload only when it
    moves. The sum catches an update stamped earlier than the latest one (clock skew)."""
    updated = subscriptions.c.updated_at
    row = (await conn.execute(select(func.count(), func.max(updated), func.sum(updated)))).one()
    return int(row[0]), float(row[1] or 0.0), float(row[2] or 0.0)


async def list_versions(conn: AsyncConnection) -> dict[str, str]:
    """Every subscription id with its etag: what a node diffs its cache against."""
    rows = await conn.execute(select(subscriptions.c.id, subscriptions.c.etag))
    return {r[0]: r[1] for r in rows}


async def list_stale_validations(conn: AsyncConnection, state: str, now: datetime) -> list[SubscriptionRow]:
    """Subscriptions still in ``state`` (awaiting manual validation) whose window has passed."""
    rows = await conn.execute(
        select(subscriptions).where(
            subscriptions.c.provisioning_state == state,
            subscriptions.c.validation_expires_at.is_not(None),
            subscriptions.c.validation_expires_at <= to_epoch(now),
        )
    )
    return [_row(r) for r in rows]


async def next_sweep_due(conn: AsyncConnection, state: str, now: datetime) -> float | None:
    """The earliest moment after ``now`` (epoch seconds) at which a subscription expires or a
    manual validation window (``state``) closes; None when nothing is scheduled. The sweeper
    sleeps until then instead of looking every few seconds."""
    moment = to_epoch(now)
    expiry = select(func.min(subscriptions.c.expires_at)).where(subscriptions.c.expires_at > moment)
    window = select(func.min(subscriptions.c.validation_expires_at)).where(
        subscriptions.c.provisioning_state == state, subscriptions.c.validation_expires_at > moment
    )
    row = (await conn.execute(select(expiry.scalar_subquery(), window.scalar_subquery()))).one()
    found = [float(v) for v in row if v is not None]
    return min(found) if found else None


async def set_state_if(
    conn: AsyncConnection, subscription_id: str, expected_etag: str, state: str, etag: str, now: datetime
) -> bool:
    """Change the provisioning state unless the row changed meanwhile (compare-and-set on etag)."""
    result = await conn.execute(
        subscriptions.update()
        .where(subscriptions.c.id == subscription_id, subscriptions.c.etag == expected_etag)
        .values(provisioning_state=state, etag=etag, updated_at=to_epoch(now))
    )
    return bool(result.rowcount)


async def delete_if_expired(conn: AsyncConnection, subscription_id: str, now: datetime) -> bool:
    """Delete the subscription if it has expired; ``False`` when another node was first."""
    result = await conn.execute(
        delete(subscriptions).where(
            subscriptions.c.id == subscription_id,
            subscriptions.c.expires_at.is_not(None),
            subscriptions.c.expires_at <= to_epoch(now),
        )
    )
    return bool(result.rowcount)
