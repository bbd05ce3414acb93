"""The broker SDK's pure parts: sources, request bodies, update merging, event helpers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from mlgrid.client.broker import (
    Source,
    complete_event,
    delivery_attribute_mapping,
    event_matcher,
    event_subscription_properties,
    input_schema_mapping,
    merge_subscription_update,
    parse_source,
)

SUB = "/subscriptions/0b1f6471-1bf0-4dda-aec3-111122223333/resourceGroups/rg1/providers"


@pytest.mark.parametrize(
    ("text", "kind", "name"),
    [
        ("orders", "topics", "orders"),
        ("/topics/orders", "topics", "orders"),
        ("topics/orders/", "topics", "orders"),
        ("/systemTopics/ws1", "systemTopics", "ws1"),
        ("/systemtopics/ws1", "systemTopics", "ws1"),
        ("/workspaces/ws1", "workspaces", "ws1"),
        ("/Workspaces/Ws1", "workspaces", "Ws1"),
        (f"{SUB}/Microsoft.EventGrid/topics/orders", "topics", "orders"),
        (f"{SUB}/microsoft.eventgrid/systemTopics/ws1", "systemTopics", "ws1"),
        (f"{SUB}/Microsoft.MachineLearningServices/workspaces/ws1", "workspaces", "ws1"),
        (f"  {SUB}/Microsoft.MachineLearningServices/workspaces/ws1/  ", "workspaces", "ws1"),
    ],
)
def test_sources(text: str, kind: str, name: str) -> None:
    assert parse_source(text) == Source(kind, name)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "/queues/q1",
        "/topics/a/b",
        "/topics//a",
        f"{SUB}/Microsoft.Storage/storageAccounts/a",
        f"{SUB}/Microsoft.EventGrid/topics/t/eventSubscriptions/s",
        "/subscriptions/x/resourceGroups/y",
    ],
)
def test_bad_sources(text: str) -> None:
    with pytest.raises(ValueError, match="is not a topic name"):
        parse_source(text)


def test_source_paths_quote_names() -> None:
    assert Source("topics", "a b").path == "/topics/a%20b"
    assert Source("workspaces", "ws").subscription_path("s/1") == "/workspaces/ws/eventSubscriptions/s%2F1"
    assert Source("workspaces", "ws").events_path == "/systemTopics/ws/events"
    assert Source("topics", "t").events_path == "/topics/t/events"


def test_properties_hold_only_what_was_given() -> None:
    assert event_subscription_properties() == {}
    assert event_subscription_properties(subject_begins_with="models/") == {
        "filter": {"subjectBeginsWith": "models/"}
    }


def test_full_properties() -> None:
    properties = event_subscription_properties(
        endpoint="https://example.org/hook?code=1",
        endpoint_type="webhook",
        included_event_types=["A"],
        subject_begins_with="models/",
        subject_ends_with=":1",
        subject_case_sensitive=True,
        advanced_filters=[{"operatorType": "IsNotNull", "key": "data.x"}],
        enable_advanced_filtering_on_arrays=False,
        event_delivery_schema="cloudeventschemav1_0",
        max_delivery_attempts=5,
        event_ttl=60,
        deadletter_container="dl",
        delivery_attribute_mappings=[delivery_attribute_mapping("X-A", "static", "v")],
        labels=["l1"],
        expiration=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        max_events_per_batch=10,
        preferred_batch_size_in_kilobytes=128,
        destination_properties={"signingSecret": "whsec_x"},
    )
    assert properties == {
        "destination": {
            "endpointType": "WebHook",
            "properties": {
                "endpointUrl": "https://example.org/hook?code=1",
                "maxEventsPerBatch": 10,
                "preferredBatchSizeInKilobytes": 128,
                "deliveryAttributeMappings": [
                    {"name": "X-A", "type": "Static", "properties": {"value": "v", "isSecret": False}}
                ],
                "signingSecret": "whsec_x",
            },
        },
        "filter": {
            "includedEventTypes": ["A"],
            "subjectBeginsWith": "models/",
            "subjectEndsWith": ":1",
            "isSubjectCaseSensitive": True,
            "enableAdvancedFilteringOnArrays": False,
            "advancedFilters": [{"operatorType": "IsNotNull", "key": "data.x"}],
        },
        "eventDeliverySchema": "CloudEventSchemaV1_0",
        "retryPolicy": {"maxDeliveryAttempts": 5, "eventTimeToLiveInMinutes": 60},
        "deadLetterDestination": {"endpointType": "StorageBlob", "properties": {"blobContainerName": "dl"}},
        "labels": ["l1"],
        "expirationTimeUtc": "2030-01-02T03:04:05Z",
    }


def test_non_webhook_endpoint_is_the_url() -> None:
    properties = event_subscription_properties(
        endpoint="redis://127.0.0.1:6379/0",
        endpoint_type="RedisStream",
        destination_properties={"stream": "s"},
    )
    assert properties["destination"] == {
        "endpointType": "RedisStream", "properties": {"url": "redis://127.0.0.1:6379/0", "stream": "s"}
    }


def test_unknown_choices_are_value_errors() -> None:
    with pytest.raises(ValueError, match="endpoint type"):
        event_subscription_properties(endpoint_type="pigeon")
    with pytest.raises(ValueError, match="delivery schema"):
        event_subscription_properties(event_delivery_schema="xml")
    with pytest.raises(ValueError, match="secret"):
        delivery_attribute_mapping("X-A", "dynamic", "data.x", is_secret=True)


def test_input_schema_mapping_matches_field_names_ignoring_case() -> None:
    mapping = input_schema_mapping({"eventtype": "kind", "ID": "key"}, {"dataversion": "1", "eventType": "X"})
    assert mapping == {
        "mappingType": "Json",
        "properties": {
            "eventType": {"sourceField": "kind", "defaultValue": "X"},
            "id": {"sourceField": "key"},
            "dataVersion": {"defaultValue": "1"},
        },
    }
    with pytest.raises(ValueError, match="mapped field"):
        input_schema_mapping({"color": "x"})


CURRENT: dict[str, Any] = {
    "topic": "/subscriptions/x",
    "provisioningState": "Succeeded",
    "destination": {
        "endpointType": "WebHook",
        "properties": {"endpointBaseUrl": "https://example.org/hook", "maxEventsPerBatch": 1},
    },
    "filter": {"includedEventTypes": ["A"], "subjectBeginsWith": "models/", "advancedFilters": []},
    "retryPolicy": {"maxDeliveryAttempts": 30, "eventTimeToLiveInMinutes": 1440},
    "labels": ["old"],
}


def test_update_merges_one_level_into_filter_and_retry_policy() -> None:
    changes = event_subscription_properties(subject_ends_with=":3", max_delivery_attempts=3, labels=["new"])
    assert merge_subscription_update(CURRENT, changes) == {
        "filter": {"includedEventTypes": ["A"], "subjectBeginsWith": "models/", "advancedFilters": [],
                   "subjectEndsWith": ":3"},
        "retryPolicy": {"maxDeliveryAttempts": 3, "eventTimeToLiveInMinutes": 1440},
        "labels": ["new"],
    }


def test_update_keeps_the_destination_and_echoes_the_base_url() -> None:
    merged = merge_subscription_update(CURRENT, event_subscription_properties(max_events_per_batch=10))
    assert merged == {"destination": {"endpointType": "WebHook", "properties": {
        "endpointBaseUrl": "https://example.org/hook", "maxEventsPerBatch": 10}}}


def test_update_with_a_new_endpoint_drops_the_base_url() -> None:
    changes = event_subscription_properties(endpoint="https://example.org/new?code=2")
    assert merge_subscription_update(CURRENT, changes)["destination"] == {
        "endpointType": "WebHook",
        "properties": {"endpointUrl": "https://example.org/new?code=2", "maxEventsPerBatch": 1},
    }


def test_update_to_another_endpoint_type_replaces_the_destination() -> None:
    changes = event_subscription_properties(endpoint_type="queue")
    merged = merge_subscription_update(CURRENT, changes)
    assert merged["destination"] == {"endpointType": "Queue", "properties": {}}


def test_complete_event_fills_only_missing_envelope_fields() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    filled = complete_event({"eventType": "A"}, now)
    assert filled["eventTime"] == "2030-01-01T00:00:00Z"
    assert filled["subject"] == "" and len(filled["id"]) == 36
    kept = complete_event({"eventType": "A", "id": "1", "eventTime": "t", "subject": "s"}, now)
    assert kept == {"eventType": "A", "id": "1", "eventTime": "t", "subject": "s"}
    cloud = complete_event({"specversion": "1.0", "type": "A", "source": "s"}, now)
    assert cloud["time"] == "2030-01-01T00:00:00Z" and "eventTime" not in cloud and "subject" not in cloud
    custom = {"kind": "x"}
    assert complete_event(custom, now) == custom


def test_event_matcher_is_case_insensitive_like_subscriptions() -> None:
    match = event_matcher(["shop.orderplaced"], "Orders/", "/EU")
    assert match({"eventType": "Shop.OrderPlaced", "subject": "orders/1/eu"})
    assert not match({"eventType": "Shop.Other", "subject": "orders/1/eu"})
    assert not match({"eventType": "Shop.OrderPlaced", "subject": "orders/1/us"})
    assert match({"type": "SHOP.ORDERPLACED", "subject": "ORDERS/x/eu"})
    assert event_matcher(["All"])({"eventType": "anything"})
    assert event_matcher()({"eventType": "x", "subject": None})


def test_advanced_filters_may_be_filter_objects() -> None:
    from mlgrid.client.filters import StringIn

    filters = [StringIn("data.ModelTags.key1", ["value1"]), {"operatorType": "IsNotNull", "key": "id"}]
    properties = event_subscription_properties(advanced_filters=filters)
    assert properties["filter"]["advancedFilters"] == [
        {"operatorType": "StringIn", "key": "data.ModelTags.key1", "values": ["value1"]},
        {"operatorType": "IsNotNull", "key": "id"},
    ]
