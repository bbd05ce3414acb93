"""A large retention prune runs in small batches beside publishing, on SQLite and PostgreSQL.

Tens of thousands of expired events, each with a final delivery, and a few held back by a
pending delivery; publishers commit one event per transaction through the real publish path
(``commit_publish``: SQLite's one-trip writer, PostgreSQL's asyncpg transaction) first alone,
then while the sweeper prunes. Asserted: exactly the expired, finished events and their
deliveries are gone, the pending ones stay, the prune ran as many bounded batches, and
publishes kept committing *while* it ran (a single long delete would hold SQLite's writer and
let none through). The publish latencies (p50/p99, without and during the prune) are printed —
a shared machine makes them unfit for an assertion; docs/performance.md quotes a run.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text
from tests.support.services import fresh_pg_database

from mlgrid.auth.secretbox import SecretBox, new_key
from mlgrid.broker import retention
from mlgrid.broker.retention import RetentionSweeper
from mlgrid.broker.topics import TopicService, TopicSpec
from mlgrid.config import Settings
from mlgrid.domain.schemas import EventSchema
from mlgrid.store import migrate
from mlgrid.store.database import Database
from mlgrid.store.events import NewEvent
from mlgrid.store.ingest import commit_publish
from mlgrid.store.tables import deliveries, events

EXPIRED = 20_000
HELD = 50  # expired, but a delivery is still pending
PUBLISHERS = 4
BASELINE_PUBLISHES = 600
#: Bounds of the publishing during the prune (it stops when the prune ends).
MAX_PUBLISHES_DURING = 20_000
MAX_SECONDS = 120.0


@pytest.fixture(params=["sqlite", "postgresql"])
def prune_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'prune.db'}"
        return
    with fresh_pg_database("mlgrid_prune") as url:
        yield url


async def _fill_expired(db: Database, topic_key: str, at: datetime) -> None:
    """``EXPIRED`` old events with a delivered delivery each, ``HELD`` with a pending one."""
    stamp = at.timestamp()
    total = EXPIRED + HELD
    async with db.write() as conn:
        for start in range(0, total, 5_000):
            await conn.execute(insert(events), [
                {"topic_key": topic_key, "event_id": f"old-{n}", "event_type": "T", "subject": "s",
                 "published_at": stamp, "body": "{}"}
                for n in range(start, min(total, start + 5_000))
            ])
        seqs = [r[0] for r in await conn.execute(
            select(events.c.seq).where(events.c.topic_key == topic_key).order_by(events.c.seq))]
        for start in range(0, len(seqs), 5_000):
            await conn.execute(insert(deliveries), [
                {"event_seq": seq, "subscription_id": "sub", "attempts": 1,
                 "state": "pending" if n >= EXPIRED else "delivered",
                 "next_attempt_at": stamp, "created_at": stamp, "finished_at": stamp}
                for n, seq in enumerate(seqs[start:start + 5_000], start)
            ])
    if not db.is_sqlite:
        async with db.write() as conn:
            await conn.execute(text("ANALYZE events"))
            await conn.execute(text("ANALYZE deliveries"))


class Publishers:
    """``PUBLISHERS`` tasks committing one event (with one delivery) per transaction."""

    def __init__(self, db: Database, topic_key: str) -> None:
        self.db = db
        self.topic_key = topic_key
        self.latencies: list[float] = []

    async def _one(self) -> None:
        event = NewEvent(self.topic_key, str(uuid.uuid4()), "T", "s", "{}")
        started = time.perf_counter()
        await commit_publish(self.db, [event], {(self.topic_key, event.event_id): ["sub"]}, datetime.now(UTC))
        self.latencies.append((time.perf_counter() - started) * 1000)

    async def until(self, count: int, done: asyncio.Event | None = None) -> None:
        deadline = time.monotonic() + MAX_SECONDS

        async def worker() -> None:
            while len(self.latencies) < count and time.monotonic() < deadline:
                if done is not None and done.is_set():
                    return
                await self._one()

        await asyncio.gather(*(worker() for _ in range(PUBLISHERS)))


def _summary(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return f"p50 {statistics.median(ordered):.2f} ms, p99 {p99:.2f} ms ({len(ordered)} publishes)"


async def test_a_large_prune_runs_in_batches_beside_publishing(prune_url: str) -> None:
    backend = "sqlite" if prune_url.startswith("sqlite") else "postgresql"
    db = Database.connect(prune_url)
    try:
        await migrate.upgrade(db)
        now = datetime.now(UTC)
        topics = TopicService(db, Settings(), SecretBox(new_key()), "sub", clock=lambda: now)
        topic, _ = await topics.put("prune" + uuid.uuid4().hex[:8], TopicSpec(EventSchema.EVENT_GRID,
                                                                             None, "default", 1))
        await _fill_expired(db, topic.key, now - timedelta(days=3))

        alone = Publishers(db, topic.key)
        await alone.until(BASELINE_PUBLISHES)

        during = Publishers(db, topic.key)
        sweeper = RetentionSweeper(db, topics, clock=lambda: now)
        finished = asyncio.Event()

        async def prune() -> tuple[int, float, int]:
            await asyncio.sleep(0.05)  # the publishers are running
            started = time.perf_counter()
            deleted = await sweeper.sweep_once()
            took = time.perf_counter() - started
            committed_while_pruning = len(during.latencies)
            finished.set()
            return deleted, took, committed_while_pruning

        (deleted, took, committed_while_pruning), _ = await asyncio.gather(
            prune(), during.until(MAX_PUBLISHES_DURING, finished)
        )

        print(f"\n{backend}: prune of {EXPIRED:,} expired events (+ their final deliveries) in "
              f"{sweeper.batches} batches, {took:.2f} s")
        print(f"{backend}: publish without prune: {_summary(alone.latencies)}")
        print(f"{backend}: publish during prune:  {_summary(during.latencies)}")
        assert deleted == EXPIRED
        assert sweeper.batches >= EXPIRED // retention.DELETE_CHUNK
        assert committed_while_pruning >= 10, "publishing stalled while the prune ran"
        async with db.read() as conn:
            old = await conn.execute(
                select(func.count()).select_from(events).where(events.c.event_id.like("old-%")))
            assert old.scalar_one() == HELD
            states = dict((await conn.execute(
                select(deliveries.c.state, func.count()).group_by(deliveries.c.state))).all())
        assert states.get("pending") == HELD + len(alone.latencies) + len(during.latencies)
        assert "delivered" not in states
    finally:
        await db.close()
