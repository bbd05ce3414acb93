"""Webhook push delivery on the wire (SPEC §6.1): request shape, headers, batching, signing.

A real server (SQLite and PostgreSQL) posts to a real receiver on loopback; the tests assert
exactly what arrived.
"""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest
from standardwebhooks import Webhook
from tests.support.delivery import (
    event,
    make_topic,
    new_name,
    notifications,
    publish,
    subscribe,
    wait_final,
    webhook,
)
from tests.support.fixtures import http_client_fixture, receiver_fixture  # noqa: F401 (pytest fixtures)
from tests.support.receiver import Receiver


def test_event_grid_schema_request_has_the_exact_headers_and_an_array_body(
    client: httpx.Client, receiver: Receiver
) -> None:
    topic, _ = make_topic(client)
    path = "/" + new_name("eg")
    sub = subscribe(client, topic, webhook(receiver.endpoint(path, code="s3cret")))
    raw = (
        '[{"id":"exact-1","eventType":"Test.Exact","subject":"a/b","eventTime":"2026-01-02T03:04:05Z",'
        '"data":{"p":0.30000000000000001,"big":9007199254740993},"dataVersion":"2.0"}]'
    )
    response = client.post(f"/topics/{topic}/api/events", content=raw,
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text

    [request] = notifications(receiver, path)
    assert request.method == "POST"
    assert request.query == {"code": "s3cret"}
    assert request.header("content-type") == "application/json; charset=utf-8"
    assert request.header("aeg-event-type") == "Notification"
    assert request.header("aeg-subscription-name") == sub.upper()
    assert request.header("aeg-delivery-count") == "0"
    assert request.header("aeg-data-version") == "2.0"
    assert request.header("aeg-metadata-version") == "1"
    assert request.header("webhook-signature") is None
    body = json.loads(request.body, parse_float=Decimal)
    assert isinstance(body, list) and len(body) == 1
    delivered = body[0]
    assert delivered["id"] == "exact-1"
    assert delivered["eventType"] == "Test.Exact"
    assert delivered["topic"].endswith(f"/providers/Microsoft.EventGrid/topics/{topic}")
    assert delivered["metadataVersion"] == "1"
    # Numbers reach the receiver with every digit the publisher sent.
    assert b"0.30000000000000001" in request.body
    assert delivered["data"]["big"] == 9007199254740993


def test_cloudevents_delivery_is_one_structured_object_converted_from_event_grid(
    client: httpx.Client, receiver: Receiver
) -> None:
    topic, _ = make_topic(client)
    path = "/" + new_name("ce")
    subscribe(client, topic, webhook(receiver.endpoint(path)), eventDeliverySchema="CloudEventSchemaV1_0")
    publish(client, topic, [event("ce-1", data={"k": "v"}, data_version="3")])

    [request] = notifications(receiver, path)
    assert request.header("content-type") == "application/cloudevents+json"
    assert request.header("aeg-data-version") == "3"
    body = request.json()
    assert isinstance(body, dict)
    assert body["specversion"] == "1.0"
    assert body["id"] == "ce-1"
    assert body["type"] == "Test.Delivery.Happened"
    assert body["source"].endswith(f"/topics/{topic}")
    assert body["subject"] == "items/1"
    assert body["dataschema"] == "#3"
    assert body["data"] == {"k": "v"}


def test_cloudevents_batches_are_cloudevents_batch_arrays(client: httpx.Client, receiver: Receiver) -> None:
    topic, _ = make_topic(client, "CloudEventSchemaV1_0")
    path = "/" + new_name("ceb")
    sub = subscribe(client, topic, webhook(receiver.endpoint(path), maxEventsPerBatch=50))
    events = [{"specversion": "1.0", "id": f"ceb-{i}", "source": "/test", "type": "T.Y", "data": {"i": i}}
              for i in range(5)]
    response = client.post(f"/topics/{topic}/api/events", content=json.dumps(events),
                           headers={"Content-Type": "application/cloudevents-batch+json"})
    assert response.status_code == 200, response.text
    wait_final(client, topic, sub, 5)
    requests = receiver.notifications(path)
    assert all(r.header("content-type") == "application/cloudevents-batch+json" for r in requests)
    assert all(isinstance(r.json(), list) for r in requests)
    assert sorted(e["id"] for e in receiver.events(path)) == [f"ceb-{i}" for i in range(5)]


def test_batches_respect_max_events_and_preferred_size(client: httpx.Client, receiver: Receiver) -> None:
    topic, _ = make_topic(client)
    by_count, by_size = "/" + new_name("count"), "/" + new_name("size")
    count_sub = subscribe(client, topic, webhook(receiver.endpoint(by_count), maxEventsPerBatch=4))
    size_sub = subscribe(client, topic, webhook(
        receiver.endpoint(by_size), maxEventsPerBatch=100, preferredBatchSizeInKilobytes=1))
    # ~400-byte events: at most two fit in a 1 KB batch; one 3 KB event must go alone.
    events = [event(f"b-{i}", data={"pad": "x" * 300}) for i in range(10)]
    events.append(event("b-big", data={"pad": "y" * 3000}))
    publish(client, topic, events)
    wait_final(client, topic, count_sub, 11)
    wait_final(client, topic, size_sub, 11)

    ids = sorted(e["id"] for e in events)
    for path in (by_count, by_size):
        assert sorted(e["id"] for e in receiver.events(path)) == ids
    assert all(1 <= len(r.events()) <= 4 for r in receiver.notifications(by_count))
    assert any(len(r.events()) > 1 for r in receiver.notifications(by_count))
    for request in receiver.notifications(by_size):
        batch = request.events()
        assert len(batch) == 1 or len(request.body) <= 1024 + 64, len(request.body)
        if any(e["id"] == "b-big" for e in batch):
            assert len(batch) == 1


def test_delivery_attribute_mappings_add_static_secret_and_dynamic_headers(
    client: httpx.Client, receiver: Receiver
) -> None:
    topic, _ = make_topic(client)
    path = "/" + new_name("map")
    mappings = [
        {"name": "X-Team", "type": "Static", "properties": {"value": "ml", "isSecret": False}},
        {"name": "X-Api-Key", "type": "Static", "properties": {"value": "hidden-value", "isSecret": True}},
        {"name": "X-Model", "type": "Dynamic", "properties": {"sourceField": "data.ModelName"}},
        {"name": "X-Missing", "type": "Dynamic", "properties": {"sourceField": "data.nothing"}},
    ]
    subscribe(client, topic, webhook(receiver.endpoint(path), deliveryAttributeMappings=mappings))
    publish(client, topic, [event("map-1", data={"ModelName": "churn"})])
    [request] = notifications(receiver, path)
    assert request.header("x-team") == "ml"
    assert request.header("x-api-key") == "hidden-value"
    assert request.header("x-model") == "churn"
    assert request.header("x-missing") is None


def test_signed_deliveries_verify_with_standard_webhooks(client: httpx.Client, receiver: Receiver) -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    topic, _ = make_topic(client)
    single, batched = "/" + new_name("sig"), "/" + new_name("sigb")
    subscribe(client, topic, webhook(receiver.endpoint(single), signingSecret=secret))
    batch_sub = subscribe(client, topic, webhook(receiver.endpoint(batched), signingSecret=secret,
                                                 maxEventsPerBatch=10))
    publish(client, topic, [event(f"sig-{i}") for i in range(3)])
    wait_final(client, topic, batch_sub, 3)
    receiver.wait_for_events(3, path=single)

    verifier = Webhook(secret)
    for request in receiver.notifications(single) + receiver.notifications(batched):
        headers = {k: v for k, v in request.headers.items() if k.startswith("webhook-")}
        verified = verifier.verify(request.body, headers)
        assert verified is not None
    for request in receiver.notifications(single):
        assert request.header("webhook-id") == request.events()[0]["id"]
    tampered = receiver.notifications(single)[0]
    with pytest.raises(Exception):  # noqa: B017 - the library raises its own verification error
        verifier.verify(tampered.body + b" ", {k: v for k, v in tampered.headers.items()
                                               if k.startswith("webhook-")})


def test_custom_input_schema_delivers_the_published_object_unchanged(
    client: httpx.Client, receiver: Receiver
) -> None:
    topic = new_name("custom")
    mapping = {
        "mappingType": "Json",
        "properties": {"id": {"sourceField": "myId"}, "eventType": {"sourceField": "kind"}},
    }
    created = client.put(
        f"/topics/{topic}",
        json={"properties": {"inputSchema": "CustomEventSchema", "inputSchemaMapping": mapping}},
    )
    assert created.status_code == 201, created.text
    path = "/" + new_name("asis")
    sub = subscribe(client, topic, webhook(receiver.endpoint(path)), eventDeliverySchema="CustomInputSchema")
    raw = '[{"myId":"c-1","kind":"Contoso.Item","nested":{"p":0.30000000000000001},"list":[1,"two"]}]'
    response = client.post(f"/topics/{topic}/api/events", content=raw,
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text

    [request] = notifications(receiver, path)
    assert request.body == raw.encode()  # byte for byte what was published, as an array
    [row] = wait_final(client, topic, sub, 1)
    assert row["state"] == "delivered"
