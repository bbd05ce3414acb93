"""The SQLite dispatcher's bounded window over the store (``delivery/work.py``
``WindowSource``), on a real SQLite database with the schema migrated.

A simulated dispatcher takes due work, holds some of it for a few turns, delivers most and
retries the rest at random later times; a simulated recorder commits those outcomes with a
lag (as the real one does, in batches); new deliveries arrive as publishes. Whatever the
interleaving, every delivery ends exactly once, nothing is handed out before it is due or
while it is already held, and the window never holds much more than its bound.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mlgrid.delivery.work import WindowSource, Work
from mlgrid.domain.deliveries import CommittedDelivery
from mlgrid.store import migrate
from mlgrid.store.database import Database

T0 = 1_800_000_000.0


@dataclass
class LaggingRecorder:
    """Outcomes numbered as handed over and committed later, in order (``WriteProgress``)."""

    db: Database
    ticket: int = 0
    written: int = 0
    queued: list[tuple[int, str, tuple[object, ...]]] = field(default_factory=list)

    def final(self, delivery_id: int) -> None:
        self.ticket += 1
        sql = "UPDATE deliveries SET state = 'delivered' WHERE id = ?"
        self.queued.append((self.ticket, sql, (delivery_id,)))

    def reschedule(self, delivery_id: int, due: float) -> None:
        self.ticket += 1
        self.queued.append(
            (self.ticket, "UPDATE deliveries SET next_attempt_at = ? WHERE id = ? AND state = 'pending'",
             (due, delivery_id))
        )

    async def commit(self, count: int) -> None:
        """Commit the ``count`` oldest outcomes (one transaction)."""
        batch, self.queued = self.queued[:count], self.queued[count:]
        if not batch:
            return
        async with self.db.write() as conn:
            for _, sql, params in batch:
                await conn.exec_driver_sql(sql, params)
        self.written = batch[-1][0]


async def _database(tmp_path: Path) -> Database:
    db = Database.connect(f"sqlite:///{tmp_path / 'window.db'}")
    await migrate.upgrade(db)
    async with db.write() as conn:
        await conn.exec_driver_sql(
            "INSERT INTO events (seq, topic_key, event_id, event_type, subject, published_at, body) "
            "VALUES (1, 't', 'e', 'T', 's', ?, '{}')", (T0,)
        )
    return db


async def _insert(db: Database, ids: list[int], dues: list[float]) -> None:
    async with db.write() as conn:
        for delivery_id, due in zip(ids, dues, strict=True):
            await conn.exec_driver_sql(
                "INSERT INTO deliveries (id, event_seq, subscription_id, state, attempts, attempts_started, "
                "next_attempt_at, created_at) VALUES (?, 1, ?, 'pending', 0, 0, ?, ?)",
                (delivery_id, f"sub-{delivery_id % 3}", due, T0),
            )


async def _pending(db: Database) -> int:
    async with db.read() as conn:
        found = await conn.exec_driver_sql("SELECT count(*) FROM deliveries WHERE state = 'pending'")
        return int(found.scalar() or 0)


@pytest.mark.parametrize("seed", range(5))
async def test_every_delivery_ends_exactly_once_through_a_small_window(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    db = await _database(tmp_path)
    try:
        window = 40
        backlog = 500
        dues = [T0 - 50 + rng.uniform(0, 150) for _ in range(backlog)]
        await _insert(db, list(range(1, backlog + 1)), dues)
        recorder = LaggingRecorder(db)
        source = WindowSource(db, window, recorder)
        await source.load()
        assert len(source) <= window  # start-up read one window, not the backlog
        now = T0
        next_id = backlog + 1
        held: dict[int, tuple[Work, int]] = {}  # taken, resolved after a few turns
        ended: set[int] = set()
        largest = 0
        for turn in range(3000):
            now += rng.uniform(0.0, 2.0)
            if rng.random() < 0.1:  # a publish (now and then a burst larger than the window)
                size = rng.randint(1, 5) if rng.random() < 0.9 else 3 * window
                ids = list(range(next_id, next_id + size))
                next_id += len(ids)
                await _insert(db, ids, [now] * len(ids))
                source.committed([
                    CommittedDelivery(i, 1, f"sub-{i % 3}", datetime.fromtimestamp(now, tz=UTC)) for i in ids
                ])
            skip = {"sub-0"} if turn % 50 < 10 else set()  # a subscription saturated for a while
            if not skip:
                source.resume(["sub-0"])
            for work in await source.take_due(now, rng.randint(1, 30), skip):
                assert work.due <= now
                assert work.subscription_id not in skip
                assert work.id not in ended, f"delivery {work.id} handed out after it ended"
                assert work.id not in held, f"delivery {work.id} handed out twice"
                held[work.id] = (work, turn + rng.randint(0, 4))
            if rng.random() < 0.05:  # a circuit closed: its held deliveries are due at once
                await source.advance(rng.sample(range(1, next_id), 20), now)
            for delivery_id, (work, at) in list(held.items()):
                if at > turn:
                    continue
                del held[delivery_id]
                if rng.random() < 0.05:  # a failed read: back for a moment, nothing written
                    work.due = now + 1.0
                    source.requeue(work, written=False)
                elif rng.random() < 0.7:
                    source.done(delivery_id)
                    recorder.final(delivery_id)
                    ended.add(delivery_id)
                else:
                    work.attempts += 1
                    work.due = now + rng.choice([0.5, 5.0, 60.0, 400.0])
                    recorder.reschedule(delivery_id, work.due)
                    source.requeue(work, written=True)
            if rng.random() < 0.5:
                await recorder.commit(rng.randint(0, len(recorder.queued)))
            largest = max(largest, len(source))
            if len(ended) == next_id - 1:
                break
        # Drain: time moves on until everything has ended.
        for _ in range(3000):
            if len(ended) == next_id - 1:
                break
            now += 30.0
            for work in await source.take_due(now, 100):
                assert work.id not in ended and work.due <= now
                source.done(work.id)
                recorder.final(work.id)
                ended.add(work.id)
            for delivery_id, (_work, _at) in list(held.items()):
                del held[delivery_id]
                source.done(delivery_id)
                recorder.final(delivery_id)
                ended.add(delivery_id)
            await recorder.commit(len(recorder.queued))
        missing = sorted(set(range(1, next_id)) - ended)
        assert not missing, (missing[:20], source.horizon)
        assert len(ended) == next_id - 1
        assert await _pending(db) == 0
        # The window (and the retries waiting for their commit) stayed near its bound.
        assert largest <= 3 * window, largest
    finally:
        await db.close()


async def test_a_publish_behind_a_backlog_waits_in_the_store_and_is_found(tmp_path: Path) -> None:
    db = await _database(tmp_path)
    try:
        await _insert(db, list(range(1, 301)), [T0 - 300 + i for i in range(300)])
        source = WindowSource(db, 100)
        await source.load()
        assert source.horizon is not None and source.horizon[0] < T0
        before = len(source)
        await _insert(db, [1000], [T0])
        source.committed([CommittedDelivery(1000, 1, "sub-x", datetime.fromtimestamp(T0, tz=UTC))])
        assert len(source) == before  # beyond the horizon: not in memory
        seen: list[float] = []
        for _ in range(20):
            taken = await source.take_due(T0, 60)
            for work in taken:
                seen.append(work.due)
                source.done(work.id)
            async with db.write() as conn:  # the recorder's final writes
                for work in taken:
                    await conn.exec_driver_sql(
                        "UPDATE deliveries SET state = 'delivered' WHERE id = ?", (work.id,)
                    )
        assert len(seen) == 301 and seen == sorted(seen) and seen[-1] == T0
    finally:
        await db.close()


async def test_start_up_with_no_backlog_opens_the_window(tmp_path: Path) -> None:
    db = await _database(tmp_path)
    try:
        source = WindowSource(db, 100)
        await source.load()
        assert source.horizon is None  # everything pending is in memory: publishes go straight in
        source.committed([CommittedDelivery(7, 1, "s", datetime.fromtimestamp(T0, tz=UTC))])
        assert [w.id for w in await source.take_due(T0, 10)] == [7]
    finally:
        await db.close()
