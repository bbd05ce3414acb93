"""The retention sweeper (SPEC §8) against a real database, on SQLite and PostgreSQL.

The sweeper's clock is injected, so "three days later" needs no waiting. Events are stored
through ``store_and_route`` with chosen publish times; the sweeper must delete exactly the
events older than their topic's retention that no pending delivery still needs.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from mlgrid.auth.secretbox import SecretBox, new_key
from mlgrid.broker import retention
from mlgrid.broker.ingest import PublishBatch, store_and_route
from mlgrid.broker.retention import RetentionSweeper
from mlgrid.broker.routing import Router
from mlgrid.broker.topics import TopicService, TopicSpec
from mlgrid.config import Settings
from mlgrid.domain.schemas import EventSchema
from mlgrid.store import deliveries as delivery_store
from mlgrid.store import delivery_outcomes as outcome_store
from mlgrid.store import events as event_store
from mlgrid.store import migrate
from mlgrid.store.clock import to_epoch
from mlgrid.store.database import Database
from mlgrid.store.deliveries import NewDelivery
from mlgrid.store.delivery_outcomes import FinalUpdate


def _event(event_id: str) -> dict[str, object]:
    return {
        "id": event_id,
        "topic": "/t",
        "subject": "s",
        "eventType": "T",
        "eventTime": "2024-05-01T00:00:00Z",
        "data": None,
        "dataVersion": "",
        "metadataVersion": "1",
    }


async def _store(db: Database, topic_key: str, ids: list[str], at: datetime) -> dict[str, int]:
    """Store events as if published at ``at``; returns their sequence numbers."""
    async with db.write() as conn:
        await store_and_route(
            conn, [PublishBatch(topic_key, EventSchema.EVENT_GRID, [_event(i) for i in ids])], Router(), at
        )
    async with db.read() as conn:
        page = await event_store.list_page(
            conn, topic_key, since=None, until=None, event_type=None, limit=10_000
        )
    return {e.event_id: e.seq for e in page}


async def _remaining(db: Database, topic_key: str) -> list[str]:
    async with db.read() as conn:
        page = await event_store.list_page(
            conn, topic_key, since=None, until=None, event_type=None, limit=10_000
        )
    return [e.event_id for e in page]


async def test_sweeper_deletes_expired_events_but_keeps_pending_ones(database_url: str) -> None:
    db = Database.connect_unpooled(database_url)
    try:
        await migrate.upgrade(db)
        # Real "now": the PostgreSQL database is shared with other tests, whose events are
        # all younger than a day and must survive this sweep.
        now = datetime.now(UTC)
        clock = [now]
        topics = TopicService(
            db,
            Settings(),
            SecretBox(new_key()),
            "00000000-0000-0000-0000-000000000000",
            clock=lambda: clock[0],
        )
        short, _ = await topics.put("ret" + uuid.uuid4().hex[:10], TopicSpec(EventSchema.EVENT_GRID,
                                                                     None, "default", 1))
        long, _ = await topics.put("ret" + uuid.uuid4().hex[:10], TopicSpec(EventSchema.EVENT_GRID,
                                                                     None, "default", 5))

        seqs = await _store(
            db, short.key, ["old-1", "old-2", "old-pending", "old-delivered"], now - timedelta(days=3)
        )
        seqs |= await _store(db, short.key, ["young"], now - timedelta(hours=23))
        await _store(db, long.key, ["three-days", "four-days-ago"], now - timedelta(days=3))
        await _store(db, long.key, ["six-days"], now - timedelta(days=6))
        async with db.write() as conn:
            pending_id, delivered_id = await delivery_store.insert_pending(
                conn,
                [NewDelivery(seqs["old-pending"], "sub-a"), NewDelivery(seqs["old-delivered"], "sub-a")],
                now - timedelta(days=3),
            )
            await outcome_store.finalize_one(
                conn,
                FinalUpdate(
                    delivered_id, "delivered", 1, "Success", 200, None, to_epoch(now), None, to_epoch(now)
                ),
            )

        sweeper = RetentionSweeper(db, topics, clock=lambda: clock[0])
        deleted = await sweeper.sweep_once()

        assert deleted >= 4  # other tests' expired leftovers may go too, never anything younger
        assert await _remaining(db, short.key) == ["old-pending", "young"]
        assert await _remaining(db, long.key) == ["three-days", "four-days-ago"]
        async with db.read() as conn:
            rows = await delivery_store.get_many(conn, [pending_id, delivered_id])
        assert set(rows) == {pending_id}  # a finished delivery goes with its event

        # Once the pending delivery is final, the next sweep removes its event too.
        async with db.write() as conn:
            await outcome_store.finalize_one(
                conn,
                FinalUpdate(
                    pending_id, "dropped", 3, "NotFound", 404, None, to_epoch(now), "Dropped", to_epoch(now)
                ),
            )
        await sweeper.sweep_once()
        assert await _remaining(db, short.key) == ["young"]

        # A day later the young one has expired as well; the 5-day topic keeps its 4-day-old events.
        clock[0] = now + timedelta(days=1, minutes=1)
        await sweeper.sweep_once()
        assert await _remaining(db, short.key) == []
        assert await _remaining(db, long.key) == ["three-days", "four-days-ago"]
        await topics.delete(short.name)
        await topics.delete(long.name)
    finally:
        await db.close()


async def test_sweeper_deletes_in_chunks(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """More expired events than one delete chunk: the sweep loops until none is left."""
    db = Database.connect_unpooled(database_url)
    try:
        await migrate.upgrade(db)
        now = datetime.now(UTC)
        topics = TopicService(db, Settings(), SecretBox(new_key()), "sub", clock=lambda: now)
        topic, _ = await topics.put(
            "chunk" + uuid.uuid4().hex[:10], TopicSpec(EventSchema.EVENT_GRID, None, "default", 1)
        )
        await _store(db, topic.key, [f"e{i}" for i in range(25)], now - timedelta(days=2))
        await _store(db, topic.key, ["kept"], now)
        monkeypatch.setattr(retention, "DELETE_CHUNK", 7)
        await RetentionSweeper(db, topics, clock=lambda: now).sweep_once()
        assert await _remaining(db, topic.key) == ["kept"]
        await topics.delete(topic.name)
    finally:
        await db.close()
