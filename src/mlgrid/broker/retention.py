"""The retention sweeper: deletes events older than their topic's retention.

Events that a delivery still waits for are kept until that delivery is final, so retention
never turns a pending delivery into a lost one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.broker.topics import TopicService
from mlgrid.errors import LeaseLost
from mlgrid.store import events as event_store
from mlgrid.store.database import Database
from mlgrid.store.faults import log_failure

log = logging.getLogger("mlgrid.retention")

SWEEP_INTERVAL_SECONDS = 60.0
#: The lease that makes one node of a cluster sweep (``cluster/node.py``).
RETENTION_DUTY = "retention"

Fence = Callable[[AsyncConnection], Awaitable[None]]
DELETE_CHUNK = 5_000


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

    async def sweep_once(self, fence: Fence | None = None) -> int:
        """Delete expired events in chunks; each chunk's transaction first checks the lease
        (``fence``), so a node that lost the duty stops at its next chunk."""
        deleted = 0
        now = self._clock()
        for kind in ("custom", "system"):
            for topic in await self._topics.list(kind):
                cutoff = now - timedelta(days=topic.row.retention_days)
                while True:
                    async with self._db.write() as conn:
                        if fence is not None:
                            await fence(conn)
                        n = await event_store.delete_expired(conn, topic.key, cutoff, DELETE_CHUNK)
                    deleted += n
                    if n < DELETE_CHUNK:
                        break
        if deleted:
            log.info("retention sweep deleted %d events", deleted, extra={"action": "retention_sweep"})
        return deleted

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
