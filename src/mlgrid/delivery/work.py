"""Where the dispatcher finds due work: a bounded window (SQLite) or leased claims (PostgreSQL).

Both sources hand out ``Work`` items; the dispatcher does not care which one it has.

* ``WindowSource`` (SQLite: one process owns the database). Pending work lives in the store;
  memory holds a *window* of it, at most ``window`` deliveries (setting ``delivery_window``),
  in a ``DueQueue`` ordered by due time. The window is read from the store a page at a time
  in due order (``store.delivery_claims.due_after``) and refilled when it runs low; start-up reads
  one window, not the backlog. The window covers every pending delivery up to its *horizon*
  (a position in due order); a new delivery enters it only when it is due before the
  horizon, otherwise it waits in the store until the window reaches it. A retry due beyond
  the horizon leaves memory once its new time is committed. No claim is written: there is
  nobody to claim against.
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
from typing import Protocol

from mlgrid.domain.deliveries import CommittedDelivery
from mlgrid.store import delivery_claims as claim_store
from mlgrid.store.database import Database
from mlgrid.store.deliveries import Claim
from mlgrid.store.delivery_claims import DueDelivery, DueKey

__all__ = [
    "CLAIM_PAGE",
    "DEFAULT_WINDOW",
    "DueQueue",
    "LeaseSource",
    "WindowSource",
    "Work",
    "WorkSource",
    "WriteProgress",
]

log = logging.getLogger("mlgrid.delivery")

#: Most rows one claim (or one page of the window) brings in.
CLAIM_PAGE = 1000
#: Most deliveries a node claims as its own ingest inserts them (and holds unstarted): enough
#: for a steady stream to skip the claim transaction, few enough that a burst is shared.
INGEST_CLAIM = 64
#: Deliveries the SQLite window holds by default (setting ``delivery_window``).
DEFAULT_WINDOW = 10_000
#: Seconds of doubt about a due time the window did not read itself (a datetime's microseconds
#: against the stored float): bounds drawn from such times are moved this much earlier, so a
#: row is read once more rather than missed.
_SLACK = 0.001


@dataclass(slots=True)
class Work:
    """One pending delivery as the dispatcher carries it (times are epoch seconds).

    ``stored_due`` is the due time the store has (or will have once the write numbered
    ``ticket`` is committed); a work whose ``due`` differs (moved in memory only) must stay
    in memory: the store would not find it where it belongs.
    """

    id: int
    event_seq: int
    subscription_id: str
    attempts: int
    created_at: float
    due: float
    last_outcome: str | None = None
    last_http_status: int | None = None
    last_attempt_at: float | None = None
    stored_due: float | None = None
    ticket: int = 0

    @property
    def key(self) -> DueKey:
        return (self.due, self.id)

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
            stored_due=row.next_attempt_at,
        )

    @classmethod
    def from_committed(cls, committed: CommittedDelivery) -> Work:
        stamp = committed.due_at.timestamp()
        return cls(committed.delivery_id, committed.event_seq, committed.subscription_id, 0, stamp, stamp,
                   stored_due=stamp)


class WorkSource:
    """The interface both sources implement."""

    #: Whether a hold (circuit breaker) must be written: the store must know the new time.
    persists_holds = False
    #: Whether work set aside unattempted must be released in the store (leases).
    claims_rows = False

    async def load(self) -> None:
        """Prepare before the first ``take_due`` (SQLite: read the first window)."""

    def committed(self, deliveries: Sequence[CommittedDelivery]) -> None:
        """New deliveries were committed on this node."""

    def requeue(self, work: Work, written: bool = False) -> None:
        """``work`` waits again until ``work.due`` (a retry, or a hold). ``written``: its new
        time was just handed to the outcome recorder, so the store will have it."""

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


class DueQueue:
    """Works in memory by due time: a heap with lazy deletion, and the due work of
    subscriptions told to wait (``skip``) kept aside, in due order, until they resume.

    Pure and synchronous: the SQLite window keeps its works here, and the dispatcher's unit
    tests drive it directly.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []
        self._works: dict[int, Work] = {}
        self._aside: dict[str, list[Work]] = {}

    def add(self, work: Work) -> None:
        self._works[work.id] = work
        heapq.heappush(self._heap, (work.due, work.id))

    def get(self, delivery_id: int) -> Work | None:
        return self._works.get(delivery_id)

    def remove(self, delivery_id: int) -> Work | None:
        # Its heap entry (or aside entry) is skipped when met: the work is no longer here.
        return self._works.pop(delivery_id, None)

    def _top(self) -> tuple[float, int] | None:
        # Entries are invalidated lazily: a work moved (advance) leaves its old entry behind.
        while self._heap:
            due, delivery_id = self._heap[0]
            work = self._works.get(delivery_id)
            if work is not None and work.due == due:
                return due, delivery_id
            heapq.heappop(self._heap)
        return None

    def take_due(
        self, now: float, limit: int, skip: Collection[str] = (), spill: Callable[[Work], bool] | None = None
    ) -> list[Work]:
        """Up to ``limit`` works due by ``now``; those of ``skip`` are set aside, or handed to
        ``spill`` (which returns True when it took the work out of memory)."""
        taken: list[Work] = []
        while len(taken) < limit:
            top = self._top()
            if top is None or top[0] > now:
                break
            heapq.heappop(self._heap)
            work = self._works[top[1]]
            if work.subscription_id in skip:
                if spill is not None and spill(work):
                    del self._works[top[1]]
                else:
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

    def next_due(self) -> float | None:
        top = self._top()
        return None if top is None else top[0]

    def advance(self, ids: Iterable[int], now: float) -> list[int]:
        """Make these works due now; returns the ids that are not here."""
        missing: list[int] = []
        for delivery_id in ids:
            work = self._works.get(delivery_id)
            if work is None:
                missing.append(delivery_id)
            elif work.due > now:
                work.due = now
                heapq.heappush(self._heap, (now, delivery_id))
        return missing

    def works(self) -> list[Work]:
        return list(self._works.values())

    def __contains__(self, delivery_id: int) -> bool:
        return delivery_id in self._works

    def __len__(self) -> int:
        return len(self._works)


class WriteProgress(Protocol):
    """How far the outcome recorder's writes have come (``OutcomeRecorder``)."""

    @property
    def ticket(self) -> int:
        """The number of the last outcome handed to the writer."""

    @property
    def written(self) -> int:
        """Every outcome numbered up to this is committed."""


class _AllWritten:
    """No recorder: every write counts as committed at once."""

    ticket = 0
    written = 2**62


class WindowSource(WorkSource):
    """A bounded window of due work over the store (module docstring).

    Invariant: every pending push delivery due at or before ``_horizon`` (in due order;
    None: the whole store) is in memory: in the window (``_queue``), held by the dispatcher
    (``_taken``), or waiting for its new time to be committed (``_limbo``); and a
    subscription's rows that were *spilled* (taken out of the window while its endpoint was
    saturated) are found again from ``_spilled[subscription]`` on. Whatever is beyond the
    horizon the store alone has, at its true due time, and a page read finds it.

    Memory: the window holds at most ``window`` works (a little more between two turns); the
    rest is bounded elsewhere (the dispatcher's ready queues and attempts in flight, the
    recorder's unwritten outcomes).
    """

    persists_holds = True

    def __init__(
        self, db: Database, window: int = DEFAULT_WINDOW, progress: WriteProgress | None = None
    ) -> None:
        if window < 2:
            raise ValueError("the delivery window holds at least 2 deliveries")
        self._db = db
        self._window = window
        self._progress: WriteProgress = progress if progress is not None else _AllWritten()
        self._queue = DueQueue()
        self._taken: set[int] = set()
        self._limbo: dict[int, Work] = {}
        # Nothing read yet: the horizon is before everything (the first refill reads).
        self._horizon: DueKey | None = (float("-inf"), 0)
        self._spilled: dict[str, DueKey] = {}
        self._per_subscription: dict[str, int] = {}
        # Ended by the dispatcher, their final state not committed yet: a page read may still
        # see them pending and must not bring them back (id -> the write that ends them).
        self._finishing: dict[int, int] = {}
        # Deliveries committed while a page was being read, beyond the horizon of then.
        self._reading = False
        self._arrived: list[Work] = []
        self._next_trim = 0.0
        self._futile_until = 0.0

    @property
    def window(self) -> int:
        return self._window

    @property
    def horizon(self) -> DueKey | None:
        """Every pending delivery up to here is in memory (None: all of them)."""
        return self._horizon

    async def load(self) -> None:
        await self._refill(time.time())
        if self._horizon is not None:
            log.info("the backlog is larger than the delivery window; %d deliveries in memory, the rest "
                     "waits in the store", len(self._queue),
                     extra={"action": "window_loaded", "count": len(self._queue)})
        elif len(self._queue):
            log.info("reloaded %d pending deliveries", len(self._queue),
                     extra={"action": "reloaded", "count": len(self._queue)})

    # -- memory accounting ------------------------------------------------------------------

    def _within(self, key: DueKey) -> bool:
        return self._horizon is None or key <= self._horizon

    def _stored(self, work: Work) -> bool:
        """The store has this work at its due time (a page read would find it there)."""
        return work.stored_due == work.due and work.ticket <= self._progress.written

    def _enqueue(self, work: Work) -> None:
        if work.id not in self._queue:
            counts = self._per_subscription
            counts[work.subscription_id] = counts.get(work.subscription_id, 0) + 1
        self._queue.add(work)

    def _dequeued(self, work: Work) -> None:
        left = self._per_subscription.get(work.subscription_id, 1) - 1
        if left > 0:
            self._per_subscription[work.subscription_id] = left
        else:
            self._per_subscription.pop(work.subscription_id, None)

    def _in_memory(self, delivery_id: int) -> bool:
        return (
            delivery_id in self._queue
            or delivery_id in self._taken
            or delivery_id in self._limbo
            or delivery_id in self._finishing
        )

    # -- the dispatcher's side ---------------------------------------------------------------

    def committed(self, deliveries: Sequence[CommittedDelivery]) -> None:
        for committed in deliveries:
            work = Work.from_committed(committed)
            if self._within((work.due - _SLACK, 0)):
                if not self._in_memory(work.id):
                    self._enqueue(work)
            elif self._reading:
                self._arrived.append(work)  # the page being read may move the horizon past it
            # else: due after the horizon: the store has it and the window reaches it later.

    def requeue(self, work: Work, written: bool = False) -> None:
        self._taken.discard(work.id)
        if written:
            work.stored_due = work.due
            work.ticket = self._progress.ticket
        if written and not self._within(work.key):
            # Due beyond the horizon: it leaves memory once its new time is committed.
            self._limbo.pop(work.id, None)  # (kept in ticket order)
            self._limbo[work.id] = work
        else:
            self._enqueue(work)

    def done(self, delivery_id: int) -> None:
        # Taken work is no longer in the window; this matters only when a delivery requeued a
        # moment ago is ended after all (its handling failed half-way): it must not come back.
        self._taken.discard(delivery_id)
        self._limbo.pop(delivery_id, None)
        work = self._queue.remove(delivery_id)
        if work is not None:
            self._dequeued(work)
        # Its final state is the next outcome handed to the recorder (or none at all: then
        # the entry goes with the next commit of anything).
        self._finishing.pop(delivery_id, None)  # (kept in ticket order)
        self._finishing[delivery_id] = self._progress.ticket + 1

    def _spill(self, work: Work) -> bool:
        """A due work of a saturated subscription leaves memory if the store has it right."""
        if not self._stored(work):
            return False
        self._dequeued(work)
        start = (work.due - _SLACK, 0)
        known = self._spilled.get(work.subscription_id)
        if known is None or start < known:
            self._spilled[work.subscription_id] = start
        return True

    async def take_due(self, now: float, limit: int, skip: Collection[str] = ()) -> list[Work]:
        self._settle_limbo()
        # Over the bound: trim now (unless the last try found nothing to evict); otherwise look
        # once a second (a trim sorts the window).
        over = len(self._queue) > self._window
        if now >= self._next_trim or (over and now >= self._futile_until):
            self._next_trim = now + 1.0
            if not self._trim(now) and over:
                self._futile_until = now + 1.0
        if self._horizon is not None:
            low = len(self._queue) < self._window // 2
            behind = self._horizon[0] <= now and len(self._queue) < self._window
            if low or behind:
                await self._refill(now)
        if self._spilled:
            await self._reload_spilled(skip)
        taken = self._queue.take_due(now, limit, skip, self._spill)
        for work in taken:
            self._dequeued(work)
            self._taken.add(work.id)
        return taken

    def resume(self, subscription_ids: Iterable[str]) -> None:
        self._queue.resume(subscription_ids)

    def next_wake(self, now: float) -> float | None:
        wake = self._queue.next_due()
        if self._horizon is not None:
            # The store has more after the horizon: due then, or (already due) soon.
            more = self._horizon[0] if self._horizon[0] > now else now + 0.5
            wake = more if wake is None else min(wake, more)
        return wake

    async def advance(self, ids: Iterable[int], now: float) -> None:
        missing = self._queue.advance(ids, now)
        stored: list[int] = []
        for delivery_id in missing:
            work = self._limbo.pop(delivery_id, None)
            if work is not None:
                work.due = min(work.due, now)
                self._enqueue(work)
            elif delivery_id not in self._taken:
                stored.append(delivery_id)
        if stored:
            # In the store beyond the horizon (or spilled): moved there, and the horizon comes
            # back to ``now`` so that the next page read finds them at their new time.
            async with self._db.write() as conn:
                await claim_store.advance_due(conn, stored, now)
            if self._horizon is None or self._horizon > (now, 0):
                self._horizon = (now, 0)

    def __len__(self) -> int:
        return len(self._queue) + len(self._limbo)

    # -- the store's side --------------------------------------------------------------------

    def _settle_limbo(self) -> None:
        """Retries whose new time is committed leave memory: the store has them; so do the
        ids of ended deliveries whose final state is committed. Both are kept in the order of
        their tickets, so this looks only at what it removes."""
        written = self._progress.written
        limbo = self._limbo
        while limbo:
            first = next(iter(limbo))
            if limbo[first].ticket > written:
                break
            del limbo[first]
        finishing = self._finishing
        while finishing:
            first = next(iter(finishing))
            if finishing[first] > written:
                break
            del finishing[first]

    def _trim(self, now: float) -> int:
        """Keep the window within its bound: the latest works it holds that the store has
        right leave memory, and the horizon comes back before the first of them. When the
        window is full while due work may wait after the horizon, works not due yet make room
        for it the same way."""
        size = len(self._queue)
        over = size > self._window
        behind = self._horizon is not None and self._horizon[0] <= now and size >= self._window
        if not (over or behind):
            return 0
        keep = (3 * self._window) // 4
        ordered = sorted(self._queue.works(), key=lambda w: w.key)
        first: DueKey | None = None
        evicted = 0
        for work in ordered[keep:]:
            if self._stored(work) and (over or work.due > now):
                self._queue.remove(work.id)
                self._dequeued(work)
                evicted += 1
                if first is None:
                    first = work.key
        if first is not None:
            below = (first[0] - _SLACK, 0)
            if self._horizon is None or below < self._horizon:
                self._horizon = below
            log.debug("delivery window trimmed by %d", evicted,
                      extra={"action": "window_trimmed", "count": evicted})
        return evicted

    async def _refill(self, now: float) -> None:
        """Read the store after the horizon until the window is full or the store is read
        to its end (then the horizon is None: everything pending is in memory)."""
        while self._horizon is not None and len(self._queue) < self._window:
            want = min(CLAIM_PAGE, self._window - len(self._queue))
            # What the store has committed before this read is in it; the limbo keeps the rest.
            self._settle_limbo()
            before = self._horizon
            after = None if before[0] == float("-inf") else before
            self._reading = True
            try:
                async with self._db.read() as conn:
                    rows = await claim_store.due_after(conn, after, want)
            finally:
                self._reading = False
                arrived, self._arrived = self._arrived, []
            for row in rows:
                if not self._in_memory(row.id):
                    self._enqueue(Work.from_due(row))
            reached: DueKey | None = (rows[-1].next_attempt_at, rows[-1].id) if len(rows) == want else None
            if self._horizon != before:
                # Moved back meanwhile (``advance``): the nearer of the two holds.
                current = self._horizon
                if reached is None or (current is not None and current < reached):
                    reached = current
            self._horizon = reached
            for work in arrived:
                if self._within(work.key) and not self._in_memory(work.id):
                    self._enqueue(work)
            for delivery_id in [i for i, w in self._limbo.items() if self._within(w.key)]:
                self._enqueue(self._limbo.pop(delivery_id))
            full_enough = len(self._queue) >= self._window // 2
            if self._horizon is not None and self._horizon[0] > now and full_enough:
                break  # enough for now: nothing beyond here is due yet

    async def _reload_spilled(self, skip: Collection[str]) -> None:
        """Read back a page of a subscription's spilled work once it takes work again and has
        little left in the window."""
        for subscription_id in [s for s in self._spilled if s not in skip]:
            if self._per_subscription.get(subscription_id, 0) >= CLAIM_PAGE // 4:
                continue
            start = self._spilled[subscription_id]
            async with self._db.read() as conn:
                rows = await claim_store.due_after(conn, start, CLAIM_PAGE, subscription_id, self._horizon)
            for row in rows:
                if not self._in_memory(row.id):
                    self._enqueue(Work.from_due(row))
            if len(rows) == CLAIM_PAGE:
                self._spilled[subscription_id] = (rows[-1].next_attempt_at, rows[-1].id)
            else:
                del self._spilled[subscription_id]


class LeaseSource(WorkSource):
    persists_holds = True
    claims_rows = True

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
            released = await claim_store.release_claims_of(conn, self._me())
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

    def requeue(self, work: Work, written: bool = False) -> None:
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
                        await claim_store.release_push_claims(conn, self._me(), released)
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
            rows = await claim_store.claim_due_push(
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
            await claim_store.advance_due(conn, list(ids), now)
        self._next_poll = 0.0

    async def maintain(self, now: float) -> None:
        if self._claimed:
            async with self._db.write() as conn:
                await claim_store.renew_leases(
                    conn, self._me(), sorted(self._claimed), now + self._lease_seconds
                )

    def __len__(self) -> int:
        return len(self._claimed)
