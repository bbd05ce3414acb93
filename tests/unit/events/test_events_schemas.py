"""Schema names and Azure's inputSchemaMapping."""

from __future__ import annotations

from typing import Any

import pytest

from mlgrid.domain.schemas import EventSchema
from mlgrid.errors import InvalidField
from mlgrid.events.schemas import (
    FieldMapping,
    InputSchemaMapping,
    mapping_to_json,
    parse_input_schema_mapping,
    parse_schema_name,
)

FULL: dict[str, Any] = {
    "mappingType": "Json",
    "properties": {
        "id": {"sourceField": "myId"},
        "topic": {"sourceField": "myTopic"},
        "eventTime": {"sourceField": "meta.when"},
        "eventType": {"sourceField": "kind", "defaultValue": "Contoso.Item"},
        "subject": {"sourceField": "meta.path", "defaultValue": "items"},
        "dataVersion": {"defaultValue": "1.0"},
    },
}


def test_constants() -> None:
    assert EventSchema.EVENT_GRID == "EventGridSchema"
    assert EventSchema.CLOUD_EVENTS == "CloudEventSchemaV1_0"
    assert EventSchema.CUSTOM_EVENT == "CustomEventSchema"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("EventGridSchema", EventSchema.EVENT_GRID),
        ("eventgridschema", EventSchema.EVENT_GRID),
        ("CLOUDEVENTSCHEMAV1_0", EventSchema.CLOUD_EVENTS),
        ("CustomEventSchema", EventSchema.CUSTOM_EVENT),
        ("CustomInputSchema", EventSchema.CUSTOM_EVENT),
    ],
)
def test_schema_names_any_case(raw: str, expected: str) -> None:
    assert parse_schema_name(raw, "properties.inputSchema") == expected


@pytest.mark.parametrize("raw", ["CloudEventSchema", "", None, 3])
def test_unknown_schema_name(raw: object) -> None:
    with pytest.raises(InvalidField) as caught:
        parse_schema_name(raw, "properties.inputSchema")
    assert caught.value.status == 400
    assert "properties.inputSchema" in caught.value.message


def test_full_mapping() -> None:
    mapping = parse_input_schema_mapping(FULL)
    assert mapping.id == FieldMapping("myId")
    assert mapping.topic == FieldMapping("myTopic")
    assert mapping.event_time == FieldMapping("meta.when")
    assert mapping.event_time.path == ("meta", "when")
    assert mapping.event_type == FieldMapping("kind", "Contoso.Item")
    assert mapping.subject == FieldMapping("meta.path", "items")
    assert mapping.data_version == FieldMapping(None, "1.0")


def test_round_trip_through_json() -> None:
    mapping = parse_input_schema_mapping(FULL)
    assert mapping_to_json(mapping) == FULL
    assert parse_input_schema_mapping(mapping_to_json(mapping)) == mapping


def test_minimal_mapping_and_defaults() -> None:
    mapping = parse_input_schema_mapping({"properties": {"eventType": {"defaultValue": "T"}}})
    assert mapping == InputSchemaMapping(event_type=FieldMapping(None, "T"))
    assert mapping_to_json(mapping) == {
        "mappingType": "Json",
        "properties": {"eventType": {"defaultValue": "T"}},
    }


def test_mapping_type_is_case_insensitive() -> None:
    parse_input_schema_mapping({"mappingType": "json", "properties": {"eventType": {"sourceField": "t"}}})


def test_null_entries_mean_unmapped() -> None:
    mapping = parse_input_schema_mapping(
        {"properties": {"id": None, "eventType": {"sourceField": "t", "defaultValue": None}}}
    )
    assert mapping.id == FieldMapping()
    assert mapping.event_type == FieldMapping("t")


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ("nope", "properties.inputSchemaMapping"),
        ({"mappingType": "Xml", "properties": {}}, "properties.inputSchemaMapping.mappingType"),
        ({"mappingType": "Json", "extra": 1}, "properties.inputSchemaMapping.extra"),
        ({"properties": []}, "properties.inputSchemaMapping.properties"),
        ({"properties": {"source": {"sourceField": "s"}}}, "properties.inputSchemaMapping.properties.source"),
        (
            {"properties": {"eventType": {"sourceField": "t"}, "id": {"defaultValue": "x"}}},
            "properties.inputSchemaMapping.properties.id.defaultValue",
        ),
        (
            {"properties": {"eventType": {"sourceField": "t"}, "topic": {"defaultValue": "x"}}},
            "properties.inputSchemaMapping.properties.topic.defaultValue",
        ),
        (
            {"properties": {"eventType": {"sourceField": "t"}, "eventTime": {"defaultValue": "x"}}},
            "properties.inputSchemaMapping.properties.eventTime.defaultValue",
        ),
        (
            {"properties": {"eventType": {"sourceField": "t", "source": "x"}}},
            "properties.inputSchemaMapping.properties.eventType.source",
        ),
        (
            {"properties": {"eventType": {"sourceField": 3}}},
            "properties.inputSchemaMapping.properties.eventType",
        ),
        (
            {"properties": {"eventType": {"sourceField": "a..b"}}},
            "properties.inputSchemaMapping.properties.eventType",
        ),
        (
            {"properties": {"eventType": {"sourceField": ""}}},
            "properties.inputSchemaMapping.properties.eventType",
        ),
        ({"properties": {"eventType": "t"}}, "properties.inputSchemaMapping.properties.eventType"),
        (
            {"properties": {"subject": {"sourceField": "s"}}},
            "properties.inputSchemaMapping.properties.eventType",
        ),
        (
            {"properties": {"eventType": {"defaultValue": ""}}},
            "properties.inputSchemaMapping.properties.eventType",
        ),
    ],
)
def test_invalid_mappings_name_the_field(raw: object, field: str) -> None:
    with pytest.raises(InvalidField) as caught:
        parse_input_schema_mapping(raw)
    assert caught.value.status == 400
    assert field in caught.value.message
    assert caught.value.field_name.startswith(field)


def test_custom_prefix() -> None:
    with pytest.raises(InvalidField) as caught:
        parse_input_schema_mapping({"mappingType": "Avro"}, field_prefix="inputSchemaMapping")
    assert caught.value.field_name == "inputSchemaMapping.mappingType"
