"""Key/value facts about the data directory (its subscription id, first-start markers)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.store.tables import meta


async def get_value(conn: AsyncConnection, key: str) -> str | None:
    row = (await conn.execute(select(meta.c.value).where(meta.c.key == key))).first()
    return None if row is None else str(row[0])


async def set_if_absent(conn: AsyncConnection, key: str, value: str) -> str:
    """Store ``value`` unless the key exists; return what is stored (first writer wins)."""
    existing = await get_value(conn, key)
    if existing is not None:
        return existing
    try:
        async with conn.begin_nested():
            await conn.execute(meta.insert().values(key=key, value=value))
    except IntegrityError:
        stored = await get_value(conn, key)
        assert stored is not None
        return stored
    return value


async def set_value(conn: AsyncConnection, key: str, value: str) -> None:
    result = await conn.execute(meta.update().where(meta.c.key == key).values(value=value))
    if result.rowcount == 0:
        await conn.execute(meta.insert().values(key=key, value=value))
