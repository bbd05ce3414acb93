"""Ending a delivery that cannot succeed: dead-letter it, or drop it, and record either way.

Every path that gives up on an event comes here: the retry policy (push), the pull queue
(reject, ``maxDeliveryCount``, time to live) and a deleted subscription. With a dead-letter
destination the delivery ends ``deadLettered``: the record of SPEC §6.5 is written as a
JSON-array blob (``<container>/<SUBSCRIPTION>/<Y>/<M>/<D>/<H>/<uuid>.json``) and kept in the
``dead_letters`` table. Without one it ends ``dropped``, its reason kept on the delivery row.

``close`` runs inside the caller's write transaction: the delivery's final state and its
dead-letter row commit together. The blob is written first, inside that transaction, so a
committed dead letter always has its blob; a crash in between leaves the delivery pending
and the worst case is a second blob for the same event, never a missing one.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.delivery.blobs import DeadLetterBlobs
from mlgrid.delivery.dead_letter_record import blob_path, build_record
from mlgrid.domain.deliveries import DeliveryState
from mlgrid.domain.subscription import Subscription
from mlgrid.events.convert import event_id, to_delivery_schema
from mlgrid.events.jsoncodec import dumps
from mlgrid.metrics import Metrics
from mlgrid.store import dead_letters as dead_letter_store
from mlgrid.store import delivery_outcomes as outcome_store
from mlgrid.store.delivery_outcomes import FinalUpdate

__all__ = ["NOT_ATTEMPTED", "Closed", "DeadLetterService", "Undeliverable"]

log = logging.getLogger("mlgrid.delivery")

#: ``lastDeliveryOutcome`` of an event that never got an attempt (deleted subscription first).
NOT_ATTEMPTED = "NotAttempted"


@dataclass(frozen=True)
class Undeliverable:
    """A delivery to end, with everything its dead-letter record needs.

    ``subscription`` is ``None`` when it was deleted and is no longer known (another node
    deleted it): without its dead-letter settings the event can only be dropped.
    ``event`` is the stored event (the topic's schema); times are epoch seconds.
    """

    delivery_id: int
    subscription_id: str
    subscription: Subscription | None
    event: dict[str, Any]
    published_at: float
    reason: str
    attempts: int
    last_outcome: str | None
    last_http_status: int | None
    last_error: str | None
    last_attempt_at: float | None
    last_duration_ms: int | None = None
    last_response: str | None = None


@dataclass(frozen=True)
class Closed:
    """An ``Undeliverable`` that this call ended, and how."""

    item: Undeliverable
    state: str  # deadLettered | dropped
    blob: str | None


def _dt(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _as_delivered(item: Undeliverable, sub: Subscription) -> dict[str, Any]:
    """The event as the subscription would have received it; if that conversion is what
    failed (the delivery ended by an internal error), the event as stored: a record with
    the wrong envelope beats a dead letter that can never be written."""
    try:
        return to_delivery_schema(item.event, sub.source_schema, sub.event_delivery_schema)
    except Exception:
        log.warning(
            "dead letter of delivery %s keeps the stored event: it cannot be converted",
            item.delivery_id,
            exc_info=True,
            extra={"action": "dead_letter_unconverted", "delivery_id": item.delivery_id},
        )
        return item.event


class DeadLetterService:
    def __init__(self, blobs: DeadLetterBlobs, metrics: Metrics) -> None:
        self.blobs = blobs
        self._metrics = metrics

    async def close(
        self,
        conn: AsyncConnection,
        items: Sequence[Undeliverable],
        now: float,
        *,
        claimed_by: str | None = None,
    ) -> list[Closed]:
        """End each delivery that is still pending (and, with ``claimed_by``, still claimed by
        that node: fencing); returns the ones this call ended.

        A delivery that already reached a final state (delivered meanwhile, or closed by a
        concurrent subscription deletion) is skipped: each delivery ends exactly once.
        """
        closed: list[Closed] = []
        # (container, subscription name, subscription id) -> records for one blob
        pending_blobs: dict[tuple[str, str, str], list[tuple[Undeliverable, dict[str, Any]]]]
        pending_blobs = defaultdict(list)
        for item in items:
            sub = item.subscription
            container = sub.dead_letter_container if sub is not None else None
            state = DeliveryState.DEAD_LETTERED if container else DeliveryState.DROPPED
            final = FinalUpdate(
                id=item.delivery_id,
                state=state,
                attempts=item.attempts,
                last_outcome=item.last_outcome,
                last_http_status=item.last_http_status,
                last_error=item.last_error,
                last_attempt_at=item.last_attempt_at,
                last_duration_ms=item.last_duration_ms,
                last_response=item.last_response,
                final_reason=item.reason,
                finished_at=now,
            )
            if not await outcome_store.finalize_one(conn, final, claimed_by):
                continue
            if state == DeliveryState.DROPPED or sub is None or container is None:
                closed.append(Closed(item, DeliveryState.DROPPED, None))
                continue
            record = build_record(
                _as_delivered(item, sub),
                sub.event_delivery_schema,
                item.reason,
                item.attempts,
                item.last_outcome or NOT_ATTEMPTED,
                item.last_http_status,
                _dt(item.published_at),
                None if item.last_attempt_at is None else _dt(item.last_attempt_at),
            )
            pending_blobs[(container, sub.name, sub.id)].append((item, record))
        rows: list[dead_letter_store.NewDeadLetter] = []
        for (container, name, subscription_id), entries in pending_blobs.items():
            blob = blob_path(container, name, _dt(now), str(uuid.uuid4()))
            await self.blobs.write_json_array(blob, [record for _, record in entries])
            for item, record in entries:
                rows.append(
                    dead_letter_store.NewDeadLetter(
                        id=str(uuid.uuid4()),
                        subscription_id=subscription_id,
                        delivery_id=item.delivery_id,
                        event_id=event_id(item.event),
                        reason=item.reason,
                        record=dumps(record).decode("utf-8"),
                        blob_path=blob,
                        created_at=now,
                    )
                )
                closed.append(Closed(item, DeliveryState.DEAD_LETTERED, blob))
        await dead_letter_store.insert_many(conn, rows)
        return closed

    def report(self, closed: Sequence[Closed]) -> None:
        """Metrics and structured logs for deliveries ``close`` ended (call after commit)."""
        for entry in closed:
            item = entry.item
            sub = item.subscription
            topic = sub.topic_key if sub is not None else ""
            name = sub.name if sub is not None else item.subscription_id
            extra = {
                "action": "dead_lettered" if entry.state == DeliveryState.DEAD_LETTERED else "dropped",
                "delivery_id": item.delivery_id,
                "subscription_id": item.subscription_id,
                "subscription": name,
                "topic": topic,
                "event_id": event_id(item.event),
                "reason": item.reason,
                "attempts": item.attempts,
                "last_outcome": item.last_outcome,
                "blob": entry.blob,
            }
            if entry.state == DeliveryState.DEAD_LETTERED:
                self._metrics.dead_lettered.labels(topic, name, item.reason).inc()
                log.info("event %s dead-lettered: %s", extra["event_id"], item.reason, extra=extra)
            else:
                self._metrics.dropped.labels(topic, name, item.reason).inc()
                log.info("event %s dropped: %s", extra["event_id"], item.reason, extra=extra)
