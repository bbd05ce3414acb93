"""The live event feed behind ``/ui/stream`` on real SQLite and PostgreSQL.

It hands every viewer the events committed after it joined, skips ahead (and says so) when a
burst is larger than one poll, and — on PostgreSQL, where a sequence number is taken before
commit — still delivers an event whose transaction commits after a later one.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from mlgrid.broker.activity import ActivityService
from mlgrid.store import events as event_store
from mlgrid.store.database import Database
from mlgrid.store.events import NewEvent
from mlgrid.ui.feed import EventFeed


@pytest.fixture
def db(migrated_db: Database) -> Database:
    return migrated_db


def new_events(topic: str, count: int, prefix: str = "e") -> list[NewEvent]:
    return [
        NewEvent(topic, f"{prefix}{i}-{uuid.uuid4().hex[:6]}", "Test.Happened", f"items/{i}", "{}")
        for i in range(count)
    ]


async def store(db: Database, batch: list[NewEvent]) -> None:
    async with db.write() as conn:
        await event_store.insert_new(conn, batch, datetime.now(UTC))


async def test_viewers_get_what_was_committed_after_they_joined(db: Database) -> None:
    topic = "feed" + uuid.uuid4().hex[:8]
    await store(db, new_events(topic, 2, "old"))
    feed = EventFeed(ActivityService(db))
    first, second = await feed.join(), await feed.join()
    assert await feed.poll() is None
    fresh = new_events(topic, 3, "new")
    await store(db, fresh)
    update = await feed.poll()
    assert update is not None and not update.skipped
    assert [r.event_id for r in update.rows] == [e.event_id for e in fresh]
    assert [r.subject for r in update.rows] == ["items/0", "items/1", "items/2"]
    for viewer in (first, second):
        received = await viewer.next(1.0)
        assert received is update
    feed.leave(first)
    feed.leave(second)
    assert feed.viewers == 0


async def test_a_burst_larger_than_a_poll_skips_to_the_newest(db: Database) -> None:
    topic = "feed" + uuid.uuid4().hex[:8]
    feed = EventFeed(ActivityService(db), batch=5)
    viewer = await feed.join()
    burst = new_events(topic, 12)
    await store(db, burst)
    update = await feed.poll()
    assert update is not None
    assert update.skipped
    assert [r.event_id for r in update.rows] == [e.event_id for e in burst[-5:]]
    assert (await viewer.next(1.0)) is update
    feed.leave(viewer)


async def test_a_late_commit_behind_the_cursor_is_still_delivered(db: Database) -> None:
    if db.is_sqlite:
        pytest.skip("SQLite commits one writer at a time: sequence numbers are committed in order")
    topic = "feed" + uuid.uuid4().hex[:8]
    feed = EventFeed(ActivityService(db))
    viewer = await feed.join()
    late, early = new_events(topic, 1, "late"), new_events(topic, 1, "early")
    async with db.write() as slow:
        # The slow transaction takes its sequence number first but commits last.
        await event_store.insert_new(slow, late, datetime.now(UTC))
        await store(db, early)
        first = await feed.poll()
        assert first is not None
        assert [r.event_id for r in first.rows] == [early[0].event_id]
    second = await feed.poll()
    assert second is not None
    assert [r.event_id for r in second.rows] == [late[0].event_id]
    assert (await viewer.next(1.0)) is first
    assert (await viewer.next(1.0)) is second
    feed.leave(viewer)


async def test_delivery_states_are_counted_per_event(db: Database) -> None:
    """The live page's delivery column: pending split into pending and retrying (a failed
    attempt behind it), an event without deliveries counts nothing, an unknown one is absent."""
    from mlgrid.store import deliveries as delivery_store
    from mlgrid.store.deliveries import NewDelivery
    from mlgrid.store.tables import deliveries

    topic = "feed" + uuid.uuid4().hex[:8]
    batch = new_events(topic, 2)
    async with db.write() as conn:
        seqs = await event_store.insert_new(conn, batch, datetime.now(UTC))
        fan_out, alone = (seqs[(topic, e.event_id)] for e in batch)
        ids = await delivery_store.insert_pending(
            conn, [NewDelivery(fan_out, f"sub-{i}") for i in range(4)], datetime.now(UTC)
        )
        await conn.execute(deliveries.update().where(deliveries.c.id == ids[0]).values(state="delivered"))
        await conn.execute(deliveries.update().where(deliveries.c.id == ids[1]).values(attempts=2))
        await conn.execute(deliveries.update().where(deliveries.c.id == ids[2]).values(state="deadLettered"))
    found = await ActivityService(db).delivery_states([fan_out, alone, 10**12])
    assert found == {
        fan_out: (topic.lower(), {"delivered": 1, "retrying": 1, "deadLettered": 1, "pending": 1}),
        alone: (topic.lower(), {}),
    }
