"""The SDK's typed records: attributes typed from the API's JSON, and the JSON itself still
readable as before (``record["properties"]``, ``dict(record)``, ``record == {...}``), so the
calls that returned dicts could return records without breaking a caller."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

from mlgrid.cli.output import to_json
from mlgrid.client.records import (
    DeadLetterRecord,
    DeliveryRecord,
    EventSubscription,
    LockResult,
    PulledEvent,
    RedeliveryResult,
    RoleAssignment,
    TopicInfo,
    TopicKeys,
)

TOPIC = {
    "id": "/subscriptions/x/resourceGroups/default/providers/Microsoft.EventGrid/topics/orders",
    "name": "orders",
    "type": "Microsoft.EventGrid/topics",
    "location": "local",
    "etag": "abc",
    "properties": {"endpoint": "http://h/topics/orders/api/events", "inputSchema": "EventGridSchema",
                   "resourceGroup": "default", "retentionInDays": 3, "provisioningState": "Succeeded"},
}


def test_a_topic_is_typed_and_still_reads_as_its_json() -> None:
    topic = TopicInfo.from_json(TOPIC)
    assert (topic.name, topic.etag, topic.input_schema, topic.retention_in_days) == ("orders", "abc",
                                                                                     "EventGridSchema", 3)
    assert topic["properties"]["endpoint"] == topic.endpoint
    assert topic.get("missing") is None and "name" in topic
    assert topic == TOPIC and topic == TOPIC and dict(topic) == TOPIC
    assert json.loads(to_json(topic)) == TOPIC  # the CLI prints the answer, not the fields
    assert json.loads(to_json([topic])) == [TOPIC]


def test_a_subscription_keeps_exact_numbers_and_its_destination() -> None:
    body = {"name": "s", "id": "i", "etag": "e", "properties": {
        "topic": "/t", "provisioningState": "Succeeded", "eventDeliverySchema": "CloudEventSchemaV1_0",
        "destination": {"endpointType": "WebHook", "properties": {"endpointBaseUrl": "http://r"}},
        "filter": {"advancedFilters": [
            {"operatorType": "NumberIn", "key": "data.n", "values": [Decimal("0.1")]},
        ]},
    }}
    sub = EventSubscription.from_json(body)
    assert sub.endpoint_type == "WebHook" and sub.provisioning_state == "Succeeded"
    assert sub.filter["advancedFilters"][0]["values"] == [Decimal("0.1")]
    assert sub["properties"]["destination"] is not None and sub.properties["topic"] == "/t"
    assert '"values": [\n' in to_json(sub) and "0.1" in to_json(sub)


def test_delivery_and_dead_letter_times_are_datetimes() -> None:
    delivery = DeliveryRecord.from_json({
        "id": 7, "eventId": "e", "eventType": "T", "state": "pending", "deliveryAttempts": 2,
        "lastDeliveryOutcome": "GenericError", "lastHttpStatusCode": 500, "lastError": None,
        "lastDeliveryAttemptTime": "2026-01-02T03:04:05Z", "nextAttemptTime": None,
        "createdTime": "2026-01-02T03:04:00Z", "finishedTime": None, "reason": None,
    })
    assert delivery.last_delivery_attempt_time == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert (delivery.delivery_attempts, delivery.last_http_status_code) == (2, 500)
    assert delivery["state"] == "pending"
    dead = DeadLetterRecord.from_json({
        "id": "d", "eventId": "e", "deadLetterReason": "MaxDeliveryAttemptsExceeded", "deliveryId": 7,
        "deadLetteredTime": "2026-01-02T03:04:05Z", "record": {"id": "e"},
    })
    assert dead.delivery_id == 7 and dead.record == {"id": "e"} and dead.redelivered_time is None


def test_results_of_actions() -> None:
    redelivered = RedeliveryResult.from_json({"value": [{"id": "d", "eventId": "e", "deliveryId": 9}],
                                              "notRetained": ["x"], "unknownIds": []})
    assert redelivered.redelivered == [("d", "e", 9)] and redelivered.not_retained == ["x"]
    keys = TopicKeys.from_json({"key1": "a", "key2": "b"})
    assert (keys.key1, keys["key2"]) == ("a", "b")
    pulled = PulledEvent.from_json(
        {"brokerProperties": {"lockToken": "t", "deliveryCount": 1}, "event": {"id": "e"}}
    )
    assert (pulled.lock_token, pulled.delivery_count, pulled.event) == ("t", 1, {"id": "e"})
    assert pulled["brokerProperties"]["lockToken"] == "t"
    locks = LockResult.from_json({"succeededLockTokens": ["t"], "failedLockTokens": []})
    assert locks.succeeded_lock_tokens == ["t"]
    assignments = [RoleAssignment.from_json({"principal": "p", "role": "Reader"})]
    assert {"principal": "p", "role": "Reader"} in assignments
