"""Publishing in the Event Grid schema (SPEC §3): every rule, every message."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from mlgrid.domain.schemas import EventSchema
from mlgrid.errors import BadRequest, InvalidField, MlgridError, PayloadTooLarge, UnsupportedMediaType
from mlgrid.events.jsoncodec import dumps
from mlgrid.events.publish import (
    MAX_ERROR_DETAILS,
    MAX_EVENTS_PER_REQUEST,
    MAX_REQUEST_BYTES,
    media_type,
    parse_publish_body,
)

TOPIC = (
    "/subscriptions/0b5c1c9e-8c5d-4a36-9a39-5f3b7a0b4d11/resourceGroups/default"
    "/providers/Microsoft.EventGrid/topics/orders"
)
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

EVENT: dict[str, Any] = {
    "id": "e1",
    "subject": "orders/1",
    "eventType": "Contoso.OrderPlaced",
    "eventTime": "2024-05-01T10:00:00.1234567Z",
    "data": {"amount": 3},
    "dataVersion": "1.0",
}


def publish(
    body: bytes | list[Any] | Any, content_type: str | None = "application/json"
) -> list[dict[str, Any]]:
    raw = body if isinstance(body, bytes) else dumps(body)
    return parse_publish_body(
        raw, content_type, {}, input_schema=EventSchema.EVENT_GRID, mapping=None, topic_id=TOPIC, now=NOW
    )


def refused(body: bytes | list[Any] | Any, content_type: str | None = "application/json") -> MlgridError:
    with pytest.raises(MlgridError) as caught:
        publish(body, content_type)
    return caught.value


def event(**changes: Any) -> dict[str, Any]:
    result = copy.deepcopy(EVENT)
    for key, value in changes.items():
        if value is ...:
            result.pop(key, None)
        else:
            result[key] = value
    return result


# --- accepted events -----------------------------------------------------------------------


def test_event_is_normalised_for_storage() -> None:
    assert publish([EVENT]) == [
        {
            "id": "e1",
            "topic": TOPIC,
            "subject": "orders/1",
            "eventType": "Contoso.OrderPlaced",
            "eventTime": "2024-05-01T10:00:00.1234567Z",
            "data": {"amount": 3},
            "dataVersion": "1.0",
            "metadataVersion": "1",
        }
    ]


def test_optional_fields_get_their_defaults() -> None:
    [stored] = publish([event(data=..., dataVersion=...)])
    assert stored["data"] is None
    assert stored["dataVersion"] == ""
    assert stored["metadataVersion"] == "1"
    assert stored["topic"] == TOPIC
    assert list(stored) == [
        "id",
        "topic",
        "subject",
        "eventType",
        "eventTime",
        "data",
        "dataVersion",
        "metadataVersion",
    ]


def test_null_optional_fields_mean_absent() -> None:
    [stored] = publish([event(topic=None, dataVersion=None, metadataVersion=None, data=None)])
    assert stored["topic"] == TOPIC
    assert stored["dataVersion"] == ""
    assert stored["metadataVersion"] == "1"


def test_matching_topic_in_any_case_is_accepted_and_canonical() -> None:
    [stored] = publish([event(topic=TOPIC.upper(), metadataVersion="1")])
    assert stored["topic"] == TOPIC


def test_empty_subject_is_accepted() -> None:
    assert publish([event(subject="")])[0]["subject"] == ""


@pytest.mark.parametrize("data", [None, 1, "text", [1, 2], {"nested": {"a": [True, None]}}])
def test_data_may_be_any_json(data: Any) -> None:
    assert publish([event(data=data)])[0]["data"] == data


def test_empty_array_is_no_events() -> None:
    assert publish([]) == []


def test_several_events_keep_their_order() -> None:
    events = [event(id=f"e{n}") for n in range(10)]
    assert [stored["id"] for stored in publish(events)] == [f"e{n}" for n in range(10)]


@pytest.mark.parametrize(
    "sent",
    [
        "2024-05-01T10:00:00Z",
        "2024-05-01T10:00:00.1Z",
        "2017-06-26T18:41:00.9584103Z",
        "2024-05-01T10:00:00.123456789Z",
        "2024-05-01T12:00:00+02:00",
        "2024-05-01T10:00:00-00:00",
    ],
)
def test_valid_rfc3339_event_time_is_kept_verbatim(sent: str) -> None:
    assert publish([event(eventTime=sent)])[0]["eventTime"] == sent


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("2024-05-01 12:00:00+02:00", "2024-05-01T10:00:00Z"),
        ("2024-05-01T10:00:00", "2024-05-01T10:00:00Z"),
        ("2024-05-01T10:00:00.5", "2024-05-01T10:00:00.500000Z"),
        ("20240501T100000Z", "2024-05-01T10:00:00Z"),
    ],
)
def test_other_iso_8601_event_times_are_normalised_to_utc(sent: str, stored: str) -> None:
    assert publish([event(eventTime=sent)])[0]["eventTime"] == stored


def test_numbers_in_data_are_exact() -> None:
    body = (
        b'[{"id":"1","subject":"s","eventType":"t","eventTime":"2024-05-01T10:00:00Z",'
        b'"data":{"p":0.30000000000000001,"n":9007199254740993}}]'
    )
    [stored] = publish(body)
    assert stored["data"]["p"] == Decimal("0.30000000000000001")
    assert stored["data"]["p"] > Decimal("0.3")
    assert stored["data"]["n"] == 9007199254740993
    assert b'"p":0.30000000000000001,"n":9007199254740993' in dumps(stored)


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON; Charset=UTF-8",
        "text/json",
    ],
)
def test_json_content_types_are_accepted(content_type: str | None) -> None:
    assert len(publish([EVENT], content_type)) == 1


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        (None, None),
        ("", None),
        ("application/json", "application/json"),
        (" Application/CloudEvents-Batch+JSON ; charset=utf-8", "application/cloudevents-batch+json"),
    ],
)
def test_media_type(content_type: str | None, expected: str | None) -> None:
    assert media_type(content_type) == expected


# --- refused requests ----------------------------------------------------------------------


@pytest.mark.parametrize("field", ["id", "subject", "eventType", "eventTime"])
def test_required_field_missing(field: str) -> None:
    error = refused([EVENT, event(**{field: ...})])
    assert isinstance(error, InvalidField)
    assert error.status == 400
    assert error.message == f"[1].{field}: required string is missing"
    assert [(d.target, d.code) for d in error.details] == [(f"[1].{field}", "MissingField")]


@pytest.mark.parametrize("field", ["id", "subject", "eventType", "eventTime", "topic", "dataVersion"])
@pytest.mark.parametrize(("value", "kind"), [(5, "number"), (True, "boolean"), ({}, "object"), ([], "array")])
def test_string_fields_must_be_strings(field: str, value: Any, kind: str) -> None:
    error = refused([event(**{field: value})])
    assert error.message == f"[0].{field}: must be a string, got {kind}"


@pytest.mark.parametrize("field", ["id", "subject", "eventType", "eventTime"])
def test_required_field_null(field: str) -> None:
    assert refused([event(**{field: None})]).message == f"[0].{field}: must be a string, got null"


@pytest.mark.parametrize("field", ["id", "eventType", "eventTime"])
def test_required_field_empty(field: str) -> None:
    message = refused([event(**{field: ""})]).message
    assert message.startswith(f"[0].{field}: ")


@pytest.mark.parametrize("value", ["yesterday", "2024-13-01T00:00:00Z", "2024-05-01T25:00:00Z", "1714557600"])
def test_event_time_must_be_a_date_time(value: str) -> None:
    error = refused([event(eventTime=value)])
    assert error.message.startswith("[0].eventTime: must be an ISO 8601 date-time")


def test_unknown_top_level_field() -> None:
    error = refused([event(source="x")])
    assert error.message == "[0].source: unknown field in the Event Grid schema"
    assert error.details[0].code == "UnknownField"


def test_wrongly_cased_field_gets_a_hint() -> None:
    error = refused([event(eventType=..., EventType="t")])
    targets = [detail.target for detail in error.details]
    assert targets == ["[0].EventType", "[0].eventType"]
    assert "did you mean eventType?" in error.details[0].message


def test_topic_must_be_this_topic() -> None:
    other = TOPIC.replace("orders", "invoices")
    error = refused([event(topic=other)])
    assert error.message.startswith("[0].topic: must be this topic's id")
    assert other in error.message


@pytest.mark.parametrize("value", ["2", "", 1])
def test_metadata_version_must_be_1(value: Any) -> None:
    assert refused([event(metadataVersion=value)]).message.startswith('[0].metadataVersion: must be "1"')


@pytest.mark.parametrize(
    ("body", "kind"), [({"id": "x"}, "object"), ("events", "string"), (3, "number"), (None, "null")]
)
def test_body_must_be_an_array(body: Any, kind: str) -> None:
    error = refused(body)
    assert error.status == 400
    assert error.message == f"body: the Event Grid schema requires a JSON array of events, got {kind}"


@pytest.mark.parametrize(
    ("item", "kind"), [(1, "number"), ("x", "string"), ([EVENT], "array"), (None, "null")]
)
def test_array_elements_must_be_objects(item: Any, kind: str) -> None:
    error = refused([EVENT, EVENT, item])
    assert error.message == f"[2]: each event must be a JSON object, got {kind}"
    assert error.details[0].target == "[2]"


def test_all_or_nothing_and_every_problem_listed() -> None:
    body = [EVENT, event(id=...), EVENT, event(eventType=7, subject=...), "nope"]
    error = refused(body)
    assert [detail.target for detail in error.details] == ["[1].id", "[3].subject", "[3].eventType", "[4]"]
    assert error.message == "[1].id: required string is missing (and 3 more problems)"
    assert all(detail.message.startswith(detail.target + ": ") for detail in error.details)


def test_problems_are_capped() -> None:
    error = refused([event(id=...)] * 200)
    assert len(error.details) == MAX_ERROR_DETAILS
    assert "more problems" in error.message


def test_error_envelope_shape() -> None:
    body = refused([event(id=5)]).as_json()
    assert body == {
        "error": {
            "code": "InvalidRequest",
            "message": "[0].id: must be a string, got number",
            "details": [
                {
                    "code": "InvalidFieldType",
                    "message": "[0].id: must be a string, got number",
                    "target": "[0].id",
                }
            ],
        }
    }


def test_malformed_json() -> None:
    error = refused(b'[{"id": "1", }]')
    assert isinstance(error, BadRequest)
    assert error.code == "InvalidJson"
    assert "line 1, column 14" in error.message


@pytest.mark.parametrize("body", [b"", b"  \n"])
def test_empty_body(body: bytes) -> None:
    error = refused(body)
    assert error.code == "InvalidJson"
    assert "empty" in error.message


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
def test_other_content_types_are_unsupported(content_type: str) -> None:
    error = refused([EVENT], content_type)
    assert isinstance(error, UnsupportedMediaType)
    assert error.status == 415


@pytest.mark.parametrize(
    "content_type", ["application/cloudevents+json", "application/cloudevents-batch+json; charset=utf-8"]
)
def test_cloudevents_on_an_event_grid_topic(content_type: str) -> None:
    error = refused([EVENT], content_type)
    assert error.status == 400
    assert error.code == "InputSchemaMismatch"


# --- limits --------------------------------------------------------------------------------


def test_event_over_1_mb_is_413() -> None:
    error = refused([event(data={"blob": "x" * MAX_REQUEST_BYTES})])
    assert isinstance(error, PayloadTooLarge)
    assert error.status == 413
    assert "1,048,576" in error.message


def test_request_over_1_mb_of_small_events_is_413() -> None:
    events = [event(id=str(n), data={"blob": "x" * 10_000}) for n in range(110)]
    assert refused(events).status == 413


def test_request_of_exactly_1_mb_is_accepted() -> None:
    skeleton = dumps([event(data="")])
    padding = MAX_REQUEST_BYTES - len(skeleton)
    body = dumps([event(data="x" * padding)])
    assert len(body) == MAX_REQUEST_BYTES
    [stored] = publish(body)
    assert len(stored["data"]) == padding


def test_at_most_5000_events() -> None:
    small = {"id": "1", "subject": "", "eventType": "t", "eventTime": "2024-05-01T10:00:00Z"}
    assert len(publish([small] * MAX_EVENTS_PER_REQUEST)) == MAX_EVENTS_PER_REQUEST
    error = refused([small] * (MAX_EVENTS_PER_REQUEST + 1))
    assert error.status == 413
    assert "5,000" in error.message


def test_unknown_input_schema_is_refused() -> None:
    with pytest.raises(InvalidField):
        parse_publish_body(b"[]", None, {}, input_schema="Avro", mapping=None, topic_id=TOPIC, now=NOW)
