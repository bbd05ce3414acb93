"""The event subscription as services see it: validated, secrets opened, defaults applied.

The subscription service builds these from stored rows (``properties`` JSON + sealed secrets);
the router compiles ``event_filter``; the dispatcher reads everything else. Nothing here does
IO, so the dispatcher can cache these objects. It lives in ``domain/`` because the broker
builds it and the delivery layer reads it: below both, neither imports the other for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mlgrid.domain.endpoints import ProvisioningState
from mlgrid.domain.event_filter import EventFilter
from mlgrid.domain.schemas import EventSchema


@dataclass(frozen=True)
class DeliveryAttributeMapping:
    """One header added to each push request. ``value`` is resolved (secrets opened) for
    ``Static``; ``source_field`` is the event path for ``Dynamic``."""

    name: str
    type: str  # "Static" | "Dynamic"
    value: str | None = None
    source_field: str | None = None
    is_secret: bool = False


@dataclass(frozen=True)
class Subscription:
    id: str
    name: str
    topic_key: str
    topic_name: str
    topic_kind: str  # "custom" | "system"
    stored_schema: str  # schema the topic's events are stored in (EventGridSchema/CloudEventSchemaV1_0)
    input_schema: str  # the topic's declared input schema (incl. CustomEventSchema)
    endpoint_type: str
    event_filter: EventFilter
    event_delivery_schema: str
    max_delivery_attempts: int = 30
    event_ttl_minutes: int = 1440
    # WebHook
    endpoint_url: str | None = field(default=None, repr=False)  # full URL with its query (secret)
    max_events_per_batch: int = 1
    preferred_batch_size_kb: int = 64
    delivery_attribute_mappings: tuple[DeliveryAttributeMapping, ...] = ()
    signing_secret: str | None = field(default=None, repr=False)
    # Queue (pull)
    receive_lock_duration_seconds: int = 60
    max_delivery_count: int = 10
    # RedisStream / NatsJetStream / RabbitMQ: ARM destination properties (secrets opened)
    destination_properties: dict[str, Any] = field(default_factory=dict, repr=False)
    dead_letter_container: str | None = None
    labels: tuple[str, ...] = ()
    expires_at: datetime | None = None
    provisioning_state: str = ProvisioningState.SUCCEEDED
    etag: str = ""

    @property
    def source_schema(self) -> str:
        """The schema to convert from on delivery (``to_delivery_schema``).

        A ``CustomEventSchema`` topic stores its events in the Event Grid envelope with the
        published object as ``data`` (``stored_schema`` says Event Grid, which is what its
        filters see), yet ``CustomInputSchema`` delivery must give that object back: only
        the declared input schema tells the two apart.
        """
        if self.input_schema == EventSchema.CUSTOM_EVENT:
            return self.input_schema
        return self.stored_schema

    @property
    def is_active(self) -> bool:
        """Only validated subscriptions receive events."""
        return self.provisioning_state == ProvisioningState.SUCCEEDED
