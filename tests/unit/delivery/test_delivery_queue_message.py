"""The message format shared by the queue destinations (docs/destinations.md)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from mlgrid.delivery.queue_destinations.message import (
    amqp_headers,
    build_queue_messages,
    nats_headers,
    redis_fields,
)
from mlgrid.events.convert import eventgrid_to_cloudevent

TOPIC = "/subscriptions/x/resourceGroups/default/providers/Microsoft.EventGrid/topics/t1"


def eg_event(n: int = 1) -> dict[str, Any]:
    return {
        "id": f"e{n}",
        "topic": TOPIC,
        "subject": f"models/m:{n}",
        "eventType": "Microsoft.MachineLearningServices.ModelRegistered",
        "eventTime": "2024-03-07T09:05:00Z",
        "data": {"ModelName": "m", "Score": Decimal("0.30000000000000001"), "Big": 2**70},
        "dataVersion": "2",
        "metadataVersion": "1",
    }


def test_event_grid_event_metadata_and_exact_body() -> None:
    (message,) = build_queue_messages(
        [eg_event()],
        delivery_schema="EventGridSchema",
        subscription_name="sub-a",
        delivery_count=4,
        batch_id="b",
    )
    assert message.id == "e1"
    assert message.type == "Microsoft.MachineLearningServices.ModelRegistered"
    assert message.subject == "models/m:1"
    assert message.source == TOPIC
    assert message.time == "2024-03-07T09:05:00Z"
    assert message.data_version == "2"
    assert message.subscription_name == "SUB-A"
    assert message.delivery_count == 4
    assert message.content_type == "application/json; charset=utf-8"
    text = message.body.decode()
    assert text.startswith("{")  # one event, not an array
    assert '"Score":0.30000000000000001' in text
    assert f'"Big":{2**70}' in text
    assert json.loads(text)["id"] == "e1"


def test_cloud_event_metadata() -> None:
    ce = eventgrid_to_cloudevent(eg_event(2))
    (message,) = build_queue_messages(
        [ce], delivery_schema="cloudEventSchemaV1_0", subscription_name="s", delivery_count=0, batch_id="b"
    )
    assert (message.id, message.type, message.subject, message.source, message.time) == (
        "e2",
        "Microsoft.MachineLearningServices.ModelRegistered",
        "models/m:2",
        TOPIC,
        "2024-03-07T09:05:00Z",
    )
    assert message.data_version == "2"  # from dataschema "#2"
    assert message.content_type == "application/cloudevents+json; charset=utf-8"


def test_custom_schema_events_take_the_delivery_id() -> None:
    published = [{"anything": 1}, {"anything": 2}]
    one = build_queue_messages(
        published[:1],
        delivery_schema="CustomInputSchema",
        subscription_name="s",
        delivery_count=0,
        batch_id="msg_9",
    )
    assert one[0].id == "msg_9"
    assert one[0].type == "" and one[0].subject == ""
    assert one[0].body == b'{"anything":1}'
    several = build_queue_messages(
        published,
        delivery_schema="CustomInputSchema",
        subscription_name="s",
        delivery_count=0,
        batch_id="msg_x",
    )
    assert [m.id for m in several] == ["msg_x.0", "msg_x.1"]


def test_several_events_keep_their_order() -> None:
    messages = build_queue_messages(
        [eg_event(n) for n in range(5)],
        delivery_schema="EventGridSchema",
        subscription_name="s",
        delivery_count=0,
        batch_id="b",
    )
    assert [m.id for m in messages] == [f"e{n}" for n in range(5)]


def test_negative_delivery_count_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        build_queue_messages(
            [eg_event()],
            delivery_schema="EventGridSchema",
            subscription_name="s",
            delivery_count=-1,
            batch_id="b",
        )


def test_redis_fields() -> None:
    (message,) = build_queue_messages(
        [eg_event()],
        delivery_schema="EventGridSchema",
        subscription_name="s1",
        delivery_count=1,
        batch_id="b",
    )
    fields = redis_fields(message)
    assert fields["event"] == message.body
    assert {k: v for k, v in fields.items() if k != "event"} == {
        "id": "e1",
        "type": "Microsoft.MachineLearningServices.ModelRegistered",
        "subject": "models/m:1",
        "source": TOPIC,
        "time": "2024-03-07T09:05:00Z",
        "subscription": "S1",
        "deliveryCount": "1",
        "contentType": "application/json; charset=utf-8",
    }


def test_nats_headers_carry_the_dedup_id_and_no_cloudevents_binary_attributes() -> None:
    ce = eventgrid_to_cloudevent(eg_event())
    (message,) = build_queue_messages(
        [ce], delivery_schema="CloudEventSchemaV1_0", subscription_name="s1", delivery_count=2, batch_id="b"
    )
    headers = nats_headers(message)
    assert headers["Nats-Msg-Id"] == "e1"
    assert headers["Content-Type"] == "application/cloudevents+json; charset=utf-8"
    assert headers["aeg-event-type"] == "Notification"
    assert headers["aeg-subscription-name"] == "S1"
    assert headers["aeg-delivery-count"] == "2"
    assert headers["aeg-metadata-version"] == "1"
    assert headers["event-type"] == "Microsoft.MachineLearningServices.ModelRegistered"
    assert not [name for name in headers if name.lower().startswith("ce-")]


def test_header_values_never_hold_line_breaks() -> None:
    event = eg_event()
    event["subject"] = "models/m:1\r\nX-Injected: yes"
    (message,) = build_queue_messages(
        [event], delivery_schema="EventGridSchema", subscription_name="s", delivery_count=0, batch_id="b"
    )
    for headers in (nats_headers(message), amqp_headers(message)):
        assert all("\n" not in value and "\r" not in value for value in headers.values())
        assert headers["event-subject"] == "models/m:1  X-Injected: yes"
    assert redis_fields(message)["subject"] == event["subject"]  # a stream field may hold anything
