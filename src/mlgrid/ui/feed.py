"""The live event feed behind ``/ui/stream``: one poller per server, fanned out to viewers.

Every committed event has a sequence number, so "what is new" is ``seq > cursor``. One task
polls that (index-only, no bodies) every ``interval`` seconds while at least one viewer is
connected, and sooner when the ingestor announces new deliveries; each viewer gets the new
rows on its own queue and filters them itself (visible topics, type, subject). The cost
does not grow with the number of open browser tabs.

Two details keep the stream complete and fast:

* On PostgreSQL, sequence numbers are taken before commit, so a transaction that commits
  late can land *behind* the cursor. Sequence numbers skipped over in a poll are remembered
  for ``GAP_SECONDS`` and looked up again; numbers that never appear (a rolled-back insert, a
  duplicate publish) simply expire.
* A poll reads at most ``batch`` rows, the newest ones: a viewer behind a burst of a million
  events skips ahead to the present (and is told so) instead of replaying the burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlgrid.broker.activity import ActivityService, FeedRow

log = logging.getLogger("mlgrid.ui")

POLL_INTERVAL_SECONDS = 0.5
GAP_SECONDS = 10.0
MAX_GAPS = 5_000
BATCH = 1_000
VIEWER_QUEUE = 64


@dataclass(frozen=True)
class FeedUpdate:
    """What one poll found: new rows (oldest first), and whether rows were skipped."""

    rows: tuple[FeedRow, ...]
    skipped: bool = False


@dataclass(eq=False)
class Viewer:
    """One connected stream: a bounded queue of updates (oldest dropped when it overflows)."""

    queue: asyncio.Queue[FeedUpdate] = field(default_factory=lambda: asyncio.Queue(VIEWER_QUEUE))
    overflowed: bool = False

    def offer(self, update: FeedUpdate) -> None:
        if self.queue.full():
            # A viewer that does not keep up loses the oldest update, never blocks the feed.
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.overflowed = True
        self.queue.put_nowait(update)

    async def next(self, timeout: float) -> FeedUpdate | None:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None


class EventFeed:
    def __init__(
        self,
        activity: ActivityService,
        *,
        interval: float = POLL_INTERVAL_SECONDS,
        batch: int = BATCH,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._activity = activity
        self._interval = interval
        self._batch = batch
        self._clock = clock
        self._viewers: set[Viewer] = set()
        self._cursor: int | None = None
        self._gaps: dict[int, float] = {}
        self._wake = asyncio.Event()

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    async def join(self) -> Viewer:
        """Register a viewer; from now on it receives every event committed after this call."""
        if self._cursor is None:
            self._cursor = await self._activity.latest_seq()
        viewer = Viewer()
        self._viewers.add(viewer)
        self._wake.set()
        return viewer

    def leave(self, viewer: Viewer) -> None:
        self._viewers.discard(viewer)
        if not self._viewers:
            # Nobody watches: forget the position, the next viewer starts from the present.
            self._cursor = None
            self._gaps.clear()

    def wake(self, *_args: Any) -> None:
        """Ingest listener: deliveries were committed, so events were too; look now."""
        if self._viewers:
            self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                if not self._viewers:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                await self.poll()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._interval)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("live feed poll failed", extra={"action": "ui_feed_failed"})
                await asyncio.sleep(1.0)

    async def poll(self) -> FeedUpdate | None:
        """One look at the events table; hands what it found to every viewer."""
        if self._cursor is None:
            return None
        cursor = self._cursor
        now = self._clock()
        rows, late = await self._activity.feed_after(cursor, self._batch, self._gaps)
        if self._cursor != cursor:
            return None  # every viewer left meanwhile: the position was reset
        for row in late:
            self._gaps.pop(row.seq, None)
        self._gaps = {seq: until for seq, until in self._gaps.items() if until > now}
        skipped = len(rows) >= self._batch and rows[0].seq > cursor + 1
        if rows:
            seen = {r.seq for r in rows}
            low = cursor + 1 if not skipped else rows[0].seq
            missing = [s for s in range(low, rows[-1].seq) if s not in seen]
            for seq in missing[: max(0, MAX_GAPS - len(self._gaps))]:
                self._gaps[seq] = now + GAP_SECONDS
            self._cursor = rows[-1].seq
        if not rows and not late:
            return None
        update = FeedUpdate(tuple(sorted([*late, *rows], key=lambda r: r.seq)), skipped)
        for viewer in list(self._viewers):
            viewer.offer(update)
        return update
