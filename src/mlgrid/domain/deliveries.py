"""The states of a delivery, and the delivery ingest hands to the dispatcher after commit.

A delivery is one row per (event, matching subscription): ``pending`` (waiting for an attempt,
leased to a node while in flight, or locked by a pull receiver), then exactly one final state.
``CommittedDelivery`` lives here, below both ``broker/`` (ingest creates it) and ``delivery/``
(the dispatcher and the work sources consume it), so neither imports the other for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD_LETTERED = "deadLettered"
    DROPPED = "dropped"


DELIVERY_STATES: Final = tuple(DeliveryState)
FINAL_STATES: Final = (DeliveryState.DELIVERED, DeliveryState.DEAD_LETTERED, DeliveryState.DROPPED)


@dataclass(frozen=True)
class CommittedDelivery:
    """A delivery created at ingest, handed to the dispatcher after commit."""

    delivery_id: int
    event_seq: int
    subscription_id: str
    due_at: datetime
    # The stored event and the size of its JSON, so the dispatcher can send it without
    # reading it back (absent for deliveries created elsewhere: redelivery, replay).
    event: dict[str, Any] | None = None
    event_size: int = 0
    # Inserted already claimed by this node (PostgreSQL, see ``Ingestor.set_claimer``).
    claimed: bool = False
    # The trace context the event was emitted in (``events.traceparent``), or None.
    traceparent: str | None = None
