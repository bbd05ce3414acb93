"""Batched outcome writes: many delivery outcomes, one transaction.

Attempts finish one by one, but writing each outcome in its own transaction would make the
database the bottleneck of delivery (on SQLite, one writer). The dispatcher hands outcomes
to the ``OutcomeRecorder``; its writer task takes everything that accumulated since the last
commit and writes it at once: successes and retries as one ``executemany`` each, dead letters
and drops through ``DeadLetterService.close`` (blob, then row, in the same transaction).

Ordering. Within one commit finals are written before retries: every statement only touches
rows that are still ``pending``, so a retry recorded before a later success of the same
delivery (both in one commit) cannot undo the success, and a delivery is never final twice.

Failure. If the commit fails (database down), the outcomes are kept and retried after a short
pause; nothing is lost while the process lives, and after a crash the deliveries are simply
still pending and are attempted again (at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mlgrid.delivery.dead_letters import DeadLetterService, Undeliverable
from mlgrid.store import delivery_outcomes as outcome_store
from mlgrid.store.database import Database
from mlgrid.store.delivery_outcomes import AttemptUpdate, FinalUpdate
from mlgrid.store.faults import log_failure

__all__ = ["OutcomeRecorder"]

log = logging.getLogger("mlgrid.delivery")

_RETRY_PAUSE_SECONDS = 0.5
_MIN_INTERVAL_SECONDS = 0.02


@dataclass
class _Buffer:
    delivered: list[FinalUpdate] = field(default_factory=list)
    rescheduled: list[AttemptUpdate] = field(default_factory=list)
    undeliverable: list[Undeliverable] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.delivered) + len(self.rescheduled) + len(self.undeliverable)

    def extend(self, other: _Buffer) -> None:
        self.delivered.extend(other.delivered)
        self.rescheduled.extend(other.rescheduled)
        self.undeliverable.extend(other.undeliverable)


class OutcomeRecorder:
    def __init__(
        self,
        db: Database,
        dead_letters: DeadLetterService,
        clock: Callable[[], float] = time.time,
        claimant: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._db = db
        self._dead_letters = dead_letters
        # PostgreSQL: this node's current id; outcomes are written only to rows it still
        # claims (fencing, ``store/delivery_outcomes._fenced``). None: no claims (SQLite).
        self._claimant = claimant
        self._clock = clock
        self._buffer = _Buffer()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Outcomes are numbered as they are handed over; ``written`` is the last number of the
        # last committed batch (the SQLite window lets a retry leave memory once its new time
        # is in the store, and knows an ended delivery's row will not be pending for long).
        self._ticket = 0
        self._written = 0

    @property
    def ticket(self) -> int:
        """The number of the last outcome handed over."""
        return self._ticket

    @property
    def written(self) -> int:
        """Every outcome numbered up to this is committed."""
        return self._written

    # -- producers ----------------------------------------------------------------------

    def delivered(self, update: FinalUpdate) -> None:
        self._buffer.delivered.append(update)
        self._signal()

    def reschedule(self, update: AttemptUpdate) -> None:
        self._buffer.rescheduled.append(update)
        self._signal()

    def undeliverable(self, item: Undeliverable) -> None:
        self._buffer.undeliverable.append(item)
        self._signal()

    def _signal(self) -> None:
        self._ticket += 1
        self._ready.set()

    @property
    def backlog(self) -> int:
        return len(self._buffer)

    # -- the writer -------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="mlgrid-delivery-recorder")

    async def stop(self) -> None:
        """Stop the writer and write what is left (best effort: the database may be gone)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if len(self._buffer):
            with contextlib.suppress(Exception):
                await self._write_once()

    async def _run(self) -> None:
        last = 0.0
        while True:
            await self._ready.wait()
            # At most one commit per interval: under load every commit then carries many
            # outcomes, and the database's single writer stays free for publishes.
            pause = last + _MIN_INTERVAL_SECONDS - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            last = time.monotonic()
            self._ready.clear()
            try:
                await self._write_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log_failure(log, self._db.health, "writing delivery outcomes failed; retrying", exc,
                            "record_failed")
                self._ready.set()
                await asyncio.sleep(_RETRY_PAUSE_SECONDS)

    async def _write_once(self) -> None:
        batch, self._buffer = self._buffer, _Buffer()
        ticket = self._ticket
        if not len(batch):
            self._written = ticket
            return
        closed = None
        claimant = self._claimant()
        try:
            if batch.undeliverable:
                async with self._db.write() as conn:
                    await outcome_store.finalize_many(conn, batch.delivered, claimant)
                    closed = await self._dead_letters.close(
                        conn, batch.undeliverable, self._clock(), claimed_by=claimant
                    )
                    await outcome_store.reschedule(conn, batch.rescheduled, claimant)
            else:  # the common case: successes and retries alone, one cheap transaction
                await outcome_store.commit_outcomes(self._db, batch.delivered, batch.rescheduled, claimant)
        except BaseException:
            # Put the batch back in front of what arrived meanwhile, so nothing is lost.
            batch.extend(self._buffer)
            self._buffer = batch
            raise
        self._written = ticket
        if closed is not None:
            self._dead_letters.report(closed)
