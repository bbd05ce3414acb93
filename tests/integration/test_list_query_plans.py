"""Every list over events, deliveries and dead letters reads one index range, on both databases.

The list routes page by keyset (``skipToken`` names the last row's sort key), so a page costs
the same at 10 million retained events as at 100 — *if* the database reads an index range from
the cursor on (in the page's order, or, on PostgreSQL, a selective range it then sorts). This
test fills the big tables with enough rows (spread over several topics and subscriptions) for
the planners to tell a range scan from a full one, runs each list query of ``store/`` as the
routes run it (the statements are captured from the real calls, with their parameters) under
``EXPLAIN`` (PostgreSQL, after ``ANALYZE``) or ``EXPLAIN QUERY PLAN`` (SQLite), and asserts: an
index is used and the big table is never scanned whole (on SQLite, whose planner is
rule-based, also: no sort step between the index and the ``LIMIT``). Ten million rows are the
benchmark's job (``benchmarks/retained.py``), not the test suite's.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert, text
from sqlalchemy.ext.asyncio import AsyncConnection
from tests.support.services import fresh_pg_database

from mlgrid.store import dead_letters as dead_letter_store
from mlgrid.store import deliveries as delivery_store
from mlgrid.store import events as event_store
from mlgrid.store import migrate
from mlgrid.store.database import Database
from mlgrid.store.tables import dead_letters, deliveries, events

TOPICS = 8
EVENTS_PER_TOPIC = 2_500
SUBSCRIPTIONS = 8
DEAD_LETTERS_PER_SUBSCRIPTION = 500
BIG_TABLES = ("events", "deliveries", "dead_letters")
START = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def plans_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own on each backend (ANALYZE and the row counts are this test's)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'plans.db'}"
        return
    with fresh_pg_database("mlgrid_plans") as url:
        yield url


@asynccontextmanager
async def _database(url: str) -> AsyncIterator[Database]:
    db = Database.connect_unpooled(url)
    try:
        await migrate.upgrade(db)
        yield db
    finally:
        await db.close()


async def _fill(db: Database) -> None:
    """Events of several topics interleaved in time, one delivery per event (most final), and
    dead letters of several subscriptions."""
    async with db.write() as conn:
        rows = [
            {
                "topic_key": f"topic-{n % TOPICS}",
                "event_id": str(n),
                "event_type": f"Type.{n % 5}",
                "subject": f"s/{n}",
                "published_at": (START + timedelta(milliseconds=n)).timestamp(),
                "body": "{}",
            }
            for n in range(TOPICS * EVENTS_PER_TOPIC)
        ]
        for chunk in range(0, len(rows), 2_000):
            await conn.execute(insert(events), rows[chunk:chunk + 2_000])
        seqs = [r[0] for r in await conn.execute(text("SELECT seq FROM events ORDER BY seq"))]
        delivery_rows = [
            {
                "event_seq": seq,
                "subscription_id": f"sub-{i % SUBSCRIPTIONS}",
                "state": "pending" if i % 50 == 0 else "delivered",
                "attempts": 1,
                "next_attempt_at": START.timestamp(),
                "created_at": START.timestamp(),
            }
            for i, seq in enumerate(seqs)
        ]
        for chunk in range(0, len(delivery_rows), 2_000):
            await conn.execute(insert(deliveries), delivery_rows[chunk:chunk + 2_000])
        letters = [
            {
                "id": str(uuid.uuid4()),
                "subscription_id": f"sub-{i % SUBSCRIPTIONS}",
                "event_id": str(i),
                "reason": "MaxDeliveryAttemptsExceeded",
                "record": "{}",
                "created_at": START.timestamp() + i,
            }
            for i in range(SUBSCRIPTIONS * DEAD_LETTERS_PER_SUBSCRIPTION)
        ]
        await conn.execute(insert(dead_letters), letters)
    async with db.write() as conn:
        await conn.execute(text("ANALYZE"))


Captured = list[tuple[str, Any]]


async def _captured(db: Database, call: Callable[[AsyncConnection], Awaitable[object]]) -> Captured:
    """The statements (with their parameters) that ``call`` sent to the database."""
    statements: Captured = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters))

    async with db.read() as conn:
        sync_engine = conn.sync_engine
        event.listen(sync_engine, "before_cursor_execute", record)
        try:
            await call(conn)
        finally:
            event.remove(sync_engine, "before_cursor_execute", record)
    return [s for s in statements if s[0].lstrip().upper().startswith("SELECT")]


async def _plan(db: Database, statement: str, parameters: Any) -> str:
    async with db.read() as conn:
        if db.is_sqlite:
            rows = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            return "\n".join(str(r[-1]) for r in rows)
        rows = await conn.exec_driver_sql("EXPLAIN (COSTS OFF) " + statement, parameters)
        return "\n".join(str(r[0]) for r in rows)


def _problems(plan: str, sqlite: bool) -> list[str]:
    """What in ``plan`` would make a page cost grow with the table."""
    found = []
    for table in BIG_TABLES:
        if sqlite:
            # "SCAN events" is a full scan; "SCAN events USING INDEX ..." (covering) is still a
            # full walk of the index, unless it is followed by a range, which SEARCH names.
            if any(line.strip().startswith(("SCAN " + table, "SCAN TABLE " + table))
                   for line in plan.splitlines()):
                found.append(f"full scan of {table}")
        elif f"Seq Scan on {table}" in plan:
            found.append(f"sequential scan of {table}")
    if sqlite:
        if "TEMP B-TREE" in plan:
            found.append("sort in a temporary b-tree")
        if "USING" not in plan:
            found.append("no index")
    else:
        # PostgreSQL may sort a small, selective range (a bitmap of 50 pending deliveries)
        # rather than walk an index in order: that is cheap at any table size, so only scans
        # of the whole table fail here. The benchmark times pages at 10M rows.
        if "Index" not in plan:
            found.append("no index")
    return found


def _cursor_in_middle() -> tuple[float, int]:
    return ((START + timedelta(milliseconds=EVENTS_PER_TOPIC * TOPICS // 2)).timestamp(), 1)


LISTS: dict[str, Callable[[AsyncConnection], Awaitable[object]]] = {
    "events, first page": lambda c: event_store.list_page(
        c, "topic-3", since=None, until=None, event_type=None, limit=101),
    "events, next page": lambda c: event_store.list_page(
        c, "topic-3", since=None, until=None, event_type=None, after=_cursor_in_middle(), limit=101),
    "events, time window": lambda c: event_store.list_page(
        c, "topic-3", since=START + timedelta(seconds=10), until=START + timedelta(seconds=15),
        event_type=None, limit=101),
    "events, by type, next page": lambda c: event_store.list_page(
        c, "topic-3", since=None, until=None, event_type="type.2", after=_cursor_in_middle(), limit=101),
    "deliveries, all states": lambda c: delivery_store.list_for_subscription(c, "sub-2", None, 0, 101),
    "deliveries, next page": lambda c: delivery_store.list_for_subscription(c, "sub-2", None, 9_000, 101),
    "deliveries, one state": lambda c: delivery_store.list_for_subscription(c, "sub-2", "pending", 0, 101),
    "dead letters, first page": lambda c: dead_letter_store.list_page(c, "sub-5", None, 101),
    "dead letters, next page": lambda c: dead_letter_store.list_page(
        c, "sub-5", (START.timestamp() + 2_000, "m"), 101),
    # Run on a connection that is rolled back: only its SELECT of candidates is explained.
    "retention batch": lambda c: event_store.delete_expired(
        c, "topic-3", START + timedelta(seconds=20), 500, _cursor_in_middle()),
}


async def test_every_list_query_reads_an_index_range(plans_url: str) -> None:
    backend = "sqlite" if plans_url.startswith("sqlite") else "postgresql"
    async with _database(plans_url) as db:
        await _fill(db)
        report: dict[str, list[str]] = {}
        for name, call in LISTS.items():
            statements = await _captured(db, call)
            assert statements, f"{name}: no SELECT captured"
            for statement, parameters in statements:
                plan = await _plan(db, statement, parameters)
                problems = _problems(plan, db.is_sqlite)
                if problems:
                    report[name] = [*problems, plan]
                print(f"--- {backend}: {name}\n{plan}")
        if db.is_sqlite:
            # SQLite's retention batch runs as driver SQL on the writer's own connection.
            statement = event_store._SQLITE_CANDIDATES.format(after=event_store._SQLITE_AFTER)
            stamp, seq = _cursor_in_middle()
            cutoff = (START + timedelta(seconds=20)).timestamp()
            plan = await _plan(db, statement, ("topic-3", cutoff, stamp, stamp, seq, 500))
            print(f"--- sqlite: retention batch (driver SQL)\n{plan}")
            if _problems(plan, sqlite=True):
                report["retention batch (driver SQL)"] = [*_problems(plan, sqlite=True), plan]
        assert not report, report
