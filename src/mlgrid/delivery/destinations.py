"""Where push deliveries go: one ``Destination`` per ``endpointType``.

The dispatcher owns scheduling, batching, retries and dead letters; a destination only makes
one attempt and says what came of it, as an ``AttemptOutcome`` (``outcome.py``). Adding a
destination (Redis Streams, NATS JetStream, RabbitMQ) is one class with ``send`` registered in
the dispatcher's ``destinations`` mapping under its ``endpointType``; nothing else changes.

Until a destination is registered for an ``endpointType``, its events are not retried
forever: ``UnsupportedDestination`` answers with a final ``DestinationNotSupported`` outcome,
so each event is dead-lettered (or dropped) with that outcome recorded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from mlgrid.delivery.outcome import AttemptOutcome
from mlgrid.domain.subscription import Subscription

__all__ = ["DESTINATION_NOT_SUPPORTED", "Attempt", "Destination", "UnsupportedDestination"]

#: ``lastDeliveryOutcome`` of an event whose destination type this server cannot deliver to.
DESTINATION_NOT_SUPPORTED = "DestinationNotSupported"


@dataclass(frozen=True)
class Attempt:
    """Facts about the attempt a destination may need besides the events.

    ``delivery_count`` is the number of attempts made before this one (``aeg-delivery-count``);
    ``batch_id`` identifies the batch and stays the same when the same events are retried
    together (the Standard Webhooks ``webhook-id`` of a batch). ``trace_headers`` carry the
    attempt's trace context (``traceparent``) to the endpoint; empty when tracing is off.
    """

    delivery_count: int
    batch_id: str
    trace_headers: Mapping[str, str] = field(default_factory=dict)


class Destination(Protocol):
    """Makes one delivery attempt of ``events`` (already in the subscription's delivery
    schema, at most ``maxEventsPerBatch`` of them) and classifies what happened.

    Must not raise for anything the endpoint does (refusals, timeouts, broken connections):
    those are outcomes. The dispatcher treats an exception as a ``GenericError`` attempt.
    """

    async def send(
        self, subscription: Subscription, events: Sequence[Mapping[str, Any]], attempt: Attempt
    ) -> AttemptOutcome: ...


class UnsupportedDestination:
    """Stands in for an ``endpointType`` this server has no destination for (yet)."""

    def __init__(self, endpoint_type: str) -> None:
        self.endpoint_type = endpoint_type

    async def send(
        self, subscription: Subscription, events: Sequence[Mapping[str, Any]], attempt: Attempt
    ) -> AttemptOutcome:
        return AttemptOutcome(
            succeeded=False,
            retryable=False,
            name=DESTINATION_NOT_SUPPORTED,
            detail=f"{self.endpoint_type} destinations are not supported by this server yet",
        )
