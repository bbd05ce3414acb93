"""The engine factory and the transaction boundary for SQLite and PostgreSQL.

``Database`` is the one object services use to reach storage: ``read()`` for queries,
``write()`` for a transaction. SQLite allows one writer at a time, so in one process the
writes are serialised by an ``asyncio.Lock`` instead of letting connections collide on
``SQLITE_BUSY``; with WAL the readers never wait for the writer. PostgreSQL needs no lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from mlgrid.errors import invalid


def async_url(url: str) -> str:
    """Turn a user-facing URL (``sqlite:///x.db``, ``postgresql://u@h/db``) into the async
    driver URL SQLAlchemy needs; unknown schemes are a configuration error."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return str(parsed.set(drivername="sqlite+aiosqlite"))
    if backend in {"postgresql", "postgres"}:
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise invalid("database_url", f"unsupported database {backend!r}: use sqlite:/// or postgresql://")


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writer. synchronous=NORMAL in WAL mode keeps every
    # committed transaction across a process crash (kill -9); only an OS crash or power loss
    # can lose the last commits, which is the documented trade-off for throughput.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()
    # The driver's own transaction handling only opens a transaction before INSERT/UPDATE/
    # DELETE, so a SAVEPOINT (``begin_nested``) issued first would start one of its own and
    # its RELEASE would commit everything written so far. Turn it off and let SQLAlchemy emit
    # BEGIN itself (``_sqlite_begin``): then savepoints nest inside the real transaction.
    dbapi_connection.isolation_level = None


def _sqlite_begin(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN")


@dataclass
class Database:
    """Owns the engine; hands out connections inside transactions."""

    url: str
    engine: AsyncEngine
    _write_lock: asyncio.Lock | None = field(default=None, repr=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @classmethod
    def connect(cls, url: str, *, pool_size: int = 10) -> Database:
        driver_url = async_url(url)
        if driver_url.startswith("sqlite"):
            path = make_url(driver_url).database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_async_engine(driver_url, pool_size=8, max_overflow=8, pool_pre_ping=False)
            event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
            event.listen(engine.sync_engine, "begin", _sqlite_begin)
            return cls(url=url, engine=engine, _write_lock=asyncio.Lock())
        engine = create_async_engine(
            driver_url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
        )
        return cls(url=url, engine=engine)

    @classmethod
    def connect_unpooled(cls, url: str) -> Database:
        """For short-lived tools (migrations, tests) that must not keep connections open."""
        driver_url = async_url(url)
        engine = create_async_engine(driver_url, poolclass=NullPool)
        if driver_url.startswith("sqlite"):
            event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
            event.listen(engine.sync_engine, "begin", _sqlite_begin)
            return cls(url=url, engine=engine, _write_lock=asyncio.Lock())
        return cls(url=url, engine=engine)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One transaction: committed when the block exits normally, rolled back otherwise."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def close(self) -> None:
        await self.engine.dispose()
