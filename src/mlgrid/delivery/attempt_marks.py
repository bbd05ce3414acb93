"""Attempts are counted in the store before their request goes out.

``aeg-delivery-count`` tells a receiver how many attempts came before this one. If the count
were only written with the outcome, a server that died while a request was in flight would
send the event again after its restart with the old count (``0`` for a first attempt), and a
receiver could not tell a redelivery from a first delivery. So the dispatcher awaits
``AttemptMarks.mark`` before each attempt: the row's ``attempts_started`` then already
includes the attempt being made (``attempts``, what the API shows, counts finished ones).

Cost. Every attempt that starts in the same pass of the event loop shares one transaction:
a mark waits one loop turn for company, then one ``executemany`` writes them all (on SQLite
in one trip to the database thread). Under load that is one small write per launch pass,
not per delivery.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from mlgrid.store import delivery_outcomes as outcome_store
from mlgrid.store.database import Database

__all__ = ["AttemptMarks", "MarkAttempts"]

#: What the dispatcher calls before an attempt: ``(delivery id, attempts including it)``.
MarkAttempts = Callable[[Sequence[tuple[int, int]]], Awaitable[None]]


class AttemptMarks:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._pending: list[tuple[int, int]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def mark(self, marks: Sequence[tuple[int, int]]) -> None:
        """Return once ``marks`` are committed; raise what the write raised."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.extend(marks)
        self._waiters.append(waiter)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="mlgrid-attempt-marks")
        await waiter

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # the attempts launched in this pass join the same write
        while self._pending:
            marks, waiters = self._pending, self._waiters
            self._pending, self._waiters = [], []
            try:
                await outcome_store.mark_attempts_started(self._db, marks)
            except Exception as exc:
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
                continue
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
