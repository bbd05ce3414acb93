"""The engine factory and the transaction boundary for SQLite and PostgreSQL.

``Database`` is the one object services use to reach storage: ``read()`` for queries,
``write()`` for a transaction. SQLite allows one writer at a time, so in one process the
writes are serialised by an ``asyncio.Lock`` instead of letting connections collide on
``SQLITE_BUSY``; with WAL the readers never wait for the writer. PostgreSQL needs no lock.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from mlgrid.errors import invalid
from mlgrid.store import sqlite_driver
from mlgrid.store.faults import DatabaseFault, DatabaseHealth


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

T = TypeVar("T")


async def run_sqlite(conn: AsyncConnection, work: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``work`` on the raw sqlite3 connection behind ``conn``, inside its transaction,
    in one trip to the connection's thread.

    For the few hot units of several statements (storing a publish): through SQLAlchemy each
    statement would be a trip of its own. ``work`` runs on another thread: it must touch
    nothing but the connection and what it was given.
    """
    proxied = await conn.get_raw_connection()
    driver = proxied.driver_connection
    if not isinstance(driver, sqlite_driver.SQLiteConnection):
        raise TypeError("run_sqlite needs a connection of sqlite_driver")
    raw = driver.raw

    def unit() -> T:
        sqlite_driver.begin_if_idle(raw)
        return work(raw)

    result: T = await driver.run(unit)
    return result


#: A pooled PostgreSQL connection that sat unused this long is pinged before it is handed out.
_PING_AFTER_IDLE_SECONDS = 1.0


@dataclass
class PoolPings:
    """When a pooled PostgreSQL connection is pinged before it is handed out.

    ``idle_seconds``: a connection idle for longer is pinged. A node of a cluster raises it
    (``trust``): its listening connection (``store/listen.py``) is the canary — a restarted or
    unreachable database ends that connection at once and the node calls ``doubt``, after
    which every connection checked in before that moment is pinged once. An idle node then
    pays no ping for each of its timers' transactions.
    """

    idle_seconds: float = _PING_AFTER_IDLE_SECONDS
    #: ``time.monotonic()`` of the last doubt: connections idle since before it are pinged.
    doubted_at: float = 0.0

    def trust(self, idle_seconds: float) -> None:
        self.idle_seconds = idle_seconds

    def doubt(self) -> None:
        self.doubted_at = time.monotonic()

    def needed(self, idle_since: float | None) -> bool:
        if idle_since is None:
            return False  # just opened
        return idle_since < self.doubted_at or time.monotonic() - idle_since >= self.idle_seconds


def _ping_when_idle(engine: AsyncEngine, pings: PoolPings) -> None:
    """Pre-ping pooled connections, but only those ``pings`` says may have died meanwhile
    (a connection the server closed is known closed without a ping).

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: with asyncpg that is a
    ``BEGIN``, a ``;`` and a ``ROLLBACK``, three round trips before each transaction of the
    publish path. A connection checked in a moment ago was working a moment ago; one that
    waited in the pool (across a database restart, say) is checked and, if dead, replaced
    before anyone uses it (``DisconnectionError`` makes the pool retry with a new one).
    """
    sync_engine = engine.sync_engine

    def checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        driver = getattr(dbapi_connection, "driver_connection", None)
        if driver is not None and driver.is_closed():
            # The server closed it while it sat in the pool (a restart): asyncpg saw the
            # end of the socket, no round trip needed to know.
            raise DisconnectionError("pooled connection was closed by the server")
        if not pings.needed(record.info.get("idle_since")):
            return  # just opened, or in use recently and nothing went wrong since
        try:
            dbapi_connection.ping()
        except Exception as exc:
            raise DisconnectionError(f"pooled connection failed its ping: {exc}") from exc

    event.listen(sync_engine, "checkin", checked_in)
    event.listen(sync_engine, "checkout", checked_out)


def _sqlite_engine(driver_url: str, synchronous: str = "NORMAL", **options: Any) -> AsyncEngine:
    """An engine whose connections are ``sqlite_driver`` connections (one thread hop per
    statement instead of aiosqlite's four or five)."""
    path = make_url(driver_url).database or ""
    if path in ("", ":memory:"):
        # Every connection would open a database of its own (and ``write_sqlite`` writes on a
        # connection of its own): there is no in-memory mode.
        raise invalid("database_url", "SQLite needs a file: sqlite:///path/to/mlgrid.db")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return create_async_engine(
        driver_url, async_creator=lambda: sqlite_driver.connect(path, synchronous), **options
    )


#: Size of the row readiness writes during an outage (see ``Database.ready``).
_PROBE_BYTES = 64 * 1024


@dataclass
class Database:
    """Owns the engine; hands out connections inside transactions."""

    url: str
    engine: AsyncEngine
    _write_lock: asyncio.Lock | None = field(default=None, repr=False)
    # SQLite: the connection ``write_sqlite`` uses, outside SQLAlchemy's pool (opened on first
    # use; every write holds the write lock, so one connection is all it needs).
    _writer: sqlite_driver.SQLiteConnection | None = field(default=None, repr=False)
    #: The current outage, if any (``faults.py``): the API answers 503 and ``/readyz`` too.
    health: DatabaseHealth = field(default_factory=DatabaseHealth, repr=False)
    #: SQLite's ``synchronous`` pragma for every connection (setting ``sqlite_synchronous``).
    sqlite_synchronous: str = "NORMAL"
    #: When pooled PostgreSQL connections are pinged (``PoolPings``).
    pings: PoolPings = field(default_factory=PoolPings, repr=False)

    @property
    def is_sqlite(self) -> bool:
        # Asked on hot paths (every publish); the engine's dialect is behind two proxies.
        return self._write_lock is not None

    @classmethod
    def connect(cls, url: str, *, pool_size: int = 10, sqlite_synchronous: str = "normal") -> Database:
        driver_url = async_url(url)
        if driver_url.startswith("sqlite"):
            synchronous = sqlite_synchronous.upper()
            engine = _sqlite_engine(driver_url, synchronous, pool_size=8, max_overflow=8, pool_pre_ping=False)
            return cls(url=url, engine=engine, _write_lock=asyncio.Lock(), sqlite_synchronous=synchronous)
        engine = create_async_engine(driver_url, pool_size=pool_size, max_overflow=pool_size)
        pings = PoolPings()
        _ping_when_idle(engine, pings)
        return cls(url=url, engine=engine, pings=pings)

    @classmethod
    def connect_unpooled(cls, url: str) -> Database:
        """For short-lived tools (migrations, tests) that must not keep connections open."""
        driver_url = async_url(url)
        if driver_url.startswith("sqlite"):
            engine = _sqlite_engine(driver_url, poolclass=NullPool)
            return cls(url=url, engine=engine, _write_lock=asyncio.Lock())
        return cls(url=url, engine=create_async_engine(driver_url, poolclass=NullPool))

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

    async def write_sqlite(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """SQLite: ``work`` in a transaction of its own, begun, run and committed (or rolled
        back) in one trip to the thread of a connection kept for it, under the write lock.

        The hottest write (a publish's rows) through ``write()`` costs SQLAlchemy's pool and
        transaction bookkeeping and a second trip for the ``COMMIT``; this costs neither: it
        runs on a connection of its own, outside the pool.
        ``work`` runs on another thread: it must touch nothing but the connection and what it
        was given.
        """
        if self._write_lock is None:
            raise TypeError("write_sqlite is for SQLite databases")
        async with self._write_lock:
            if self._writer is None:
                self._writer = await sqlite_driver.connect(
                    self.engine.url.database or "", self.sqlite_synchronous
                )
            raw = self._writer.raw

            def transaction() -> T:
                sqlite_driver.begin_if_idle(raw)
                try:
                    result = work(raw)
                    raw.commit()
                except BaseException:
                    raw.rollback()
                    raise
                return result

            committed: T = await self._writer.run(transaction)
            if self.health.fault is not None:
                self.health.succeeded()  # a write committed: the outage may be over
            return committed

    async def write_postgres(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """PostgreSQL: ``work`` with the asyncpg connection of a pooled connection, inside a
        transaction of asyncpg's own (``BEGIN`` … ``COMMIT``, rolled back if ``work`` raises).

        For the publish transaction: its statements are hand-written driver SQL already, and
        through SQLAlchemy each also paid for cursor adaptation and result processing.
        """
        if self._write_lock is not None:
            raise TypeError("write_postgres is for PostgreSQL databases")
        async with self.engine.connect() as conn:
            # SQLAlchemy has started nothing on this connection (it begins lazily, on the
            # first statement it runs), so the transaction is asyncpg's alone.
            raw: Any = (await conn.get_raw_connection()).driver_connection
            async with raw.transaction():
                result = await work(raw)
        if self.health.fault is not None:
            self.health.succeeded()  # a write committed: the outage may be over
        return result

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def ready(self) -> bool:
        """Whether the database answers and, during an outage, takes a write again.

        A read alone cannot tell a full disk or a read-only database from a healthy one, so
        while an outage is on, readiness writes and commits a 64 KB row of ``meta`` (a write
        of a few bytes can still fit where a publish does not); the first success ends the
        outage.
        """
        if not await self.ping():
            self.health.failed(DatabaseFault.UNREACHABLE, ConnectionError("no answer to SELECT 1"))
            return False
        if self.health.fault is None:
            return True
        delete = "DELETE FROM meta WHERE key = 'readiness_probe'"
        insert = "INSERT INTO meta (key, value) VALUES ('readiness_probe', :value)"
        value = "x" * _PROBE_BYTES
        try:
            if self.is_sqlite:

                def probe(raw: sqlite3.Connection) -> None:
                    raw.execute(delete)
                    raw.execute(insert, {"value": value})

                await self.write_sqlite(probe)
            else:
                async with self.write() as conn:
                    await conn.execute(text(delete))
                    await conn.execute(text(insert), {"value": value})
        except Exception:
            return False
        self.health.recovered()
        return True

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            await writer.close()
        await self.engine.dispose()
