"""Publishing to a CustomEventSchema topic through its inputSchemaMapping."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from mlgrid.domain.schemas import EventSchema
from mlgrid.errors import MlgridError
from mlgrid.events.jsoncodec import dumps
from mlgrid.events.publish import MAX_EVENTS_PER_REQUEST, parse_publish_body
from mlgrid.events.schemas import InputSchemaMapping, parse_input_schema_mapping

TOPIC = (
    "/subscriptions/0b5c1c9e-8c5d-4a36-9a39-5f3b7a0b4d11/resourceGroups/default"
    "/providers/Microsoft.EventGrid/topics/custom"
)
NOW = datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)

FULL = parse_input_schema_mapping(
    {
        "mappingType": "Json",
        "properties": {
            "id": {"sourceField": "ref"},
            "topic": {"sourceField": "origin"},
            "eventTime": {"sourceField": "meta.when"},
            "eventType": {"sourceField": "kind", "defaultValue": "Contoso.Default"},
            "subject": {"sourceField": "meta.path"},
            "dataVersion": {"sourceField": "version", "defaultValue": "9"},
        },
    }
)
TYPE_ONLY = parse_input_schema_mapping({"properties": {"eventType": {"defaultValue": "Contoso.Thing"}}})


def publish(
    body: Any, mapping: InputSchemaMapping | None = FULL, content_type: str = "application/json"
) -> list[dict[str, Any]]:
    raw = body if isinstance(body, bytes) else dumps(body)
    return parse_publish_body(
        raw, content_type, {}, input_schema=EventSchema.CUSTOM_EVENT, mapping=mapping, topic_id=TOPIC, now=NOW
    )


def refused(body: Any, mapping: InputSchemaMapping | None = FULL) -> MlgridError:
    with pytest.raises(MlgridError) as caught:
        publish(body, mapping)
    return caught.value


SENT = {
    "ref": "r1",
    "kind": "Contoso.ItemAdded",
    "meta": {"when": "2024-05-01T09:00:00+01:00", "path": "items/1"},
    "version": "2",
    "price": 1.5,
}


def test_fields_are_mapped_and_data_is_the_published_object() -> None:
    [stored] = publish([SENT])
    assert stored == {
        "id": "r1",
        "topic": TOPIC,
        "subject": "items/1",
        "eventType": "Contoso.ItemAdded",
        "eventTime": "2024-05-01T09:00:00+01:00",
        "data": SENT,
        "dataVersion": "2",
        "metadataVersion": "1",
    }


def test_a_single_object_body_is_one_event() -> None:
    assert len(publish(SENT)) == 1


def test_defaults_fill_missing_fields() -> None:
    sent = {key: value for key, value in SENT.items() if key not in ("kind", "version")}
    [stored] = publish([sent])
    assert stored["eventType"] == "Contoso.Default"
    assert stored["dataVersion"] == "9"


def test_null_source_uses_the_default() -> None:
    assert publish([dict(SENT, kind=None)])[0]["eventType"] == "Contoso.Default"


def test_unmapped_fields() -> None:
    [first, second] = publish([{"anything": 1}, {"anything": 2}], TYPE_ONLY)
    assert first["eventType"] == "Contoso.Thing"
    assert first["subject"] == ""
    assert first["dataVersion"] == ""
    assert first["eventTime"] == "2024-05-01T12:00:00.250000Z"
    assert first["topic"] == TOPIC
    assert uuid.UUID(first["id"]) != uuid.UUID(second["id"])
    assert first["data"] == {"anything": 1}


def test_mapped_topic_may_match_or_be_absent() -> None:
    assert publish([dict(SENT, origin=TOPIC.upper())])[0]["topic"] == TOPIC
    error = refused([dict(SENT, origin="/elsewhere")])
    assert error.message.startswith("[0].origin: must be this topic's id")


@pytest.mark.parametrize(
    ("remove", "target", "name"),
    [("ref", "[0].ref", "id"), ("meta", "[0].meta.when", "eventTime")],
)
def test_mapped_required_field_missing(remove: str, target: str, name: str) -> None:
    sent = {key: value for key, value in SENT.items() if key != remove}
    error = refused([sent])
    assert error.details[0].target == target
    assert error.details[0].message == (
        f"{target}: required string is missing (the topic maps it to {name}, with no defaultValue)"
    )


def test_mapped_subject_without_default_is_required() -> None:
    error = refused([dict(SENT, meta={"when": "2024-05-01T09:00:00Z"})])
    assert [d.target for d in error.details] == ["[0].meta.path"]
    assert "subject" in error.message


def test_path_through_a_non_object_is_missing() -> None:
    error = refused([dict(SENT, meta="flat")])
    assert [d.target for d in error.details] == ["[0].meta.when", "[0].meta.path"]


def test_mapped_values_must_be_strings() -> None:
    error = refused([dict(SENT, ref=12, kind=["x"])])
    assert [d.message for d in error.details] == [
        "[0].ref: must be a string (mapped to id), got number",
        "[0].kind: must be a string (mapped to eventType), got array",
    ]


def test_mapped_event_time_must_be_a_date_time() -> None:
    error = refused([dict(SENT, meta={"when": "noon", "path": "p"})])
    assert error.message.startswith("[0].meta.when: must be an ISO 8601 date-time")


def test_elements_must_be_objects() -> None:
    assert refused([SENT, 5]).message == "[1]: each event must be a JSON object, got number"


def test_without_mapping_every_event_lacks_an_event_type() -> None:
    error = refused([{"a": 1}], mapping=None)
    assert error.message.startswith("[0].eventType: no value")


def test_count_limit() -> None:
    assert refused([{"a": 1}] * (MAX_EVENTS_PER_REQUEST + 1), TYPE_ONLY).status == 413


def test_cloudevents_content_type_is_a_schema_mismatch() -> None:
    with pytest.raises(MlgridError) as caught:
        publish([SENT], content_type="application/cloudevents-batch+json")
    assert caught.value.code == "InputSchemaMismatch"
