"""What happened lately: recent events and the deliveries of events and subscriptions.

The read side the web UI shows (live feed, an event's page, a subscription's page and its
delivery health). It answers from the store in one read transaction per question and makes no
access decision: the UI checks the caller's role on the topic first, as the API does.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from mlgrid.domain.records import AttemptRecord, DeliveryRow
from mlgrid.store import dead_letters as dead_letter_store
from mlgrid.store import deliveries as delivery_store
from mlgrid.store import delivery_outcomes as outcome_store
from mlgrid.store import event_feed
from mlgrid.store import events as event_store
from mlgrid.store.database import Database
from mlgrid.store.event_feed import FeedRow, LastFailure
from mlgrid.store.events import StoredEvent

__all__ = ["ActivityService", "DeliveryCounts", "FeedRow", "LastFailure"]


@dataclass(frozen=True)
class DeliveryCounts:
    """A subscription's deliveries by state, its dead letters, and its last failure (with
    the newest success, to tell a failure that was since overcome)."""

    by_state: dict[str, int]
    dead_letters: int
    last_failure: LastFailure | None
    newest_delivered: int | None


class ActivityService:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def latest_seq(self) -> int:
        """The sequence number of the newest event (0 when there is none)."""
        async with self._db.read() as conn:
            return await event_feed.latest_seq(conn)

    async def feed_after(
        self, after_seq: int, limit: int, gaps: Collection[int] = ()
    ) -> tuple[list[FeedRow], list[FeedRow]]:
        """Events committed after ``after_seq`` (oldest first, at most ``limit``), and those of
        the ``gaps`` (sequence numbers skipped earlier because their commit was still running)
        that have arrived since; one snapshot for both."""
        async with self._db.read() as conn:
            rows = await event_feed.newest_after(conn, after_seq, limit)
            late = await event_feed.by_seq(conn, list(gaps)) if gaps else []
        return rows, late

    async def recent_events(
        self,
        topic_keys: Collection[str],
        *,
        type_contains: str | None = None,
        subject_prefix: str | None = None,
        after_seq: int = 0,
        limit: int = 50,
    ) -> list[FeedRow]:
        """The newest events of the given topics that match, oldest first."""
        async with self._db.read() as conn:
            return await event_feed.recent(
                conn, topic_keys, type_contains=type_contains, subject_prefix=subject_prefix,
                after_seq=after_seq, limit=limit,
            )

    async def event(self, seq: int) -> StoredEvent | None:
        async with self._db.read() as conn:
            return (await event_store.get_by_seq(conn, [seq])).get(seq)

    async def delivery_states(self, seqs: Collection[int]) -> dict[int, tuple[str, dict[str, int]]]:
        """Per retained event: its topic key and its deliveries counted by state (``delivered``,
        ``pending``, ``retrying``, ``deadLettered``, ``dropped``); empty when none matched."""
        async with self._db.read() as conn:
            return await event_feed.delivery_states(conn, seqs)

    async def deliveries_of_event(self, seq: int) -> list[DeliveryRow]:
        async with self._db.read() as conn:
            return await event_feed.deliveries_of_event(conn, seq)

    async def attempt_histories(self, delivery_ids: Sequence[int]) -> dict[int, list[AttemptRecord]]:
        """Every recorded attempt of each delivery, oldest first (see ``delivery_attempts``)."""
        async with self._db.read() as conn:
            return {i: await outcome_store.attempt_history(conn, i) for i in delivery_ids}

    async def waiting_dead_letters(self, delivery_ids: Sequence[int]) -> dict[int, str]:
        """The dead-letter id of each delivery that ended as a dead letter not yet redelivered."""
        async with self._db.read() as conn:
            return await dead_letter_store.waiting_by_delivery(conn, delivery_ids)

    async def recent_deliveries(
        self, subscription_id: str, limit: int
    ) -> list[tuple[DeliveryRow, int, str, str]]:
        """The newest deliveries of a subscription with their event's seq, id and type."""
        async with self._db.read() as conn:
            return await event_feed.recent_deliveries(conn, subscription_id, limit)

    async def delivery_counts(
        self, subscription_id: str, failure_states: Sequence[str], not_failures: Collection[str]
    ) -> DeliveryCounts:
        async with self._db.read() as conn:
            counts = await delivery_store.count_by_state(conn, subscription_id)
            dead = await dead_letter_store.count_for_subscription(conn, subscription_id)
            failure = await event_feed.last_failure(conn, subscription_id, failure_states, not_failures)
            delivered = (
                await event_feed.newest_in_state(conn, subscription_id, "delivered") if failure else None
            )
        return DeliveryCounts(counts, dead, failure, delivered)
