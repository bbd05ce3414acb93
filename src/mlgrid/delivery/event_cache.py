"""Parsed events by sequence number, shared by the deliveries of one event.

An event matched by ten subscriptions is read and parsed once, not ten times: the dispatcher
asks for the events of everything that became due together, and only the ones not cached are
read, in one query. Parsing keeps numbers exact (``loads_exact``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mlgrid.events.jsoncodec import loads_exact
from mlgrid.store import events as event_store
from mlgrid.store.clock import to_epoch
from mlgrid.store.database import Database

__all__ = ["CachedEvent", "EventCache"]


@dataclass(frozen=True)
class CachedEvent:
    seq: int
    event: dict[str, Any]  # in the topic's stored schema; never modified
    published_at: float
    size: int  # bytes of its stored JSON: the batching estimate
    # The trace context it was emitted in (``events.traceparent``): its deliveries continue it.
    traceparent: str | None = None


class EventCache:
    def __init__(self, db: Database, capacity: int = 20_000) -> None:
        self._db = db
        self._capacity = capacity
        self._items: OrderedDict[int, CachedEvent] = OrderedDict()

    def put_body(
        self, seq: int, body: str, published_at: float, traceparent: str | None = None
    ) -> CachedEvent:
        cached = CachedEvent(seq, loads_exact(body), published_at, len(body), traceparent)
        self._remember(cached)
        return cached

    def put_event(
        self, seq: int, event: dict[str, Any], published_at: float, size: int, traceparent: str | None = None
    ) -> None:
        """Remember an event ingest just committed (the same dict: it is never modified)."""
        if seq not in self._items:
            self._remember(CachedEvent(seq, event, published_at, size, traceparent))

    def _remember(self, cached: CachedEvent) -> None:
        self._items[cached.seq] = cached
        self._items.move_to_end(cached.seq)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)

    async def get_many(self, seqs: Iterable[int]) -> dict[int, CachedEvent]:
        """The events that still exist (a deleted topic takes its events with it)."""
        found: dict[int, CachedEvent] = {}
        missing: list[int] = []
        for seq in dict.fromkeys(seqs):
            hit = self._items.get(seq)
            if hit is None:
                missing.append(seq)
            else:
                found[seq] = hit
        if missing:
            async with self._db.read() as conn:
                stored = await event_store.get_by_seq(conn, missing)
            for seq, row in stored.items():
                found[seq] = self.put_body(seq, row.body, to_epoch(row.published_at), row.traceparent)
        return found
