"""Bodies exactly as azure-mgmt-eventgrid serialises them are accepted (issue: Azure's own tools).

The models are the real SDK's; ``serialize()`` is what its operations send on the wire.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from azure.mgmt.eventgrid import models as m

from mlgrid.broker.subscription_body import parse_subscription_body
from mlgrid.broker.topics import Topic, parse_topic_body
from mlgrid.domain.schemas import EventSchema
from mlgrid.errors import InvalidField
from mlgrid.events.schemas import FieldMapping
from mlgrid.store.topics import TopicRow

NOW = datetime(2026, 1, 1, tzinfo=UTC)

# Azure's own test topic (azure-eventgrid's tests/eventgrid_preparer.py writes "no default" as "").
AZURE_TEST_MAPPING = m.JsonInputSchemaMapping(
    id=m.JsonField(source_field="customId"),
    topic=m.JsonField(source_field="customTopic"),
    event_time=m.JsonField(source_field="customEventTime"),
    event_type=m.JsonFieldWithDefault(source_field="customEventType", default_value=""),
    subject=m.JsonFieldWithDefault(source_field="customSubject", default_value=""),
    data_version=m.JsonFieldWithDefault(source_field="customDataVersion", default_value=""),
)


def _topic(schema: str = EventSchema.EVENT_GRID) -> Topic:
    row = TopicRow("orders", "custom", "default", schema, None, 1, "", "", "e", NOW, NOW)
    return Topic(row=row, resource_id="/subscriptions/s/resourceGroups/default/providers/x/topics/orders",
                 mapping=None)


def test_custom_schema_topic_as_the_sdk_sends_it() -> None:
    body = m.Topic(
        location="westus",
        tags={"team": "ml"},
        input_schema=m.InputSchema.CUSTOM_EVENT_SCHEMA,
        input_schema_mapping=AZURE_TEST_MAPPING,
        public_network_access="Enabled",
        inbound_ip_rules=[],
        minimum_tls_version_allowed="1.2",
        disable_local_auth=False,
        data_residency_boundary="WithinGeopair",
    ).serialize()
    assert body["properties"]["inputSchemaMapping"]["inputSchemaMappingType"] == "Json"
    spec = parse_topic_body(body)
    assert spec.input_schema == EventSchema.CUSTOM_EVENT
    assert spec.mapping is not None
    assert spec.mapping.event_type == FieldMapping("customEventType")  # "" = no default
    assert spec.mapping.subject == FieldMapping("customSubject", "")  # "" is a valid subject
    assert spec.mapping.id == FieldMapping("customId")


def test_mapping_type_other_than_json_names_the_sdk_field() -> None:
    body: dict[str, Any] = m.Topic(location="westus", input_schema="CustomEventSchema",
                                   input_schema_mapping=AZURE_TEST_MAPPING).serialize()
    body["properties"]["inputSchemaMapping"]["inputSchemaMappingType"] = "Xml"
    with pytest.raises(InvalidField) as caught:
        parse_topic_body(body)
    assert caught.value.field_name == "properties.inputSchemaMapping.inputSchemaMappingType"


def test_every_subscription_property_as_the_sdk_sends_it() -> None:
    body = m.EventSubscription(
        destination=m.WebHookEventSubscriptionDestination(
            endpoint_url="https://example.org/hook?code=1",
            max_events_per_batch=10,
            preferred_batch_size_in_kilobytes=64,
            delivery_attribute_mappings=[
                m.StaticDeliveryAttributeMapping(name="X-Team", value="ml", is_secret=False),
                m.DynamicDeliveryAttributeMapping(name="X-Model", source_field="data.ModelName"),
            ],
            minimum_tls_version_allowed="1.2",
        ),
        filter=m.EventSubscriptionFilter(
            included_event_types=["Microsoft.MachineLearningServices.ModelRegistered"],
            subject_begins_with="models/",
            subject_ends_with="",
            is_subject_case_sensitive=False,
            enable_advanced_filtering_on_arrays=True,
            advanced_filters=[m.StringInAdvancedFilter(key="data.ModelTags.key1", values=["value1"])],
        ),
        labels=["team-a"],
        expiration_time_utc=datetime(2030, 1, 1, tzinfo=UTC),
        event_delivery_schema="EventGridSchema",
        retry_policy=m.RetryPolicy(max_delivery_attempts=10, event_time_to_live_in_minutes=120),
        dead_letter_destination=m.StorageBlobDeadLetterDestination(
            resource_id="/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/a",
            blob_container_name="deadletters",
        ),
    ).serialize()
    sub = parse_subscription_body(body, topic=_topic(), name="s1", now=NOW)
    assert sub.endpoint_url == "https://example.org/hook?code=1"
    assert sub.max_events_per_batch == 10
    assert sub.max_delivery_attempts == 10
    assert sub.dead_letter_container == "deadletters"
    assert sub.labels == ("team-a",)
    assert [f.key for f in sub.event_filter.advanced_filters] == ["data.ModelTags.key1"]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("properties", "deliveryWithResourceIdentity"), {"identity": {"type": "SystemAssigned"}}),
        (("properties", "destination", "properties", "azureActiveDirectoryTenantId"), "t"),
        (("properties", "destination", "properties", "minimumTlsVersionAllowed"), "0.9"),
    ],
)
def test_unsupported_values_are_refused_naming_the_field(path: tuple[str, ...], value: object) -> None:
    body: dict[str, Any] = m.EventSubscription(
        destination=m.WebHookEventSubscriptionDestination(endpoint_url="https://example.org/h"),
    ).serialize()
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(InvalidField) as caught:
        parse_subscription_body(body, topic=_topic(), name="s1", now=NOW)
    assert caught.value.field_name == ".".join(path)


def test_null_identity_properties_are_accepted() -> None:
    body: dict[str, Any] = m.EventSubscription(
        destination=m.WebHookEventSubscriptionDestination(endpoint_url="https://example.org/h"),
    ).serialize()
    body["properties"]["deliveryWithResourceIdentity"] = None
    body["properties"]["deadLetterWithResourceIdentity"] = None
    body["properties"]["destination"]["properties"]["azureActiveDirectoryTenantId"] = None
    assert parse_subscription_body(body, topic=_topic(), name="s1", now=NOW).endpoint_url == "https://example.org/h"
