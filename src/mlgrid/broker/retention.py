"""The retention sweeper: deletes events older than their topic's retention, with their final
deliveries, in small batches that publishing never waits long for.

Events that a delivery still waits for are kept until that delivery is final, so retention
never turns a pending delivery into a lost one.

Why batches, and why the pauses: a sweep after a day of heavy traffic can have millions of rows
to delete. One statement would hold SQLite's single writer (every publish queues behind it) or,
on PostgreSQL, a long transaction with millions of row locks, WAL in one burst and a vacuum
backlog. So each batch is one short transaction of at most ``DELETE_CHUNK`` events (one index
range, continuing from where the previous batch stopped), and after each the sweeper sleeps at
least as long as the batch took (``PAUSE_RATIO``): retention takes at most about half of the
writer's time while it runs, and a publish waits for at most one batch. Batches that take longer
than ``BATCH_TARGET_SECONDS`` halve the chunk; quick ones let it grow back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.broker.topics import TopicService
from mlgrid.errors import LeaseLost
from mlgrid.store import events as event_store
from mlgrid.store.clock import to_epoch
from mlgrid.store.database import Database
from mlgrid.store.faults import log_failure

log = logging.getLogger("mlgrid.retention")

SWEEP_INTERVAL_SECONDS = 60.0
#: Events examined (and at most deleted) per batch, at the most.
DELETE_CHUNK = 500
#: The smallest batch the chunk shrinks to when batches are slow.
MIN_CHUNK = 50
#: A batch that takes longer than this halves the next one.
BATCH_TARGET_SECONDS = 0.01
#: Sleep after a batch, as a multiple of how long the batch took (at least ``MIN_PAUSE_SECONDS``).
PAUSE_RATIO = 1.0
MIN_PAUSE_SECONDS = 0.002


@dataclass
class BatchSize:
    """The adaptive chunk: halved after a slow batch, grown by half after a quick one."""

    current: int
    ceiling: int

    def after(self, seconds: float) -> None:
        if seconds > BATCH_TARGET_SECONDS:
            self.current = max(min(MIN_CHUNK, self.ceiling), self.current // 2)
        elif seconds < BATCH_TARGET_SECONDS / 2:
            self.current = min(self.ceiling, self.current + max(1, self.current // 2))


#: The lease that makes one node of a cluster sweep (``cluster/node.py``).
RETENTION_DUTY = "retention"

Fence = Callable[[AsyncConnection], Awaitable[None]]


class RetentionSweeper:
    def __init__(
        self,
        db: Database,
        topics: TopicService,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        interval: float = SWEEP_INTERVAL_SECONDS,
    ) -> None:
        self._db = db
        self._topics = topics
        self._clock = clock
        self._interval = interval
        #: Batches run by this sweeper so far (what a test or a benchmark reads).
        self.batches = 0

    async def sweep_once(self, fence: Fence | None = None) -> int:
        """Delete expired events in chunks; each chunk's transaction first checks the lease
        (``fence``), so a node that lost the duty stops at its next chunk."""
        deleted = 0
        now = self._clock()
        size = BatchSize(DELETE_CHUNK, DELETE_CHUNK)
        for kind in ("custom", "system"):
            for topic in await self._topics.list(kind):
                cutoff = now - timedelta(days=topic.row.retention_days)
                deleted += await self._sweep_topic(topic.key, cutoff, size, fence)
        if deleted:
            log.info("retention sweep deleted %d events", deleted, extra={"action": "retention_sweep"})
        return deleted

    async def _sweep_topic(
        self, topic_key: str, cutoff: datetime, size: BatchSize, fence: Fence | None
    ) -> int:
        """Batches over one topic's expired events until none is left to examine."""
        deleted = 0
        after: event_store.EventCursor | None = None
        while True:
            started = time.perf_counter()
            n, after = await self._delete_batch(topic_key, cutoff, size.current, after, fence)
            took = time.perf_counter() - started
            self.batches += 1
            deleted += n
            if after is None:
                return deleted
            size.after(took)
            # Let publishes (and everything else) have the writer before the next batch.
            await asyncio.sleep(max(MIN_PAUSE_SECONDS, took * PAUSE_RATIO))

    async def _delete_batch(
        self,
        topic_key: str,
        cutoff: datetime,
        limit: int,
        after: event_store.EventCursor | None,
        fence: Fence | None,
    ) -> tuple[int, event_store.EventCursor | None]:
        """One batch in one transaction (on SQLite in one trip to the writer's thread; SQLite is
        one node, whose leases are never lost, so it has nothing to fence)."""
        if self._db.is_sqlite:
            older_than = to_epoch(cutoff)
            return await self._db.write_sqlite(
                lambda raw: event_store.delete_expired_sqlite(raw, topic_key, older_than, limit, after)
            )
        async with self._db.write() as conn:
            if fence is not None:
                await fence(conn)
            return await event_store.delete_expired(conn, topic_key, cutoff, limit, after)

    async def run(self, fence: Fence | None = None) -> None:
        """Sweep every ``interval`` (the body of the retention duty)."""
        while True:
            try:
                await self.sweep_once(fence)
            except (asyncio.CancelledError, LeaseLost):
                raise
            except Exception as exc:
                log_failure(log, self._db.health, "retention sweep failed", exc, "retention_failed")
            await asyncio.sleep(self._interval)
