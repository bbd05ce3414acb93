"""The push request, byte for byte (SPEC §6.1), and delivery attribute mappings (SPEC §4)."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from mlgrid.delivery.signing import generate_signing_secret
from mlgrid.delivery.webhook_request import (
    build_webhook_request,
    parse_delivery_attribute_mappings,
    resolve_source_field,
)
from mlgrid.errors import InvalidField
from mlgrid.events.jsoncodec import dumps

PREFIX = "properties.destination.properties.deliveryAttributeMappings"
WORKSPACE_TOPIC = (
    "/subscriptions/x/resourceGroups/default/providers/Microsoft.MachineLearningServices/workspaces/w"
)


def eg_event(n: int = 1, **data: Any) -> dict[str, Any]:
    return {
        "id": f"e{n}",
        "topic": WORKSPACE_TOPIC,
        "subject": f"models/m:{n}",
        "eventType": "Microsoft.MachineLearningServices.ModelRegistered",
        "eventTime": "2024-03-07T09:05:00Z",
        "data": {"ModelName": "churn", "ModelVersion": str(n), **data},
        "dataVersion": "2",
        "metadataVersion": "1",
    }


def ce_event(n: int = 1) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"c{n}",
        "source": "/subscriptions/x/.../workspaces/w",
        "type": "Microsoft.MachineLearningServices.ModelRegistered",
        "subject": f"models/m:{n}",
        "time": "2024-03-07T09:05:00Z",
        "dataschema": "#2",
        "data": {"ModelName": "churn"},
    }


def build(events: list[dict[str, Any]], **kwargs: Any) -> tuple[dict[str, str], bytes]:
    options: dict[str, Any] = {
        "delivery_schema": "EventGridSchema",
        "subscription_name": "sub-one",
        "delivery_count": 0,
        "mappings": [],
        "signing_secret": None,
        "now_ts": 1_700_000_000,
        "batch_id": "batch-1",
    }
    options.update(kwargs)
    return build_webhook_request(events, **options)


# -- body and content type ------------------------------------------------------------


def test_event_grid_single_event_is_an_array() -> None:
    headers, body = build([eg_event()])
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(body) == [eg_event()]


def test_event_grid_batch() -> None:
    headers, body = build([eg_event(1), eg_event(2)], max_events_per_batch=10)
    assert [e["id"] for e in json.loads(body)] == ["e1", "e2"]
    assert headers["Content-Type"] == "application/json; charset=utf-8"


def test_custom_schema_is_an_array_too() -> None:
    custom = {"myId": 1, "payload": {"x": "y"}}
    headers, body = build([custom], delivery_schema="CustomInputSchema")
    assert json.loads(body) == [custom]
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers["aeg-data-version"] == ""


def test_cloud_event_single_is_an_object() -> None:
    headers, body = build([ce_event()], delivery_schema="CloudEventSchemaV1_0")
    assert headers["Content-Type"] == "application/cloudevents+json"
    assert json.loads(body) == ce_event()


def test_cloud_events_batch_is_an_array() -> None:
    headers, body = build(
        [ce_event(1), ce_event(2)], delivery_schema="CloudEventSchemaV1_0", max_events_per_batch=5
    )
    assert headers["Content-Type"] == "application/cloudevents-batch+json"
    assert [e["id"] for e in json.loads(body)] == ["c1", "c2"]


def test_cloud_events_batching_subscription_always_gets_an_array() -> None:
    headers, body = build([ce_event()], delivery_schema="CloudEventSchemaV1_0", max_events_per_batch=5)
    assert headers["Content-Type"] == "application/cloudevents-batch+json"
    assert json.loads(body) == [ce_event()]


def test_schema_name_is_case_insensitive() -> None:
    headers, _ = build([ce_event()], delivery_schema="cloudeventschemav1_0")
    assert headers["Content-Type"] == "application/cloudevents+json"


def test_no_events_is_a_bug() -> None:
    with pytest.raises(ValueError):
        build([])


# -- aeg headers ------------------------------------------------------------------------


def test_aeg_headers() -> None:
    headers, _ = build([eg_event()], delivery_count=3, subscription_name="My-Sub_1")
    assert headers["aeg-event-type"] == "Notification"
    assert headers["aeg-subscription-name"] == "MY-SUB_1"
    assert headers["aeg-delivery-count"] == "3"
    assert headers["aeg-data-version"] == "2"
    assert headers["aeg-metadata-version"] == "1"
    assert all(isinstance(v, str) for v in headers.values())


def test_first_attempt_has_delivery_count_zero() -> None:
    headers, _ = build([eg_event()])
    assert headers["aeg-delivery-count"] == "0"


def test_cloud_events_data_version_comes_from_dataschema() -> None:
    headers, _ = build([ce_event()], delivery_schema="CloudEventSchemaV1_0")
    assert headers["aeg-data-version"] == "2"
    event = ce_event()
    del event["dataschema"]
    headers, _ = build([event], delivery_schema="CloudEventSchemaV1_0")
    assert headers["aeg-data-version"] == ""


def test_unsigned_request_has_no_webhook_headers() -> None:
    headers, _ = build([eg_event()])
    assert not any(name.startswith("webhook-") for name in headers)


# -- signing ----------------------------------------------------------------------------


def test_signed_single_event_uses_the_event_id() -> None:
    secret = generate_signing_secret()
    now = int(time.time())
    headers, body = build([eg_event()], signing_secret=secret, now_ts=now)
    assert headers["webhook-id"] == "e1"
    assert headers["webhook-timestamp"] == str(now)
    assert Webhook(secret).verify(body, headers) == [eg_event()]


def test_signed_batch_uses_the_batch_id() -> None:
    secret = generate_signing_secret()
    now = int(time.time())
    headers, body = build(
        [eg_event(1), eg_event(2)], signing_secret=secret, now_ts=now, batch_id="b-42", max_events_per_batch=2
    )
    assert headers["webhook-id"] == "b-42"
    Webhook(secret).verify(body, headers)


def test_signed_batch_without_batch_id_is_a_bug() -> None:
    with pytest.raises(ValueError):
        build([eg_event(1), eg_event(2)], signing_secret=generate_signing_secret(), batch_id=None)


def test_signed_cloud_event() -> None:
    secret = generate_signing_secret()
    now = int(time.time())
    headers, body = build(
        [ce_event()], delivery_schema="CloudEventSchemaV1_0", signing_secret=secret, now_ts=now
    )
    assert headers["webhook-id"] == "c1"
    assert Webhook(secret).verify(body, headers) == ce_event()


# -- delivery attribute mappings in the request --------------------------------------


MAPPINGS = [
    {"name": "X-Team", "type": "Static", "properties": {"value": "ml", "isSecret": False}},
    {"name": "Authorization", "type": "Static", "properties": {"value": "Bearer s3cret", "isSecret": True}},
    {"name": "X-Model", "type": "Dynamic", "properties": {"sourceField": "data.ModelName"}},
    {"name": "X-Subject", "type": "Dynamic", "properties": {"sourceField": "SUBJECT"}},
    {"name": "X-Missing", "type": "Dynamic", "properties": {"sourceField": "data.NoSuchField"}},
]


def test_static_and_dynamic_mappings() -> None:
    headers, _ = build([eg_event()], mappings=MAPPINGS)
    assert headers["X-Team"] == "ml"
    assert headers["Authorization"] == "Bearer s3cret"
    assert headers["X-Model"] == "churn"
    assert headers["X-Subject"] == "models/m:1"
    assert "X-Missing" not in headers


def test_dynamic_mapping_is_case_insensitive() -> None:
    mapping = [{"name": "X-Model", "type": "Dynamic", "properties": {"sourceField": "DATA.modelname"}}]
    headers, _ = build([eg_event()], mappings=mapping)
    assert headers["X-Model"] == "churn"


def test_dynamic_mapping_reads_the_first_event_of_a_batch() -> None:
    mapping = [{"name": "X-Subject", "type": "Dynamic", "properties": {"sourceField": "subject"}}]
    headers, _ = build([eg_event(1), eg_event(2)], mappings=mapping, max_events_per_batch=2)
    assert headers["X-Subject"] == "models/m:1"


def test_stored_mappings_never_override_protocol_headers() -> None:
    bad = [
        {"name": "aeg-event-type", "type": "Static", "properties": {"value": "x"}},
        {"name": "content-type", "type": "Static", "properties": {"value": "text/plain"}},
    ]
    headers, _ = build([eg_event()], mappings=bad)
    assert headers["aeg-event-type"] == "Notification"
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert "content-type" not in headers


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("data.ModelName", "churn"),
        ("data.modelname", "churn"),
        ("id", "e1"),
        ("data.Count", "3"),
        ("data.Score", "0.30000000000000001"),
        ("data.Flag", "true"),
        ("data.Tags", '{"a":"b"}'),
        ("data.List", "[1,2]"),
        ("data.Null", None),
        ("data.ModelName.deeper", None),
        ("data.Multi", None),
        ("nothing", None),
    ],
)
def test_resolve_source_field(path: str, expected: str | None) -> None:
    event = eg_event(
        Count=3,
        Score=Decimal("0.30000000000000001"),
        Flag=True,
        Tags={"a": "b"},
        List=[1, 2],
        Null=None,
        Multi="line1\r\nX-Evil: 1",
    )
    assert resolve_source_field(event, path) == expected


def test_exact_key_wins_over_case_insensitive() -> None:
    event = {"data": {"name": "lower", "Name": "exact"}}
    assert resolve_source_field(event, "data.Name") == "exact"


# -- exact numbers ----------------------------------------------------------------------


def test_decimals_are_serialised_exactly() -> None:
    event = eg_event(Score=Decimal("0.30000000000000001"), Big=9007199254740993, Tiny=Decimal("1E-7"))
    _, body = build([event])
    assert b'"Score":0.30000000000000001' in body
    assert b'"Big":9007199254740993' in body
    parsed = json.loads(body, parse_float=Decimal)
    assert parsed[0]["data"]["Score"] == Decimal("0.30000000000000001")
    assert parsed[0]["data"]["Tiny"] == Decimal("1E-7")


def test_integers_beyond_64_bits_survive() -> None:
    big = 2**80 + 1
    body = dumps([{"n": big, "d": Decimal("1.50"), "s": 'é"', "f": 1.5, "b": False, "z": None}])
    assert json.loads(body) == [{"n": big, "d": 1.5, "s": 'é"', "f": 1.5, "b": False, "z": None}]
    assert b'"d":1.50' in body


def test_non_finite_decimal_is_refused() -> None:
    with pytest.raises(TypeError):
        dumps({"x": Decimal("NaN")})


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**100), max_value=2**100)
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@given(json_values)
def test_json_round_trips_exactly(value: Any) -> None:
    decoded = json.loads(dumps(value), parse_float=Decimal)
    assert decoded == value


# -- mapping validation -----------------------------------------------------------------


def test_parse_canonicalises() -> None:
    raw = [
        {"name": "X-Team", "type": "static", "properties": {"value": "ml"}},
        {"name": "X-Model", "type": "DYNAMIC", "properties": {"sourceField": "data.ModelName"}},
        {"name": "X-Key", "type": "Static", "properties": {"value": "k", "isSecret": True}},
    ]
    assert parse_delivery_attribute_mappings(raw, PREFIX) == [
        {"name": "X-Team", "type": "Static", "properties": {"value": "ml", "isSecret": False}},
        {"name": "X-Model", "type": "Dynamic", "properties": {"sourceField": "data.ModelName"}},
        {"name": "X-Key", "type": "Static", "properties": {"value": "k", "isSecret": True}},
    ]


def test_parse_none_is_empty() -> None:
    assert parse_delivery_attribute_mappings(None, PREFIX) == []
    assert parse_delivery_attribute_mappings([], PREFIX) == []


def static(name: str, value: Any = "v", **props: Any) -> dict[str, Any]:
    return {"name": name, "type": "Static", "properties": {"value": value, **props}}


def ok(n: int) -> list[dict[str, Any]]:
    return [static(f"X-H{i}") for i in range(n)]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ("nope", PREFIX),
        (ok(11), PREFIX),
        ([*ok(3), "x"], f"{PREFIX}[3]"),
        ([*ok(3), static("aeg-custom")], f"{PREFIX}[3].name"),
        ([*ok(3), static("AEG-Custom")], f"{PREFIX}[3].name"),
        ([static("Bad Name")], f"{PREFIX}[0].name"),
        ([static("X:Colon")], f"{PREFIX}[0].name"),
        ([static("")], f"{PREFIX}[0].name"),
        ([{"type": "Static", "properties": {"value": "v"}}], f"{PREFIX}[0].name"),
        ([static("X-A"), static("x-a")], f"{PREFIX}[1].name"),
        ([static("Content-Type")], f"{PREFIX}[0].name"),
        ([static("webhook-signature")], f"{PREFIX}[0].name"),
        ([static("X-A", "x" * 4097)], f"{PREFIX}[0].properties.value"),
        ([static("X-A", "é" * 2049)], f"{PREFIX}[0].properties.value"),
        ([static("X-A", "a\r\nX-B: c")], f"{PREFIX}[0].properties.value"),
        ([static("X-A", "a\x0bb")], f"{PREFIX}[0].properties.value"),
        ([static("X-A", "a\x7fb")], f"{PREFIX}[0].properties.value"),
        ([static("X-A", 5)], f"{PREFIX}[0].properties.value"),
        ([static("X-A", "v", isSecret="yes")], f"{PREFIX}[0].properties.isSecret"),
        ([{"name": "X-A", "type": "Computed", "properties": {}}], f"{PREFIX}[0].type"),
        ([{"name": "X-A", "type": "Static"}], f"{PREFIX}[0].properties"),
        ([{"name": "X-A", "type": "Dynamic", "properties": {}}], f"{PREFIX}[0].properties.sourceField"),
        (
            [{"name": "X-A", "type": "Dynamic", "properties": {"sourceField": " "}}],
            f"{PREFIX}[0].properties.sourceField",
        ),
    ],
)
def test_parse_errors_name_the_field(raw: object, field: str) -> None:
    with pytest.raises(InvalidField) as caught:
        parse_delivery_attribute_mappings(raw, PREFIX)
    assert caught.value.field_name == field
    assert caught.value.status == 400


def test_limits_are_inclusive() -> None:
    assert len(parse_delivery_attribute_mappings(ok(10), PREFIX)) == 10
    assert parse_delivery_attribute_mappings([static("X-A", "x" * 4096)], PREFIX)[0]["properties"]["value"]
    assert parse_delivery_attribute_mappings([static("X-A", "")], PREFIX)[0]["properties"]["value"] == ""
