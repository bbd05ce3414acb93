"""Where the dispatcher finds due work: in memory (SQLite) or by leased claims (PostgreSQL).

Both sources hand out ``Work`` items; the dispatcher does not care which one it has.

* ``MemorySource`` (SQLite: one process owns the database). Due work lives in a heap keyed by
  ``next_attempt_at``; new deliveries arrive from the ingest listener, retries are pushed back
  by the dispatcher, and the database is only read at start, to reload everything still
  pending (including what was in flight when the previous process died). No claim is
  written: there is nobody to claim against.
* ``LeaseSource`` (PostgreSQL: several nodes). Due rows are claimed in the database with a
  lease (``claimed_by``, ``lease_until``, ``SKIP LOCKED``). The source polls at a short
  interval, earlier when the ingest listener reports new deliveries or a retry this node
  scheduled falls due, and renews the leases of the work it holds so that only a dead node's
  work is taken over, once its lease has run out. Deliveries published on this node are
  claimed as they are inserted while it has room (``claim_for_ingest``): they reach its
  dispatcher straight from ingest, with no claim transaction of their own.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

from mlgrid.domain.deliveries import CommittedDelivery
from mlgrid.store import deliveries as delivery_store
from mlgrid.store.database import Database
from mlgrid.store.deliveries import Claim, DueDelivery

__all__ = ["CLAIM_PAGE", "LeaseSource", "MemorySource", "Work", "WorkSource"]

log = logging.getLogger("mlgrid.delivery")

#: Most rows one claim (or one start-up read) brings in.
CLAIM_PAGE = 1000
#: Most deliveries a node claims as its own ingest inserts them (and holds unstarted): enough
#: for a steady stream to skip the claim transaction, few enough that a burst is shared.
INGEST_CLAIM = 64


@dataclass(slots=True)
class Work:
    """One pending delivery as the dispatcher carries it (times are epoch seconds)."""

    id: int
    event_seq: int
    subscription_id: str
    attempts: int
    created_at: float
    due: float
    last_outcome: str | None = None
    last_http_status: int | None = None
    last_attempt_at: float | None = None

    @classmethod
    def from_due(cls, row: DueDelivery) -> Work:
        return cls(
            id=row.id,
            event_seq=row.event_seq,
            subscription_id=row.subscription_id,
            attempts=row.attempts,
            created_at=row.created_at,
            due=row.next_attempt_at,
            last_outcome=row.last_outcome,
            last_http_status=row.last_http_status,
            last_attempt_at=row.last_attempt_at,
        )

    @classmethod
    def from_committed(cls, committed: CommittedDelivery) -> Work:
        stamp = committed.due_at.timestamp()
        return cls(committed.delivery_id, committed.event_seq, committed.subscription_id, 0, stamp, stamp)


class WorkSource:
    """The interface both sources implement."""

    #: Whether a hold (circuit breaker) must be written to release the row to others.
    persists_holds = False

    async def load(self) -> None:
        """Prepare before the first ``take_due`` (SQLite: read what is pending)."""

    def committed(self, deliveries: Sequence[CommittedDelivery]) -> None:
        """New deliveries were committed on this node."""

    def requeue(self, work: Work) -> None:
        """``work`` waits again until ``work.due`` (a retry, or a hold)."""

    def done(self, delivery_id: int) -> None:
        """The dispatcher no longer holds this delivery (its outcome is being recorded)."""

    async def take_due(self, now: float, limit: int, skip: Collection[str] = ()) -> list[Work]:
        """Up to ``limit`` due deliveries, leaving those of the subscriptions in ``skip``
        where they are (their endpoints have all the work they can take now)."""
        raise NotImplementedError

    def resume(self, subscription_ids: Iterable[str]) -> None:
        """These subscriptions take work again: what was left aside for them is due again."""

    def next_wake(self, now: float) -> float | None:
        """When to look again without being woken (absolute epoch seconds), or never."""
        return None

    async def advance(self, ids: Iterable[int], now: float) -> None:
        """Make these waiting deliveries due now."""

    async def maintain(self, now: float) -> None:
        """Periodic upkeep (lease renewal)."""

    def __len__(self) -> int:
        return 0


class MemorySource(WorkSource):
    def __init__(self, db: Database) -> None:
        self._db = db
        self._heap: list[tuple[float, int]] = []
        self._works: dict[int, Work] = {}
        # Due work of subscriptions told to wait (``skip``), in due order, out of the heap.
        self._aside: dict[str, list[Work]] = {}

    async def load(self) -> None:
        after = 0
        loaded = 0
        while True:
            async with self._db.read() as conn:
                rows = await delivery_store.load_pending_push(conn, after, CLAIM_PAGE)
            for row in rows:
                self._add(Work.from_due(row))
            loaded += len(rows)
            if len(rows) < CLAIM_PAGE:
                break
            after = rows[-1].id
        if loaded:
            log.info("reloaded %d pending deliveries", loaded, extra={"action": "reloaded", "count": loaded})

    def _add(self, work: Work) -> None:
        self._works[work.id] = work
        heapq.heappush(self._heap, (work.due, work.id))

    def committed(self, deliveries: Sequence[CommittedDelivery]) -> None:
        for committed in deliveries:
            if committed.delivery_id not in self._works:
                self._add(Work.from_committed(committed))

    def requeue(self, work: Work) -> None:
        self._add(work)

    def done(self, delivery_id: int) -> None:
        # Taken work is no longer here; this matters only when a delivery requeued a moment
        # ago is ended after all (its handling failed half-way): it must not come back.
        self._works.pop(delivery_id, None)

    def _top(self) -> tuple[float, int] | None:
        # Entries are invalidated lazily: a work moved (advance) leaves its old entry behind.
        while self._heap:
            due, delivery_id = self._heap[0]
            work = self._works.get(delivery_id)
            if work is not None and work.due == due:
                return due, delivery_id
            heapq.heappop(self._heap)
        return None

    async def take_due(self, now: float, limit: int, skip: Collection[str] = ()) -> list[Work]:
        taken: list[Work] = []
        while len(taken) < limit:
            top = self._top()
            if top is None or top[0] > now:
                break
            heapq.heappop(self._heap)
            work = self._works[top[1]]
            if work.subscription_id in skip:
                self._aside.setdefault(work.subscription_id, []).append(work)
                continue
            del self._works[top[1]]
            taken.append(work)
        return taken

    def resume(self, subscription_ids: Iterable[str]) -> None:
        for subscription_id in subscription_ids:
            for work in self._aside.pop(subscription_id, ()):
                # Ended or moved meanwhile: its entry would be skipped anyway.
                if self._works.get(work.id) is work:
                    heapq.heappush(self._heap, (work.due, work.id))

    def next_wake(self, now: float) -> float | None:
        top = self._top()
        return None if top is None else top[0]

    async def advance(self, ids: Iterable[int], now: float) -> None:
        for delivery_id in ids:
            work = self._works.get(delivery_id)
            if work is not None and work.due > now:
                work.due = now
                heapq.heappush(self._heap, (now, delivery_id))

    def __len__(self) -> int:
        return len(self._works)


class LeaseSource(WorkSource):
    persists_holds = True

    def __init__(
        self,
        db: Database,
        node_id: str | Callable[[], str],
        *,
        lease_seconds: float = 30.0,
        poll_interval: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        # The node's id may change while the process runs (a node declared dead rejoins
        # under a new id, ``cluster/node.py``): read it at every use.
        self._me: Callable[[], str] = node_id if callable(node_id) else (lambda: node_id)
        self._lease_seconds = lease_seconds
        self._poll_interval = poll_interval
        self._clock = clock
        self._next_poll = 0.0
        self._timers: list[float] = []
        self._claimed: set[int] = set()
        self._more = False
        # Claimed at insert by this node's ingest, not handed to the dispatcher yet.
        self._arrived: list[Work] = []

    def claim_for_ingest(self) -> Claim | None:
        """The claim ingest puts on new deliveries: at most ``INGEST_CLAIM`` held unstarted, so
        a burst published on this node is mostly left to every node's claims; None when full."""
        room = INGEST_CLAIM - len(self._arrived)
        if room <= 0:
            return None
        return Claim(self._me(), self._clock() + self._lease_seconds, room)

    async def load(self) -> None:
        """A node restarting under the same (configured) id takes its old claims back now."""
        async with self._db.write() as conn:
            released = await delivery_store.release_claims_of(conn, self._me())
        if released:
            log.info("released %d claims of this node's previous run", released,
                     extra={"action": "claims_released", "count": released})

    def rejoined(self) -> None:
        """This node was declared dead and rejoined: its claims were freed by another node, so
        it holds nothing (what is in flight will not be recorded: fencing) and looks at once."""
        self._claimed.clear()
        self._arrived.clear()
        self._next_poll = 0.0

    def wake(self) -> None:
        """Another node notified new unclaimed work (or a dead node's claims were freed)."""
        self._next_poll = 0.0

    def committed(self, deliveries: Sequence[CommittedDelivery]) -> None:
        unclaimed = False
        for committed in deliveries:
            if committed.claimed:
                self._claimed.add(committed.delivery_id)
                self._arrived.append(Work.from_committed(committed))
            else:
                unclaimed = True
        if unclaimed:
            self._next_poll = 0.0

    def requeue(self, work: Work) -> None:
        # The row itself is released by the recorder's write; wake up when it falls due.
        self._claimed.discard(work.id)
        heapq.heappush(self._timers, work.due)

    def done(self, delivery_id: int) -> None:
        self._claimed.discard(delivery_id)

    async def take_due(self, now: float, limit: int, skip: Collection[str] = ()) -> list[Work]:
        taken: list[Work] = []
        if self._arrived:
            arrived, self._arrived = self._arrived, []
            kept: list[Work] = []
            released: list[int] = []
            for work in arrived:
                if work.subscription_id in skip:
                    released.append(work.id)
                elif len(taken) < limit:
                    taken.append(work)
                else:
                    kept.append(work)
            if released:
                # Claimed at insert, but their subscription cannot take them now: back to
                # the store, unclaimed, where any node finds them later. (Written before
                # anything changes here, so a failed write leaves the arrivals as they were.)
                try:
                    async with self._db.write() as conn:
                        await delivery_store.release_push_claims(conn, self._me(), released)
                except BaseException:
                    self._arrived = arrived + self._arrived
                    raise
                self._claimed.difference_update(released)
            # Publishes committed while the release was written added their arrivals to the
            # (new) list meanwhile: they stay, after those kept. (Replacing the list dropped
            # them: claimed, their lease renewed, never sent.)
            self._arrived = kept + self._arrived
            limit -= len(taken)
        return taken + await self._claim_due(now, limit, skip)

    def resume(self, subscription_ids: Iterable[str]) -> None:
        self._next_poll = 0.0  # their rows wait in the store: look at once

    async def _claim_due(self, now: float, limit: int, skip: Collection[str] = ()) -> list[Work]:
        fired = False
        while self._timers and self._timers[0] <= now:
            heapq.heappop(self._timers)
            fired = True
        if limit <= 0 or (now < self._next_poll and not fired and not self._more):
            return []
        self._next_poll = now + self._poll_interval
        async with self._db.write() as conn:
            rows = await delivery_store.claim_due_push(
                conn, self._me(), now, now + self._lease_seconds, min(limit, CLAIM_PAGE), skip
            )
        self._more = len(rows) == min(limit, CLAIM_PAGE)
        self._claimed.update(r.id for r in rows)
        return [Work.from_due(r) for r in rows]

    def next_wake(self, now: float) -> float | None:
        if self._more or self._arrived:
            return now
        wake = self._next_poll
        if self._timers:
            wake = min(wake, self._timers[0])
        return wake

    async def advance(self, ids: Iterable[int], now: float) -> None:
        async with self._db.write() as conn:
            await delivery_store.advance_due(conn, list(ids), now)
        self._next_poll = 0.0

    async def maintain(self, now: float) -> None:
        if self._claimed:
            async with self._db.write() as conn:
                await delivery_store.renew_leases(
                    conn, self._me(), sorted(self._claimed), now + self._lease_seconds
                )

    def __len__(self) -> int:
        return len(self._claimed)
