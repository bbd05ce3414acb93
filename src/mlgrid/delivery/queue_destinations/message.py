"""The message a queue destination writes for one event, built without any IO.

Every broker gets the same thing, in its own shape: the event as JSON, exactly as a webhook
would receive it in the subscription's delivery schema (one event per message, never an
array), plus a few metadata values so that consumers can route, filter and de-duplicate
without parsing the body:

* ``id`` — the event id; the same on every retry and redelivery of the event, so it is the
  de-duplication key (delivery is at least once, SPEC §11). JetStream de-duplicates on it
  by itself (``Nats-Msg-Id``); RabbitMQ carries it as ``message_id``.
* ``type``, ``subject``, ``source`` (Event Grid ``topic``, CloudEvents ``source``), ``time``;
* the subscription name in upper case, as in the webhook header ``aeg-subscription-name``;
* ``deliveryCount`` — attempts made before this one, as ``aeg-delivery-count``;
* the content type: ``application/json; charset=utf-8`` for the Event Grid and custom
  schemas, ``application/cloudevents+json`` (structured mode) for CloudEvents.

Headers deliberately carry no ``ce-*`` attributes: in the CloudEvents NATS and AMQP bindings
``ce-*`` headers mean *binary mode*, where the body is only ``data``, and a CloudEvents SDK
reading our structured body would take the whole event for its data.

Events of a ``CustomInputSchema`` subscription are the objects exactly as published, with
no envelope to read metadata from: their ``id`` is the delivery's stable id (the dispatcher's
``batch_id``, the same across retries) and the other values are empty.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from mlgrid.events.jsoncodec import dumps

__all__ = [
    "CLOUD_EVENTS_CONTENT_TYPE",
    "JSON_CONTENT_TYPE",
    "QueueMessage",
    "amqp_headers",
    "build_queue_messages",
    "nats_headers",
    "redis_fields",
]

JSON_CONTENT_TYPE: Final = "application/json; charset=utf-8"
CLOUD_EVENTS_CONTENT_TYPE: Final = "application/cloudevents+json; charset=utf-8"

_CLOUD_EVENTS = "cloudeventschemav1_0"
_EVENT_GRID = "eventgridschema"


@dataclass(frozen=True)
class QueueMessage:
    """One event ready for a broker: the JSON body and the metadata every broker carries."""

    id: str
    type: str
    subject: str
    source: str
    time: str
    data_version: str
    subscription_name: str
    delivery_count: int
    content_type: str
    body: bytes


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def build_queue_messages(
    events: Sequence[Mapping[str, Any]],
    *,
    delivery_schema: str,
    subscription_name: str,
    delivery_count: int,
    batch_id: str,
) -> list[QueueMessage]:
    """One ``QueueMessage`` per event (events already in ``delivery_schema``), in order.

    ``batch_id`` is the dispatcher's stable id of the delivery; it stands in for the event id
    of custom-schema events (suffixed with the position when there are several).
    """
    if delivery_count < 0:
        raise ValueError("delivery_count must not be negative")
    schema = delivery_schema.lower()
    name = subscription_name.upper()
    messages: list[QueueMessage] = []
    for position, event in enumerate(events):
        body = dumps(event)
        if schema == _CLOUD_EVENTS:
            dataschema = _text(event.get("dataschema"))
            message = QueueMessage(
                id=_text(event.get("id")),
                type=_text(event.get("type")),
                subject=_text(event.get("subject")),
                source=_text(event.get("source")),
                time=_text(event.get("time")),
                data_version=dataschema[1:] if dataschema.startswith("#") else "",
                subscription_name=name,
                delivery_count=delivery_count,
                content_type=CLOUD_EVENTS_CONTENT_TYPE,
                body=body,
            )
        elif schema == _EVENT_GRID:
            message = QueueMessage(
                id=_text(event.get("id")),
                type=_text(event.get("eventType")),
                subject=_text(event.get("subject")),
                source=_text(event.get("topic")),
                time=_text(event.get("eventTime")),
                data_version=_text(event.get("dataVersion")),
                subscription_name=name,
                delivery_count=delivery_count,
                content_type=JSON_CONTENT_TYPE,
                body=body,
            )
        else:  # CustomInputSchema: the published object, no envelope
            message = QueueMessage(
                id=batch_id if len(events) == 1 else f"{batch_id}.{position}",
                type="",
                subject="",
                source="",
                time="",
                data_version="",
                subscription_name=name,
                delivery_count=delivery_count,
                content_type=JSON_CONTENT_TYPE,
                body=body,
            )
        messages.append(message)
    return messages


def redis_fields(message: QueueMessage) -> dict[str, str | bytes]:
    """The fields of the stream entry (XADD): ``event`` holds the JSON, the rest metadata."""
    return {
        "event": message.body,
        "id": message.id,
        "type": message.type,
        "subject": message.subject,
        "source": message.source,
        "time": message.time,
        "subscription": message.subscription_name,
        "deliveryCount": str(message.delivery_count),
        "contentType": message.content_type,
    }


def _header_value(value: str) -> str:
    # A NATS header is one line: a subject with a line break must not split it (or inject
    # another header). Published ids and types cannot hold one, subjects in principle can.
    if "\r" in value or "\n" in value:
        return value.replace("\r", " ").replace("\n", " ")
    return value


def _common_headers(message: QueueMessage) -> dict[str, str]:
    return {
        "aeg-event-type": "Notification",
        "aeg-subscription-name": message.subscription_name,
        "aeg-delivery-count": str(message.delivery_count),
        "aeg-data-version": _header_value(message.data_version),
        "aeg-metadata-version": "1",
        "event-id": _header_value(message.id),
        "event-type": _header_value(message.type),
        "event-subject": _header_value(message.subject),
        "event-source": _header_value(message.source),
        "event-time": _header_value(message.time),
    }


def nats_headers(message: QueueMessage) -> dict[str, str]:
    """Headers of the JetStream message; ``Nats-Msg-Id`` makes JetStream drop duplicates
    of the same event that arrive within the stream's duplicate window."""
    headers = {"Nats-Msg-Id": _header_value(message.id), "Content-Type": message.content_type}
    headers.update(_common_headers(message))
    return headers


def amqp_headers(message: QueueMessage) -> dict[str, str]:
    """Application headers of the AMQP message (the id, type and content type also go into
    the standard ``message_id``, ``type`` and ``content_type`` properties)."""
    return _common_headers(message)
