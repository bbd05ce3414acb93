"""Between the two envelopes, and schema-agnostic accessors (SPEC §2.1).

Events are stored in their topic's input schema (Event Grid dicts for Event Grid and custom
topics, CloudEvents dicts for CloudEvents topics) and converted on the way out, per
subscription. Only Event Grid -> CloudEvents exists: a CloudEvent has no ``eventType``/
``dataVersion``/``topic`` that could be filled truthfully, so SPEC §2.1 forbids delivering
CloudEvents input in the Event Grid schema and :func:`to_delivery_schema` refuses it.

Decisions for Event Grid -> CloudEvents where §2.1 leaves room:

* ``dataschema`` is always ``"#" + dataVersion``, also for the empty ``dataVersion`` of the ML
  events (giving ``"#"``, a valid URI reference): one rule, no special case for consumers;
* ``subject`` is left out when empty and ``data`` when ``null``: CloudEvents requires a present
  ``subject`` to be non-empty, and an absent ``data`` is how it says "no data";
* ``datacontenttype`` is not added: without it CloudEvents consumers read ``data`` as JSON,
  which it is.

The accessors (:func:`event_id`, :func:`event_type`, ...) tell the schemas apart by
``specversion``, which every stored CloudEvent has and no Event Grid event may have.
"""

from __future__ import annotations

from typing import Any

from mlgrid.domain.error_codes import ErrorCode
from mlgrid.domain.schemas import EventSchema
from mlgrid.errors import BadRequest, ErrorDetail
from mlgrid.events.schemas import parse_schema_name

__all__ = [
    "event_data_version",
    "event_id",
    "event_source",
    "event_subject",
    "event_time",
    "event_type",
    "eventgrid_to_cloudevent",
    "is_cloudevent",
    "to_delivery_schema",
]


def eventgrid_to_cloudevent(ev: dict[str, Any]) -> dict[str, Any]:
    """A CloudEvents 1.0 dict for a stored Event Grid event (``metadataVersion`` is dropped)."""
    cloud_event: dict[str, Any] = {
        "specversion": "1.0",
        "id": ev["id"],
        "source": ev.get("topic") or "",
        "type": ev["eventType"],
    }
    subject = ev.get("subject")
    if subject:
        cloud_event["subject"] = subject
    event_time = ev.get("eventTime")
    if event_time is not None:
        cloud_event["time"] = event_time
    cloud_event["dataschema"] = "#" + (ev.get("dataVersion") or "")
    data = ev.get("data")
    if data is not None:
        cloud_event["data"] = data
    return cloud_event


def to_delivery_schema(ev: dict[str, Any], stored_schema: str, delivery_schema: str) -> dict[str, Any]:
    """The event as a subscription asked for it.

    ``stored_schema`` is the topic's input schema (custom-schema events are stored as Event
    Grid events whose ``data`` is the published object). Returns the same dict, not a copy,
    when no conversion is needed. ``CustomEventSchema`` delivery (Azure's ``CustomInputSchema``)
    gives a custom topic's events back exactly as they were published. Impossible pairs raise
    ``BadRequest``; subscription creation should have refused them already.
    """
    stored = parse_schema_name(stored_schema, "inputSchema")
    wanted = parse_schema_name(delivery_schema, "eventDeliverySchema")
    if stored == EventSchema.CLOUD_EVENTS:
        if wanted == EventSchema.CLOUD_EVENTS:
            return ev
        raise _unsupported(stored, wanted)
    if wanted == EventSchema.EVENT_GRID:
        return ev
    if wanted == EventSchema.CLOUD_EVENTS:
        return eventgrid_to_cloudevent(ev)
    if stored == EventSchema.CUSTOM_EVENT:
        published: dict[str, Any] = ev["data"]
        return published
    raise _unsupported(stored, wanted)


def _unsupported(stored: str, wanted: str) -> BadRequest:
    message = f"events of a {stored} topic cannot be delivered in {wanted}"
    return BadRequest(
        message=message,
        code=ErrorCode.UNSUPPORTED_DELIVERY_SCHEMA,
        details=[ErrorDetail(
            ErrorCode.UNSUPPORTED_DELIVERY_SCHEMA, message, "properties.eventDeliverySchema"
        )],
    )


def is_cloudevent(ev: dict[str, Any]) -> bool:
    """True for a CloudEvents dict, False for an Event Grid one."""
    return "specversion" in ev


def event_id(ev: dict[str, Any]) -> str:
    value: str = ev["id"]
    return value


def event_type(ev: dict[str, Any]) -> str:
    value: str = ev["type"] if "specversion" in ev else ev["eventType"]
    return value


def event_subject(ev: dict[str, Any]) -> str:
    """The subject, ``""`` when a CloudEvent has none (subject filters then see an empty one)."""
    value: str | None = ev.get("subject")
    return value or ""


def event_time(ev: dict[str, Any]) -> str | None:
    """``eventTime`` or ``time`` as stored (RFC 3339); ``None`` for a CloudEvent without one."""
    value: str | None = ev.get("time") if "specversion" in ev else ev.get("eventTime")
    return value


def event_source(ev: dict[str, Any]) -> str:
    """``topic`` of an Event Grid event, ``source`` of a CloudEvent."""
    value: str | None = ev.get("source") if "specversion" in ev else ev.get("topic")
    return value or ""


def event_data_version(ev: dict[str, Any]) -> str:
    """``dataVersion`` (for the ``aeg-data-version`` header); ``""`` for CloudEvents."""
    if "specversion" in ev:
        return ""
    value: str | None = ev.get("dataVersion")
    return value or ""
