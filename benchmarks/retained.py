"""Do list pages stay fast with 10 million retained events, and what does a retained event cost
on disk?

PostgreSQL: a fresh database on 127.0.0.1:5432 is migrated by mlgrid, then filled directly with
SQL (``generate_series``, no server involved): ``--events`` events (10,000,000 by default) over
100 topics, with an Event Grid body of the size the Azure SDK sends (~330 bytes), one delivery
each (1 % still pending, the rest delivered) for one subscription per topic, and 0.1 % as many
dead letters. The secondary indexes are dropped during the fill and built after it (what a bulk
load does), then ``ANALYZE``. Then:

* **bytes per retained event**: heap + TOAST + indexes of ``events`` and of ``deliveries``,
  divided by the events (one delivery each: a second subscription adds the deliveries figure
  again);
* **page latency**: each list query of ``store/`` (the ones the API runs; the same as
  ``tests/integration/test_list_query_plans.py`` explains) timed through mlgrid's own store
  functions on a pooled asyncpg connection, median and p99 of ``--repeats`` runs, against the
  floor of fetching one event by primary key; and for contrast the OFFSET page the keyset
  replaced (``OFFSET`` half-way into one topic).

SQLite: the same rows (``--sqlite-events``, 200,000 by default; sizes are linear) written with a
recursive CTE into a migrated file; bytes per event from ``dbstat`` where SQLite has it, else
the file's pages.

The machine is shared: latencies move with other people's load; sizes do not.

    .venv/bin/python benchmarks/retained.py                      # 10M on PostgreSQL
    .venv/bin/python benchmarks/retained.py --events 1000000 --sqlite-events 100000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import PG_HOST, PG_PORT, PG_USER, percentile, pg_admin, report

from mlgrid.store import dead_letters as dead_letter_store
from mlgrid.store import deliveries as delivery_store
from mlgrid.store import events as event_store
from mlgrid.store import migrate
from mlgrid.store.database import Database

TOPICS = 100
START = datetime(2026, 1, 1, tzinfo=UTC)
#: An Event Grid event as the Azure SDK sends it (about 330 bytes of JSON).
BODY_SQL = (
    "'{\"id\":\"' || md5(i::text) || '\",\"subject\":\"/workspaces/ws/runs/' || (i % 9973) || "
    "'\",\"data\":{\"runId\":\"run-' || (i % 9973) || '\",\"status\":\"Completed\",\"metrics\":"
    "{\"accuracy\":0.9731,\"loss\":0.0812}},\"eventType\":\"Microsoft.MachineLearningServices.RunCompleted\","
    "\"dataVersion\":\"2\",\"metadataVersion\":\"1\",\"eventTime\":\"2026-01-01T00:00:00.000000Z\","
    "\"topic\":\"/subscriptions/x/resourceGroups/default/providers/Microsoft.EventGrid/topics/t' "
    "|| (i % 100) || '\"}'"
)
SECONDARY = {
    "events": ["uq_events_topic_key_event_id", "ix_events_topic_published_seq"],
    "deliveries": ["ix_deliveries_due", "ix_deliveries_subscription_state_id",
                   "ix_deliveries_subscription_id", "ix_deliveries_event", "ix_deliveries_lock_token"],
}


def _stamp(seconds: str) -> str:
    """SQL for a publish time ``seconds`` after START, microsecond-aligned as mlgrid stores it."""
    return f"(round(({START.timestamp()} + {seconds}) * 1000000) / 1000000.0)::float8"


async def fill_postgres(url: str, events: int, chunk: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET maintenance_work_mem = '256MB'")
        definitions = {}
        for names in SECONDARY.values():
            for name in names:
                definitions[name] = await conn.fetchval("SELECT pg_get_indexdef($1::regclass)", name)
        for name in [*SECONDARY["events"], *SECONDARY["deliveries"]]:
            if name.startswith("uq_"):
                await conn.execute(f"ALTER TABLE events DROP CONSTRAINT {name}")
            else:
                await conn.execute(f"DROP INDEX {name}")
        started = time.perf_counter()
        for low in range(0, events, chunk):
            high = min(events, low + chunk)
            await conn.execute(
                "INSERT INTO events (seq, topic_key, event_id, event_type, subject, published_at, body) "
                f"SELECT i, 't' || (i % {TOPICS}), md5(i::text), 'Type.' || (i % 7), "
                f"'/workspaces/ws/runs/' || (i % 9973), {_stamp('i * 0.001')}, {BODY_SQL} "
                f"FROM generate_series({low + 1}, {high}) AS i")
            await conn.execute(
                "INSERT INTO deliveries (id, event_seq, subscription_id, state, attempts, next_attempt_at, "
                "created_at, finished_at, last_outcome, last_http_status, last_duration_ms) "
                f"SELECT i, i, 'sub-' || (i % {TOPICS}), "
                "CASE WHEN i % 100 = 0 THEN 'pending' ELSE 'delivered' END, 1, "
                f"{_stamp('i * 0.001')}, {_stamp('i * 0.001')}, "
                f"CASE WHEN i % 100 = 0 THEN NULL ELSE {_stamp('i * 0.001 + 0.05')} END, 'Success', 200, 12 "
                f"FROM generate_series({low + 1}, {high}) AS i")
            print(f"  {high:,} events and deliveries ({time.perf_counter() - started:.0f} s)", flush=True)
        await conn.execute(
            "INSERT INTO dead_letters "
            "(id, subscription_id, delivery_id, event_id, reason, record, created_at) "
            f"SELECT md5('dl' || i), 'sub-' || (i % {TOPICS}), i, md5(i::text), "
            "'MaxDeliveryAttemptsExceeded', "
            f"'{{\"deadLetterReason\":\"MaxDeliveryAttemptsExceeded\"}}', {_stamp('i * 0.001')} "
            f"FROM generate_series(1, {max(1, events // 1000)}) AS i")
        await conn.execute(f"SELECT setval(pg_get_serial_sequence('events', 'seq'), {events})")
        await conn.execute(f"SELECT setval(pg_get_serial_sequence('deliveries', 'id'), {events})")
        for name, definition in definitions.items():
            clock = time.perf_counter()
            if name.startswith("uq_"):
                await conn.execute(f"ALTER TABLE events ADD CONSTRAINT {name} UNIQUE (topic_key, event_id)")
            else:
                await conn.execute(definition)
            print(f"  index {name}: {time.perf_counter() - clock:.0f} s", flush=True)
        await conn.execute("VACUUM ANALYZE events")
        await conn.execute("VACUUM ANALYZE deliveries")
        await conn.execute("ANALYZE dead_letters")
    finally:
        await conn.close()


async def postgres_sizes(url: str, events: int) -> dict[str, float]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        sizes: dict[str, float] = {}
        for table in ("events", "deliveries"):
            total = await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", table)
            indexes = await conn.fetchval("SELECT pg_indexes_size($1::regclass)", table)
            sizes[f"{table} total"] = total / events
            sizes[f"{table} indexes"] = indexes / events
            sizes[f"{table} heap+toast"] = (total - indexes) / events
        sizes["database"] = await conn.fetchval("SELECT pg_database_size(current_database())") / events
        return sizes
    finally:
        await conn.close()


Query = Callable[[object], Awaitable[object]]


def page_queries(events: int) -> dict[str, Query]:
    """The list queries, each on a cursor deep in the table (half-way through one topic)."""
    middle = START + timedelta(seconds=events * 0.001 / 2)
    event_cursor = (middle.timestamp(), events // 2)
    deep_delivery = events // 2
    return {
        "events: first page of a topic": lambda c: event_store.list_page(
            c, "t42", since=None, until=None, event_type=None, limit=101),
        "events: page half-way into a topic": lambda c: event_store.list_page(
            c, "t42", since=None, until=None, event_type=None, after=event_cursor, limit=101),
        "events: one-minute window": lambda c: event_store.list_page(
            c, "t42", since=middle, until=middle + timedelta(minutes=1), event_type=None, limit=101),
        "events: by type, half-way": lambda c: event_store.list_page(
            c, "t42", since=None, until=None, event_type="type.3", after=event_cursor, limit=101),
        "deliveries: page half-way": lambda c: delivery_store.list_for_subscription(
            c, "sub-42", None, deep_delivery, 101),
        "deliveries: pending, half-way": lambda c: delivery_store.list_for_subscription(
            c, "sub-42", "pending", deep_delivery, 101),
        "dead letters: first page": lambda c: dead_letter_store.list_page(c, "sub-42", None, 101),
    }


async def time_pages(db: Database, events: int, repeats: int, report_path: str | None, label: str) -> None:
    from sqlalchemy import text

    async def timed(call: Query) -> list[float]:
        samples = []
        for _ in range(repeats):
            async with db.read() as conn:
                started = time.perf_counter()
                await call(conn)
                samples.append((time.perf_counter() - started) * 1000)
        return samples

    floor = await timed(lambda c: c.execute(text("SELECT * FROM events WHERE seq = :s"), {"s": events // 3}))
    floor_ms = statistics.median(floor)
    print(f"\n{label}: page latency (median / p99 of {repeats}, ms); floor: one event by primary key "
          f"{floor_ms:.2f} ms")
    for name, call in page_queries(events).items():
        samples = await timed(call)
        median = statistics.median(samples)
        print(f"  {name:38s} {median:8.2f} {percentile(samples, 0.99):8.2f}")
        report(report_path, f"{label}: {name}, ms", median, floor_ms, "one event by primary key")
    offset = events // TOPICS // 2
    samples = await timed(lambda c: c.execute(text(
        "SELECT * FROM events WHERE topic_key = 't42' ORDER BY published_at, seq "
        f"LIMIT 101 OFFSET {offset}")))
    print(f"  {'(contrast) OFFSET page half-way':38s} {statistics.median(samples):8.2f} "
          f"{percentile(samples, 0.99):8.2f}")


def sqlite_fill_and_size(path: Path, events: int) -> dict[str, float]:
    import sqlite3

    raw = sqlite3.connect(path)
    try:
        body = BODY_SQL.replace("md5(i::text)", "printf('%032x', i)").replace("i::text", "i")
        stamp = f"(round(({START.timestamp()} + i * 0.001) * 1000000) / 1000000.0)"
        raw.execute("BEGIN")
        raw.execute(
            "INSERT INTO events (seq, topic_key, event_id, event_type, subject, published_at, body) "
            f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {events}) "
            f"SELECT i, 't' || (i % {TOPICS}), printf('%032x', i), 'Type.' || (i % 7), "
            f"'/workspaces/ws/runs/' || (i % 9973), {stamp}, {body} FROM n")
        raw.execute(
            "INSERT INTO deliveries (id, event_seq, subscription_id, state, attempts, attempts_started, "
            "next_attempt_at, created_at, finished_at, last_outcome, last_http_status, last_duration_ms) "
            f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {events}) "
            f"SELECT i, i, 'sub-' || (i % {TOPICS}), "
            "CASE WHEN i % 100 = 0 THEN 'pending' ELSE 'delivered' END, "
            f"1, 1, {stamp}, {stamp}, {stamp} + 0.05, 'Success', 200, 12 FROM n")
        raw.execute("COMMIT")
        raw.execute("VACUUM")
        page_size = raw.execute("PRAGMA page_size").fetchone()[0]
        pages = raw.execute("PRAGMA page_count").fetchone()[0]
        sizes = {"file": page_size * pages / events}
        try:
            rows = raw.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
        except sqlite3.OperationalError:
            rows = []
        owners = dict(raw.execute(
            "SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"))
        for name, size in rows:
            table = owners.get(name, name)
            if table in ("events", "deliveries"):
                kind = "table" if name == table else "indexes"
                sizes[f"{table} {kind}"] = sizes.get(f"{table} {kind}", 0.0) + size / events
        return sizes
    finally:
        raw.close()


async def run(args: argparse.Namespace) -> None:
    database = "mlgrid_bench_retained_" + uuid.uuid4().hex[:10]
    await pg_admin(f'CREATE DATABASE "{database}"')
    url = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"
    try:
        db = Database.connect(url)
        try:
            await migrate.upgrade(db)
            print(f"PostgreSQL: filling {args.events:,} events on {database}", flush=True)
            started = time.perf_counter()
            await fill_postgres(url, args.events, args.chunk)
            print(f"  filled and indexed in {time.perf_counter() - started:.0f} s", flush=True)
            sizes = await postgres_sizes(url, args.events)
            print(f"\nPostgreSQL: bytes per retained event ({args.events:,} events, one delivery each)")
            for name, value in sizes.items():
                print(f"  {name:22s} {value:8.0f}")
            await time_pages(db, args.events, args.repeats, args.report, f"PostgreSQL {args.events:,} events")
        finally:
            await db.close()
    finally:
        await pg_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    with tempfile.TemporaryDirectory(prefix="mlgrid-bench-retained-") as folder:
        path = Path(folder) / "mlgrid.db"
        sqlite = Database.connect_unpooled(f"sqlite:///{path}")
        try:
            await migrate.upgrade(sqlite)
        finally:
            await sqlite.close()
        started = time.perf_counter()
        sizes = sqlite_fill_and_size(path, args.sqlite_events)
        print(f"\nSQLite: bytes per retained event ({args.sqlite_events:,} events, one delivery each; "
              f"filled in {time.perf_counter() - started:.0f} s)")
        for name, value in sizes.items():
            print(f"  {name:22s} {value:8.0f}")
        sqlite = Database.connect(f"sqlite:///{path}")
        try:
            label = f"SQLite {args.sqlite_events:,} events"
            await time_pages(sqlite, args.sqlite_events, args.repeats, None, label)
        finally:
            await sqlite.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=10_000_000, help="retained events on PostgreSQL")
    parser.add_argument("--sqlite-events", type=int, default=200_000, help="retained events on SQLite")
    parser.add_argument("--chunk", type=int, default=1_000_000, help="rows per INSERT ... generate_series")
    parser.add_argument("--repeats", type=int, default=30, help="timed runs of each page query")
    parser.add_argument("--report", default=None, help="append figures as JSON lines to this file")
    args = parser.parse_args()
    if args.events < 10_000 or args.sqlite_events < 10_000:
        sys.exit("--events and --sqlite-events: at least 10,000")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
