"""Deliveries a node claimed at publish are never dropped by its own dispatcher (PostgreSQL).

Found by ``benchmarks/cluster.py``: after a burst on one node, 14–64 deliveries stayed
``pending``, claimed by the node, never attempted, their lease renewed for as long as the node
lived. ``LeaseSource.take_due`` gives the claims of a saturated subscription back to the store
and then replaced its list of arrivals with what it had kept — dropping every arrival that a
publish committed *while* that write was in flight. Here the write is held on a real row lock
(another transaction holds the row), a publish's arrival comes in meanwhile, and it must still
be handed to the dispatcher afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, select, text
from tests.support.services import fresh_pg_database

from mlgrid.delivery.work import LeaseSource
from mlgrid.domain.deliveries import CommittedDelivery
from mlgrid.store import migrate
from mlgrid.store.database import Database
from mlgrid.store.tables import deliveries, events


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_pg_database("mlgrid_handover") as url:
        yield url


async def _claimed_rows(db: Database, now: float) -> tuple[int, int]:
    """One event with two deliveries claimed by node-a at insert: subscription "busy" and "free"."""
    async with db.write() as conn:
        seq = (await conn.execute(insert(events).returning(events.c.seq), {
            "topic_key": "t", "event_id": "e1", "event_type": "T", "subject": "s",
            "published_at": now, "body": "{}"})).scalar_one()
        ids = []
        for subscription in ("busy", "free"):
            ids.append((await conn.execute(insert(deliveries).returning(deliveries.c.id), {
                "event_seq": seq, "subscription_id": subscription, "state": "pending", "attempts": 0,
                "next_attempt_at": now, "created_at": now, "claimed_by": "node-a",
                "lease_until": now + 30})).scalar_one())
    return ids[0], ids[1]


def _arrival(delivery_id: int, subscription: str, now: float) -> CommittedDelivery:
    return CommittedDelivery(delivery_id, 1, subscription, datetime.fromtimestamp(now, UTC), claimed=True)


async def _wait_for_lock_wait(db: Database) -> None:
    """Until a backend of this database waits on a row lock (bounded)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        async with db.read() as conn:
            waiting = (await conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"))).scalar_one()
        if waiting:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the release write never waited on the held row")


async def test_an_arrival_committed_while_claims_are_released_is_still_handed_over(pg_url: str) -> None:
    db = Database.connect(pg_url)
    try:
        await migrate.upgrade(db)
        now = time.time()
        busy_id, free_id = await _claimed_rows(db, now)
        source = LeaseSource(db, "node-a", clock=lambda: now)
        source.committed([_arrival(busy_id, "busy", now)])

        async with db.engine.connect() as blocker:
            transaction = await blocker.begin()
            await blocker.execute(select(deliveries.c.id).where(deliveries.c.id == busy_id).with_for_update())
            # "busy" is saturated: its claim goes back to the store, and that write waits here.
            releasing = asyncio.create_task(source.take_due(now, 10, skip={"busy"}))
            await _wait_for_lock_wait(db)
            source.committed([_arrival(free_id, "free", now)])  # a publish commits meanwhile
            await transaction.commit()
        assert await asyncio.wait_for(releasing, 20) == []

        taken = await source.take_due(now, 10, skip={"busy"})
        assert [w.id for w in taken] == [free_id]
        async with db.read() as conn:
            claimed_by = (await conn.execute(
                select(deliveries.c.claimed_by).where(deliveries.c.id == busy_id))).scalar_one()
        assert claimed_by is None  # the saturated subscription's claim went back to the store
    finally:
        await db.close()
