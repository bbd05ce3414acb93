"""The event schema names, spelt once.

A topic's ``inputSchema`` is one of ``EVENT_GRID``, ``CLOUD_EVENTS`` and ``CUSTOM_EVENT``; a
subscription's ``eventDeliverySchema`` is one of ``EVENT_GRID``, ``CLOUD_EVENTS`` and
``CUSTOM_INPUT`` (Azure's name for "deliver as published" on the delivery side).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class EventSchema(StrEnum):
    EVENT_GRID = "EventGridSchema"
    CLOUD_EVENTS = "CloudEventSchemaV1_0"
    CUSTOM_EVENT = "CustomEventSchema"
    CUSTOM_INPUT = "CustomInputSchema"


INPUT_SCHEMAS: Final = (EventSchema.EVENT_GRID, EventSchema.CLOUD_EVENTS, EventSchema.CUSTOM_EVENT)
"""What a topic accepts, in the order messages list them."""

DELIVERY_SCHEMAS: Final = (EventSchema.EVENT_GRID, EventSchema.CLOUD_EVENTS, EventSchema.CUSTOM_INPUT)
"""What a subscription may ask its events to be delivered as."""


def stored_schema(input_schema: str) -> EventSchema:
    """The schema a topic's events are stored in: CloudEvents stay CloudEvents; Event Grid and
    custom events (normalised by the input mapping) are stored as Event Grid events."""
    return EventSchema.CLOUD_EVENTS if input_schema == EventSchema.CLOUD_EVENTS else EventSchema.EVENT_GRID
