"""The outbox table in MLflow's own database (filled by the ``mlgrid-mlflow-outbox`` plugin).

This module is the only code of mlgrid that speaks SQL to MLflow's database, and it touches
one table: ``mlgrid_outbox`` (read and delete; the grant it needs is exactly that).

Draining is delete-on-consume, never ``id > watermark``: on PostgreSQL ids come from a
sequence at INSERT time, so a transaction that took id 7 can commit after one that took id 8;
a reader that remembered "8" would skip 7 forever. Instead a batch is claimed with
``SELECT ... ORDER BY id FOR UPDATE SKIP LOCKED`` and deleted in the same transaction once
mlgrid has committed what it derived from it (``Batch.consume``); a row that commits late is
simply still there at the next drain. Per object, ids do follow commit order: the plugin
writes the row after MLflow's UPDATE of the object's row, which holds that row's lock until
commit.

On SQLite MLflow has one writer at a time and ids follow commit order; the batch is read
outside a transaction (a read transaction held across mlgrid's commit would block MLflow's
writers) and its rows deleted by id afterwards. One drainer per connector (the lease).

A crash after mlgrid's commit and before the DELETE leaves the rows: the next drain reads
them again and the reconciler finds their values already remembered (nothing is emitted twice;
the event ids would be identical anyway).

``listen`` opens a PostgreSQL connection that ``LISTEN``s on the plugin's channel (the
plugin's INSERT calls ``pg_notify`` in the same statement, delivered at commit).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

log = logging.getLogger("mlgrid.connectors")

OUTBOX_TABLE = "mlgrid_outbox"
"""The plugin's table (``mlgrid_mlflow_outbox.OUTBOX_TABLE``; a unit test keeps them equal)."""
NOTIFY_CHANNEL = "mlgrid_outbox"
"""The plugin's ``pg_notify`` channel (``mlgrid_mlflow_outbox.NOTIFY_CHANNEL``)."""

_SELECT = f"SELECT id, recorded_at_ms, kind, object_key, payload FROM {OUTBOX_TABLE} ORDER BY id LIMIT :n"
_DELETE_CHUNK = 500
_SSLMODE = re.compile(r"([?&])sslmode=")


class OutboxUnavailable(Exception):
    """MLflow's database cannot be reached, refuses the credentials, or has no outbox table."""

    code = "OutboxUnavailable"


#: What a statement on MLflow's database may raise when the database is away or refuses.
_DATABASE_FAULTS: tuple[type[BaseException], ...] = (
    SQLAlchemyError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError,
)
#: What opening a connection may raise besides: a URL the drivers read differently from the
#: check in ``connectors/config.py`` (a query option one driver does not take is a TypeError of
#: its ``connect()``, an out-of-range value a ValueError). Caught only around the connect, so a
#: fault in mlgrid's own code while a connection is open is never disguised as one of MLflow's.
_CONNECT_FAULTS: tuple[type[BaseException], ...] = (*_DATABASE_FAULTS, ValueError, TypeError, OverflowError)


@dataclass(frozen=True)
class OutboxRow:
    id: int
    recorded_at_ms: int
    kind: str
    object_key: str
    payload: dict[str, Any]


def _plain(url: str) -> tuple[str, str]:
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower().removeprefix("mlgrid+")
    return scheme.split("+", 1)[0], rest


def is_postgres(url: str) -> bool:
    return _plain(url)[0] in ("postgresql", "postgres")


def async_url(url: str) -> str:
    """The SQLAlchemy async URL of MLflow's database (asyncpg / aiosqlite)."""
    scheme, rest = _plain(url)
    if scheme in ("postgresql", "postgres"):
        # libpq's (and MLflow's) ``sslmode`` is asyncpg's ``ssl`` (same values: require,
        # verify-full...); SQLAlchemy hands query options to ``asyncpg.connect`` as they are.
        return "postgresql+asyncpg://" + _SSLMODE.sub(r"\1ssl=", rest)
    # Open the file read-write but never create it: a wrong path is an error, not a new database.
    path = rest[1:] if rest.startswith("/") else rest
    return f"sqlite+aiosqlite:///file:{path}?mode=rw&uri=true"


def asyncpg_dsn(url: str) -> str:
    return f"postgresql://{_plain(url)[1]}"


def _parse(row: Any) -> OutboxRow | None:
    try:
        payload = json.loads(row.payload)
    except (TypeError, ValueError):
        payload = None
    if not isinstance(payload, dict):
        log.warning("outbox row %s has no JSON object payload; dropped", row.id)
        return None
    return OutboxRow(int(row.id), int(row.recorded_at_ms), str(row.kind), str(row.object_key), payload)


@dataclass
class Batch:
    """Rows claimed for one drain. ``consume()`` after mlgrid committed: they are deleted."""

    rows: list[OutboxRow]
    ids: list[int]
    consumed: bool = field(default=False)

    def consume(self) -> None:
        self.consumed = True


class OutboxListener:
    """A PostgreSQL connection ``LISTEN``ing on the plugin's channel; ``alive`` until it drops."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection

    @property
    def alive(self) -> bool:
        return not self.connection.is_closed()

    async def close(self) -> None:
        if not self.connection.is_closed():
            try:
                await self.connection.close(timeout=5)
            except Exception:
                self.connection.terminate()


class OutboxSource:
    """MLflow's outbox table behind one connector's database URL."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url
        self.postgres = is_postgres(url)
        self.timeout = timeout
        try:
            self.engine: AsyncEngine = self._engine(url, timeout)
        except (ArgumentError, ValueError) as exc:
            raise OutboxUnavailable(_describe(exc)) from exc

    def _engine(self, url: str, timeout: float) -> AsyncEngine:
        if self.postgres:
            # One kept connection (a drain is one transaction at a time), checked before use
            # so a restarted PostgreSQL costs one retry, not a failed drain.
            return create_async_engine(
                async_url(url),
                pool_size=1,
                max_overflow=2,
                pool_pre_ping=True,
                connect_args={"timeout": timeout, "command_timeout": timeout},
            )
        return create_async_engine(async_url(url), poolclass=NullPool, connect_args={"timeout": timeout})

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[AsyncConnection]:
        async with AsyncExitStack() as stack:
            try:
                conn = await stack.enter_async_context(self.engine.connect())
            except _CONNECT_FAULTS as exc:
                raise OutboxUnavailable(_describe(exc)) from exc
            try:
                yield conn
            except _DATABASE_FAULTS as exc:
                raise OutboxUnavailable(_describe(exc)) from exc

    async def check(self) -> None:
        """Connect and read the table (a PUT asks this before accepting the URL)."""
        async with self._connect() as conn:
            await conn.execute(text(f"SELECT count(*) FROM (SELECT id FROM {OUTBOX_TABLE} LIMIT 1) AS probe"))

    async def purge(self) -> int:
        """Delete every committed row (the backlog from before the connector drained it: a full
        sweep right after covers what it described). Rows of transactions still open are not
        visible, so not touched; they are drained when they commit."""
        async with self._connect() as conn, conn.begin():
            return int((await conn.execute(text(f"DELETE FROM {OUTBOX_TABLE}"))).rowcount or 0)

    async def pending(self) -> int:
        async with self._connect() as conn:
            return int((await conn.execute(text(f"SELECT count(*) FROM {OUTBOX_TABLE}"))).scalar_one())

    @asynccontextmanager
    async def claim(self, limit: int) -> AsyncIterator[Batch]:
        """Claim up to ``limit`` rows, oldest first; deleted on leaving if ``consume()``d."""
        if self.postgres:
            async with self._connect() as conn, conn.begin():
                result = await conn.execute(text(_SELECT + " FOR UPDATE SKIP LOCKED"), {"n": limit})
                raw = result.fetchall()
                batch = Batch([r for r in map(_parse, raw) if r is not None], [int(r.id) for r in raw])
                yield batch
                if batch.consumed:
                    await _delete(conn, batch.ids)
            return
        async with self._connect() as conn:
            raw = (await conn.execute(text(_SELECT), {"n": limit})).fetchall()
            await conn.rollback()
        batch = Batch([r for r in map(_parse, raw) if r is not None], [int(r.id) for r in raw])
        yield batch
        if batch.consumed and batch.ids:
            async with self._connect() as conn, conn.begin():
                await _delete(conn, batch.ids)

    async def listen(self, on_notify: Callable[[], None]) -> OutboxListener | None:
        """PostgreSQL: a connection calling ``on_notify`` at every commit that wrote rows."""
        if not self.postgres:
            return None
        try:
            connection = await asyncpg.connect(asyncpg_dsn(self.url), timeout=self.timeout)
            await connection.add_listener(NOTIFY_CHANNEL, lambda *_: on_notify())
        except _CONNECT_FAULTS as exc:
            raise OutboxUnavailable(_describe(exc)) from exc
        return OutboxListener(connection)


async def _delete(conn: AsyncConnection, ids: list[int]) -> None:
    for start in range(0, len(ids), _DELETE_CHUNK):
        chunk = ids[start : start + _DELETE_CHUNK]
        marks = ", ".join(f":i{n}" for n in range(len(chunk)))
        await conn.execute(
            text(f"DELETE FROM {OUTBOX_TABLE} WHERE id IN ({marks})"),
            {f"i{n}": value for n, value in enumerate(chunk)},
        )


def _describe(exc: BaseException) -> str:
    """A reason that never repeats the URL (it may hold a password)."""
    inner = getattr(exc, "orig", None) or exc
    name = type(inner).__name__
    message = str(inner).split("\n", 1)[0]
    if "://" in message:
        message = "(details withheld: the message quoted the database URL)"
    if OUTBOX_TABLE in message and ("does not exist" in message or "no such table" in message):
        return f"{name}: the {OUTBOX_TABLE} table is missing (is the plugin on the MLflow server?)"
    return f"{name}: {message[:300]}"
