"""An asyncio SQLite connection that costs one thread hop per statement.

SQLAlchemy's asyncio support for SQLite drives an ``aiosqlite``-shaped connection: every call
(open a cursor, execute, fetch the rows, close the cursor, commit, roll back) is a round trip
to the connection's worker thread, and each round trip wakes the thread and then the event
loop. A one-row ``SELECT`` cost four of them, an idle rollback when the pool took the
connection back one more; measured, those wake-ups were most of the CPU a publish request
spent in the database (benchmarks/delivery.py, latency at 500 events/s).

This connection keeps the same surface (it is handed to SQLAlchemy through
``create_async_engine(async_creator=...)``) but does the work of a statement in one trip:
the worker executes it and fetches its rows together, so cursors are plain objects and
``fetchall``/``close`` need no trip at all; the ``BEGIN`` of a transaction rides with its
first statement (``begin_if_idle``); ``commit`` and ``rollback`` outside a transaction
return at once. A caller with several statements to run back to back can hand the whole
unit to ``run`` (``store.database.run_sqlite``): one trip for all of them.

The thread stays: a statement that waits (a checkpoint's fsync, a lock held by another
process, a large read) blocks the worker, never the event loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from queue import SimpleQueue
from typing import Any

__all__ = ["SQLiteConnection", "connect"]

#: The pragmas every connection runs once. WAL: readers never block the writer.
#: ``synchronous=NORMAL`` (the default) in WAL mode keeps every committed transaction across a
#: process crash (kill -9); only an OS crash or power loss can lose the last commits, the
#: documented trade-off for throughput. ``FULL`` (setting ``sqlite_synchronous``) flushes the
#: WAL at every commit and survives those too.
SYNCHRONOUS = ("NORMAL", "FULL")


def pragmas(synchronous: str = "NORMAL") -> tuple[str, ...]:
    level = synchronous.upper()
    if level not in SYNCHRONOUS:
        raise ValueError(f"synchronous must be one of {SYNCHRONOUS}")
    return (
        "PRAGMA journal_mode=WAL",
        f"PRAGMA synchronous={level}",
        "PRAGMA foreign_keys=ON",
        "PRAGMA busy_timeout=10000",
    )


PRAGMAS = pragmas()

#: A function to run on the worker thread, and what to call on the caller's event loop with
#: ``(ok, result)`` when it has run (``None``: nobody waits).
_Settle = tuple[asyncio.AbstractEventLoop, Callable[[bool, Any], None]]
_Job = tuple[_Settle | None, Callable[[], Any]]
_STOP = object()


def _worker(jobs: SimpleQueue[_Job]) -> None:
    while True:
        settle, function = jobs.get()
        try:
            result = function()
            ok = True
        except BaseException as exc:  # handed to the awaiting coroutine
            result, ok = exc, False
        if settle is not None:
            loop, callback = settle
            try:
                loop.call_soon_threadsafe(callback, ok, result)
            except RuntimeError:  # the event loop is closed: nobody waits any more
                pass
        if result is _STOP:
            return


def begin_if_idle(raw: sqlite3.Connection) -> None:
    """Open a transaction before the first statement after a commit or rollback.

    The DB-API's implicit transaction (what ``sqlite3`` does with ``autocommit=False`` from
    Python 3.12), for every statement: reads included, so a unit of work sees one snapshot,
    and ``SAVEPOINT`` nests inside the real transaction instead of opening one of its own
    whose ``RELEASE`` would commit everything written so far. ``BEGIN`` is deferred: the
    write lock is taken by the first write (writers are serialised in-process anyway).
    """
    if not raw.in_transaction:
        raw.execute("BEGIN")


#: What a statement left behind: ``description``, ``rowcount``, ``lastrowid`` and every row.
_Outcome = tuple[Any, int, int | None, list[Any]]


def _outcome(cursor: sqlite3.Cursor) -> _Outcome:
    """Everything of a finished statement, read on the worker thread before it returns."""
    try:
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


class Cursor:
    """The result of one statement, fetched in the same trip as its execution."""

    arraysize = 1

    def __init__(self, connection: SQLiteConnection) -> None:
        self._connection = connection
        self._rows: list[Any] = []
        self._position = 0
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        return None

    def _take(self, outcome: _Outcome) -> Cursor:
        self.description, self.rowcount, self.lastrowid, self._rows = outcome
        self._position = 0
        return self

    async def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] | None = None) -> Cursor:
        raw = self._connection.raw

        def run() -> _Outcome:
            begin_if_idle(raw)
            return _outcome(raw.execute(sql) if parameters is None else raw.execute(sql, parameters))

        return self._take(await self._connection.run(run))

    async def executemany(self, sql: str, parameters: Any) -> Cursor:
        raw = self._connection.raw

        def run() -> _Outcome:
            begin_if_idle(raw)
            return _outcome(raw.executemany(sql, parameters))

        return self._take(await self._connection.run(run))

    async def fetchone(self) -> Any:
        if self._position >= len(self._rows):
            return None
        row = self._rows[self._position]
        self._position += 1
        return row

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        count = self.arraysize if size is None else size
        rows = self._rows[self._position : self._position + count]
        self._position += len(rows)
        return rows

    async def fetchall(self) -> list[Any]:
        rows = self._rows[self._position :]
        self._position = len(self._rows)
        return rows

    async def close(self) -> None:
        self._rows = []

    async def setinputsizes(self, *_sizes: Any) -> None:
        return None

    async def nextset(self) -> None:
        return None


class SQLiteConnection:
    """The subset of ``aiosqlite.Connection`` that SQLAlchemy's adapter calls."""

    def __init__(self, raw: sqlite3.Connection, jobs: SimpleQueue[_Job]) -> None:
        self.raw = raw
        self._jobs = jobs
        self._closed = False
        # Jobs handed to the thread and not settled yet. A caller cancelled while its
        # statement runs leaves one behind: until it is done, ``in_transaction`` may not
        # tell the truth yet, so commit and rollback queue up behind it instead of skipping.
        self._unsettled = 0

    # SQLAlchemy's adapter checks ``_connection`` before committing or rolling back.
    @property
    def _connection(self) -> sqlite3.Connection | None:
        return None if self._closed else self.raw

    @property
    def isolation_level(self) -> str | None:
        return self.raw.isolation_level

    async def run(self, function: Callable[[], Any]) -> Any:
        """Run ``function`` on the connection's thread: one trip, however much it does."""
        if self._closed:
            raise ValueError("Connection closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def settle(ok: bool, result: Any) -> None:
            self._unsettled -= 1
            if future.done():  # the caller was cancelled meanwhile
                return
            if ok:
                future.set_result(result)
            else:
                future.set_exception(result)

        self._unsettled += 1
        self._jobs.put(((loop, settle), function))
        return await future

    def cursor(self) -> Cursor:
        return Cursor(self)

    async def commit(self) -> None:
        if self.raw.in_transaction or self._unsettled:
            await self.run(self.raw.commit)

    async def rollback(self) -> None:
        if self.raw.in_transaction or self._unsettled:
            await self.run(self.raw.rollback)

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        await self.run(lambda: self.raw.create_function(*args, **kwargs))

    def _closer(self) -> Callable[[], object]:
        raw = self.raw

        def close() -> object:
            raw.close()
            return _STOP

        return close

    async def close(self) -> None:
        if self._closed:
            return
        try:
            await self.run(self._closer())
        finally:
            self._closed = True

    def stop(self) -> None:
        """Close without waiting (SQLAlchemy's forced terminate)."""
        if not self._closed:
            self._closed = True
            self._jobs.put((None, self._closer()))


async def connect(path: str, synchronous: str = "NORMAL") -> SQLiteConnection:
    """Open ``path`` on a worker thread of its own, in autocommit mode, pragmas set."""
    statements = pragmas(synchronous)
    loop = asyncio.get_running_loop()
    jobs: SimpleQueue[_Job] = SimpleQueue()
    thread = threading.Thread(target=_worker, args=(jobs,), name="mlgrid-sqlite", daemon=True)
    thread.start()
    opened_here: list[sqlite3.Connection] = []

    def open_connection() -> sqlite3.Connection:
        raw = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            for pragma in statements:
                raw.execute(pragma).close()
        except BaseException:
            raw.close()
            raise
        opened_here.append(raw)
        return raw

    def abandon() -> object:
        # The caller gave up (cancelled, or the open failed): close what was opened, if
        # anything, and end the thread.
        for raw in opened_here:
            raw.close()
        return _STOP

    opened: asyncio.Future[sqlite3.Connection] = loop.create_future()

    def settle(ok: bool, result: Any) -> None:
        if not opened.done():
            opened.set_result(result) if ok else opened.set_exception(result)

    jobs.put(((loop, settle), open_connection))
    try:
        raw = await opened
    except BaseException:
        jobs.put((None, abandon))
        raise
    return SQLiteConnection(raw, jobs)
