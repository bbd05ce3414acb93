"""The PostgreSQL connection pool survives the database dropping its connections.

Pooled connections are pinged only after sitting idle (``database._ping_when_idle``): this
checks that a connection the server killed while it waited in the pool is noticed and
replaced before anyone uses it, as a database restart would require.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import asyncpg
import pytest
from sqlalchemy import text
from tests.support.services import PG_HOST, PG_PORT, PG_USER, fresh_pg_database, need_postgres

from mlgrid.store.database import Database


@pytest.fixture
def pg_database() -> Iterator[str]:
    need_postgres()
    with fresh_pg_database("mlgrid_pool") as url:
        yield url


async def _terminate_connections_to(database: str) -> int:
    admin = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")
    try:
        rows = await admin.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
        return len(rows)
    finally:
        await admin.close()


async def test_connections_killed_while_idle_are_replaced_before_use(pg_database: str) -> None:
    name = pg_database.rsplit("/", 1)[-1]
    db = Database.connect(pg_database, pool_size=3)
    try:
        # Several connections in the pool, all idle afterwards.
        async def one() -> int:
            async with db.read() as conn:
                await asyncio.sleep(0.05)
                return int((await conn.execute(text("SELECT 1"))).scalar_one())

        assert await asyncio.gather(*(one() for _ in range(3))) == [1, 1, 1]
        assert await _terminate_connections_to(name) >= 1
        await asyncio.sleep(1.2)  # longer than the idle time after which a connection is pinged
        for _ in range(6):
            async with db.write() as conn:
                assert (await conn.execute(text("SELECT 41 + 1"))).scalar_one() == 42
    finally:
        await db.close()


async def test_a_trusting_pool_still_replaces_connections_the_server_closed(pg_database: str) -> None:
    """A node of a cluster pings pooled connections only after a doubt (``PoolPings.trust``):
    a connection the server closed while it sat in the pool is known closed without a ping
    and replaced; after a doubt (the node's listening connection was lost) every connection
    checked in before it is pinged once."""
    name = pg_database.rsplit("/", 1)[-1]
    db = Database.connect(pg_database, pool_size=3)
    db.pings.trust(300.0)
    try:
        async def one() -> int:
            async with db.read() as conn:
                await asyncio.sleep(0.05)
                return int((await conn.execute(text("SELECT 1"))).scalar_one())

        assert await asyncio.gather(*(one() for _ in range(3))) == [1, 1, 1]
        assert await _terminate_connections_to(name) >= 1
        await asyncio.sleep(0.2)  # the event loop reads the end of each socket
        for _ in range(6):
            async with db.write() as conn:
                assert (await conn.execute(text("SELECT 41 + 1"))).scalar_one() == 42
        assert db.pings.needed(None) is False  # a connection just opened is not pinged
        checked_in = time.monotonic()
        assert db.pings.needed(checked_in) is False
        db.pings.doubt()
        assert db.pings.needed(checked_in) is True
    finally:
        await db.close()


async def test_write_postgres_commits_or_rolls_back_and_leaves_the_connection_clean(pg_database: str) -> None:
    """The group commit's own asyncpg transaction: committed when the work returns, rolled
    back when it raises, and the pooled connection goes back usable by SQLAlchemy."""
    db = Database.connect(pg_database, pool_size=1)
    try:
        async with db.write() as conn:
            await conn.execute(text("CREATE TABLE t (v TEXT PRIMARY KEY)"))

        async def good(raw: asyncpg.Connection) -> str:
            await raw.execute("INSERT INTO t VALUES ('one')")
            return "done"

        async def bad(raw: asyncpg.Connection) -> None:
            await raw.execute("INSERT INTO t VALUES ('two')")
            await raw.execute("INSERT INTO t VALUES ('one')")  # unique violation: all of it goes

        assert await db.write_postgres(good) == "done"
        with pytest.raises(asyncpg.UniqueViolationError):
            await db.write_postgres(bad)
        for _ in range(3):  # the one pooled connection, reused by SQLAlchemy
            async with db.write() as conn:
                await conn.execute(text("INSERT INTO t VALUES (md5(random()::text))"))
        async with db.read() as conn:
            values = [r[0] for r in await conn.execute(text("SELECT v FROM t"))]
        assert "one" in values and "two" not in values and len(values) == 4
    finally:
        await db.close()
