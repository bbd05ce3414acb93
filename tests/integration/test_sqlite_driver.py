"""The SQLite connection behind ``Database`` (``store/sqlite_driver.py``), on a real file.

It replaces aiosqlite under SQLAlchemy with one thread trip per statement and opens the
transaction itself (``begin_if_idle``), so the transaction semantics the rest of the store
relies on are checked here directly: commit and rollback, savepoints that nest, a read that
sees one snapshot, errors mapped by SQLAlchemy, ``write_sqlite``'s one-trip transaction, and
a caller cancelled in the middle of a statement leaving no transaction behind on the pooled
connection.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import exc, text

from mlgrid.errors import InvalidField
from mlgrid.store import sqlite_driver
from mlgrid.store.database import Database, run_sqlite

# A statement that keeps SQLite busy for a while (a few hundred milliseconds on these machines).
_SLOW = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000) "
    "SELECT count(*) FROM n"
)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database.connect(f"sqlite:///{tmp_path / 'driver.db'}")
    async with database.write() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL UNIQUE)"))
    try:
        yield database
    finally:
        await database.close()


async def _values(db: Database) -> list[str]:
    async with db.read() as conn:
        return [r[0] for r in await conn.execute(text("SELECT v FROM t ORDER BY id"))]


def _outside(path: Path) -> list[str]:
    """What another connection (another process, say) sees: only committed rows."""
    raw = sqlite3.connect(path)
    try:
        return [r[0] for r in raw.execute("SELECT v FROM t ORDER BY id")]
    finally:
        raw.close()


async def test_pragmas_are_set_on_every_connection(db: Database) -> None:
    async with db.read() as conn:
        mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
        sync = (await conn.execute(text("PRAGMA synchronous"))).scalar_one()
        keys = (await conn.execute(text("PRAGMA foreign_keys"))).scalar_one()
    assert (mode, sync, keys) == ("wal", 1, 1)


async def test_a_write_commits_and_a_failed_write_leaves_nothing(db: Database, tmp_path: Path) -> None:
    async with db.write() as conn:
        await conn.execute(text("INSERT INTO t (v) VALUES ('a')"))
    with pytest.raises(RuntimeError):
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO t (v) VALUES ('b')"))
            raise RuntimeError("abandon")
    assert await _values(db) == ["a"]
    assert _outside(tmp_path / "driver.db") == ["a"]


async def test_nothing_is_visible_outside_before_the_commit(db: Database, tmp_path: Path) -> None:
    async with db.write() as conn:
        await conn.execute(text("INSERT INTO t (v) VALUES ('pending')"))
        assert _outside(tmp_path / "driver.db") == []
    assert _outside(tmp_path / "driver.db") == ["pending"]


async def test_a_savepoint_nests_inside_the_transaction(db: Database) -> None:
    """A rolled-back savepoint undoes only its own writes, and releasing one commits nothing:
    the outer transaction still decides."""
    with pytest.raises(RuntimeError):
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO t (v) VALUES ('outer')"))
            async with conn.begin_nested():
                await conn.execute(text("INSERT INTO t (v) VALUES ('released')"))
            raise RuntimeError("the outer transaction fails after the savepoint was released")
    assert await _values(db) == []

    async with db.write() as conn:
        await conn.execute(text("INSERT INTO t (v) VALUES ('kept')"))
        with pytest.raises(exc.IntegrityError):
            async with conn.begin_nested():
                await conn.execute(text("INSERT INTO t (v) VALUES ('dropped')"))
                await conn.execute(text("INSERT INTO t (v) VALUES ('kept')"))  # unique violation
    assert await _values(db) == ["kept"]


async def test_database_errors_arrive_as_sqlalchemy_errors(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(text("INSERT INTO t (v) VALUES ('x')"))
    with pytest.raises(exc.IntegrityError):
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO t (v) VALUES ('x')"))
    with pytest.raises(exc.OperationalError):
        async with db.read() as conn:
            await conn.execute(text("SELECT nope FROM t"))
    assert await _values(db) == ["x"]


async def test_a_read_sees_one_snapshot(db: Database) -> None:
    """The first statement opens the transaction, so a commit between two reads of one unit
    is not seen by the second."""
    async with db.write() as conn:
        await conn.execute(text("INSERT INTO t (v) VALUES ('first')"))
    async with db.read() as reader:
        before = (await reader.execute(text("SELECT count(*) FROM t"))).scalar_one()
        async with db.write() as writer:
            await writer.execute(text("INSERT INTO t (v) VALUES ('second')"))
        after = (await reader.execute(text("SELECT count(*) FROM t"))).scalar_one()
    assert (before, after) == (1, 1)
    assert await _values(db) == ["first", "second"]


async def test_run_sqlite_runs_inside_the_callers_transaction(db: Database) -> None:
    def insert(raw: sqlite3.Connection) -> int:
        raw.execute("INSERT INTO t (v) VALUES ('raw')")
        return int(raw.execute("SELECT count(*) FROM t").fetchone()[0])

    with pytest.raises(RuntimeError):
        async with db.write() as conn:
            assert await run_sqlite(conn, insert) == 1
            raise RuntimeError("roll back")
    assert await _values(db) == []
    async with db.write() as conn:
        await conn.execute(text("INSERT INTO t (v) VALUES ('orm')"))
        assert await run_sqlite(conn, insert) == 2
    assert await _values(db) == ["orm", "raw"]


async def test_write_sqlite_commits_or_rolls_back_in_one_go(db: Database, tmp_path: Path) -> None:
    def good(raw: sqlite3.Connection) -> str:
        raw.execute("INSERT INTO t (v) VALUES ('one')")
        raw.execute("INSERT INTO t (v) VALUES ('two')")
        return "done"

    def bad(raw: sqlite3.Connection) -> None:
        raw.execute("INSERT INTO t (v) VALUES ('three')")
        raw.execute("INSERT INTO t (v) VALUES ('one')")  # unique violation: all of it goes

    assert await db.write_sqlite(good) == "done"
    with pytest.raises(sqlite3.IntegrityError):
        await db.write_sqlite(bad)
    assert _outside(tmp_path / "driver.db") == ["one", "two"]
    # The connection went back to the pool clean: the next writes commit on their own.
    for _ in range(10):
        await db.write_sqlite(lambda raw: raw.execute("INSERT INTO t (v) VALUES (hex(randomblob(8)))"))
    assert len(_outside(tmp_path / "driver.db")) == 12


async def test_a_caller_cancelled_mid_statement_leaves_no_transaction_behind(
    db: Database, tmp_path: Path
) -> None:
    """The statement goes on in the thread after its caller is gone; the rollback SQLAlchemy
    sends when the connection returns to the pool must wait for it and undo it, so the next
    user of the connection starts clean instead of inside a stranger's transaction."""

    async def slow_write() -> None:
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO t (v) VALUES ('cancelled')"))
            await conn.execute(text(_SLOW))

    for _ in range(3):
        task = asyncio.create_task(slow_write())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    async with db.write() as conn:
        await conn.execute(text("INSERT INTO t (v) VALUES ('after')"))
    assert _outside(tmp_path / "driver.db") == ["after"]
    assert await _values(db) == ["after"]


async def test_rollback_waits_for_a_statement_still_queued(tmp_path: Path) -> None:
    """The narrow case of the test above: the caller is cancelled before its first statement
    (the one that opens the transaction) even started on the thread. ``in_transaction`` still
    says no; the rollback must not believe it and skip."""
    path = tmp_path / "queued.db"
    setup = sqlite3.connect(path)
    setup.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    setup.close()
    conn = await sqlite_driver.connect(str(path))
    started = threading.Event()

    def late_first_statement() -> None:
        started.set()
        time.sleep(0.3)  # still "queued" as far as the transaction is concerned
        sqlite_driver.begin_if_idle(conn.raw)
        conn.raw.execute("INSERT INTO t (v) VALUES ('stranger')")

    try:
        task = asyncio.create_task(conn.run(late_first_statement))
        while not started.is_set():
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await conn.rollback()
        await conn.run(lambda: None)  # everything queued before has run
        assert not conn.raw.in_transaction
        assert _outside(path) == []
    finally:
        await conn.close()


async def test_a_closed_database_refuses_work(tmp_path: Path) -> None:
    db = Database.connect(f"sqlite:///{tmp_path / 'closed.db'}")
    async with db.write() as conn:
        await conn.execute(text("CREATE TABLE t (v TEXT)"))
    await db.close()
    assert await db.ping() is True  # the engine reconnects on demand, like any pool
    await db.close()


async def test_unpooled_connections_see_each_others_commits(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'unpooled.db'}"
    first, second = Database.connect_unpooled(url), Database.connect_unpooled(url)
    try:
        async with first.write() as conn:
            await conn.execute(text("CREATE TABLE t (v TEXT)"))
            await conn.execute(text("INSERT INTO t VALUES ('shared')"))
        async with second.read() as conn:
            assert [r[0] for r in await conn.execute(text("SELECT v FROM t"))] == ["shared"]
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite://"])
def test_an_in_memory_database_is_refused(url: str) -> None:
    """Each connection would see a database of its own (the publish writer has one apart
    from the pool), so the store would lose what it wrote: refuse, naming the setting."""
    with pytest.raises(InvalidField) as raised:
        Database.connect(url)
    assert raised.value.field_name == "database_url"
    assert "needs a file" in raised.value.message
