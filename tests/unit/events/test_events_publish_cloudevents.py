"""Publishing CloudEvents 1.0: structured, batch, plain JSON and binary mode (SPEC §3)."""

from __future__ import annotations

import base64
import copy
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from mlgrid.domain.schemas import EventSchema
from mlgrid.errors import InvalidField, MlgridError, UnsupportedMediaType
from mlgrid.events.jsoncodec import dumps
from mlgrid.events.publish import MAX_EVENTS_PER_REQUEST, MAX_REQUEST_BYTES, parse_publish_body

TOPIC = (
    "/subscriptions/0b5c1c9e-8c5d-4a36-9a39-5f3b7a0b4d11/resourceGroups/default"
    "/providers/Microsoft.EventGrid/topics/ce"
)
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SINGLE = "application/cloudevents+json; charset=utf-8"
BATCH = "application/cloudevents-batch+json; charset=utf-8"

CLOUD_EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "c1",
    "source": "/contoso/orders",
    "type": "Contoso.OrderPlaced",
    "time": "2024-05-01T10:00:00.1234567Z",
    "data": {"amount": 3},
}


def publish(
    body: bytes | Any, content_type: str | None = BATCH, headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    raw = body if isinstance(body, bytes) else dumps(body)
    return parse_publish_body(
        raw, content_type, headers or {}, input_schema=EventSchema.CLOUD_EVENTS, mapping=None, topic_id=TOPIC,
        now=NOW,
    )


def refused(
    body: bytes | Any, content_type: str | None = BATCH, headers: dict[str, str] | None = None
) -> MlgridError:
    with pytest.raises(MlgridError) as caught:
        publish(body, content_type, headers)
    return caught.value


def cloud_event(**changes: Any) -> dict[str, Any]:
    result = copy.deepcopy(CLOUD_EVENT)
    for key, value in changes.items():
        if value is ...:
            result.pop(key, None)
        else:
            result[key] = value
    return result


# --- structured and batched ------------------------------------------------------------------


def test_single_structured_event() -> None:
    assert publish(CLOUD_EVENT, SINGLE) == [CLOUD_EVENT]


def test_batch() -> None:
    events = [cloud_event(id=f"c{n}") for n in range(3)]
    assert publish(events, BATCH) == events


def test_plain_json_array_and_object() -> None:
    assert publish([CLOUD_EVENT], "application/json") == [CLOUD_EVENT]
    assert publish(CLOUD_EVENT, "application/json") == [CLOUD_EVENT]
    assert publish(CLOUD_EVENT, None) == [CLOUD_EVENT]


@pytest.mark.parametrize(
    "content_type",
    ["APPLICATION/CLOUDEVENTS-BATCH+JSON", "application/cloudevents-batch+json;charset=UTF-8", BATCH],
)
def test_content_type_case_and_parameters_ignored(content_type: str) -> None:
    assert publish([CLOUD_EVENT], content_type) == [CLOUD_EVENT]


def test_single_content_type_with_an_array_is_refused() -> None:
    error = refused([CLOUD_EVENT], SINGLE)
    assert error.status == 400
    assert "one CloudEvent object" in error.message


def test_batch_content_type_with_an_object_is_refused() -> None:
    assert refused(CLOUD_EVENT, BATCH).status == 400


def test_plain_json_scalar_is_refused() -> None:
    assert refused(3, "application/json").status == 400


def test_attribute_order_and_null_attributes() -> None:
    sent = {
        "data": [1],
        "myext": "x",
        "subject": None,
        "type": "t",
        "source": "/s",
        "id": "1",
        "specversion": "1.0",
        "dataschema": "https://schemas.example/x",
    }
    [stored] = publish([sent])
    assert list(stored) == ["specversion", "id", "source", "type", "dataschema", "myext", "data"]


def test_optional_attributes_are_kept() -> None:
    sent = cloud_event(subject="orders/1", datacontenttype="application/json", dataschema="#1.0")
    assert publish([sent]) == [sent]


def test_numbers_in_data_are_exact() -> None:
    body = b'[{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{"p":0.30000000000000001}}]'
    assert publish(body)[0]["data"]["p"] == Decimal("0.30000000000000001")


def test_time_is_normalised_when_not_rfc3339() -> None:
    assert publish([cloud_event(time="2024-05-01 12:00:00+02:00")])[0]["time"] == "2024-05-01T10:00:00Z"


def test_time_is_optional() -> None:
    assert "time" not in publish([cloud_event(time=...)])[0]


def test_data_base64_is_kept() -> None:
    encoded = base64.b64encode(b"\x00\x01binary").decode()
    [stored] = publish([cloud_event(data=..., data_base64=encoded)])
    assert stored["data_base64"] == encoded
    assert "data" not in stored


def test_no_data_at_all() -> None:
    [stored] = publish([cloud_event(data=...)])
    assert "data" not in stored


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["specversion", "id", "source", "type"])
def test_required_attributes(field: str) -> None:
    error = refused([CLOUD_EVENT, cloud_event(**{field: ...})])
    assert isinstance(error, InvalidField)
    assert error.message.startswith(f"[1].{field}: required")
    assert error.details[0].target == f"[1].{field}"


@pytest.mark.parametrize("value", ["0.3", "1", 1, None])
def test_specversion_must_be_1_0(value: Any) -> None:
    error = refused([cloud_event(specversion=value)])
    assert error.message.startswith("[0].specversion:")
    assert '"1.0"' in error.message


@pytest.mark.parametrize("field", ["id", "source", "type", "subject", "datacontenttype", "dataschema"])
def test_string_attributes(field: str) -> None:
    error = refused([cloud_event(**{field: 7})])
    assert error.message == f"[0].{field}: must be a string, got number"


@pytest.mark.parametrize("field", ["id", "source", "type", "subject", "dataschema"])
def test_string_attributes_must_not_be_empty(field: str) -> None:
    assert refused([cloud_event(**{field: ""})]).message == f"[0].{field}: must not be empty"


@pytest.mark.parametrize("value", ["soon", 1714557600, "2024-02-30T00:00:00Z"])
def test_time_must_be_rfc3339(value: Any) -> None:
    assert refused([cloud_event(time=value)]).message.startswith("[0].time: must be an RFC 3339 date-time")


@pytest.mark.parametrize("name", ["a", "myext", "x1234567890123456789", "0abc"])
def test_valid_extension_names(name: str) -> None:
    assert publish([cloud_event(**{name: "v"})])[0][name] == "v"


@pytest.mark.parametrize("name", ["myExt", "my-ext", "my_ext", "x12345678901234567890", "ä"])
def test_invalid_extension_names(name: str) -> None:
    error = refused([cloud_event(**{name: "v"})])
    assert error.message.startswith(f"[0].{name}: extension attribute names must be")


@pytest.mark.parametrize("value", ["text", 7, True, False])
def test_extension_values(value: Any) -> None:
    assert publish([cloud_event(ext=value)])[0]["ext"] == value


@pytest.mark.parametrize(("value", "kind"), [({}, "object"), ([1], "array"), (Decimal("1.5"), "number")])
def test_extension_values_must_be_scalars(value: Any, kind: str) -> None:
    assert refused([cloud_event(ext=value)]).message.endswith(f"got {kind}")


def test_data_and_data_base64_are_exclusive() -> None:
    error = refused([cloud_event(data_base64="AAE=")])
    assert error.message == "[0].data_base64: data and data_base64 are mutually exclusive"


@pytest.mark.parametrize("value", ["not base64!", "AAE"])
def test_data_base64_must_be_base64(value: str) -> None:
    assert (
        refused([cloud_event(data=..., data_base64=value)]).message == "[0].data_base64: is not valid base64"
    )


def test_elements_must_be_objects() -> None:
    assert refused([CLOUD_EVENT, "x"]).message == "[1]: each event must be a JSON object, got string"


def test_every_problem_listed() -> None:
    error = refused([cloud_event(id=..., Bad="x"), cloud_event(type=3)])
    assert [d.target for d in error.details] == ["[0].id", "[0].Bad", "[1].type"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/octet-stream", "application/xml"])
def test_other_content_types_without_ce_headers_are_unsupported(content_type: str) -> None:
    error = refused(CLOUD_EVENT, content_type)
    assert isinstance(error, UnsupportedMediaType)
    assert error.status == 415


def test_limits() -> None:
    assert refused([cloud_event(data="x" * MAX_REQUEST_BYTES)]).status == 413
    small = {"specversion": "1.0", "id": "1", "source": "s", "type": "t"}
    assert len(publish([small] * MAX_EVENTS_PER_REQUEST)) == MAX_EVENTS_PER_REQUEST
    assert refused([small] * (MAX_EVENTS_PER_REQUEST + 1)).status == 413


# --- binary mode -----------------------------------------------------------------------------

BINARY_HEADERS = {
    "ce-specversion": "1.0",
    "ce-id": "b1",
    "ce-source": "/contoso/orders",
    "ce-type": "Contoso.OrderPlaced",
}


def test_binary_mode_with_a_json_body() -> None:
    body = b'{"amount": 0.30000000000000001}'
    [stored] = publish(body, "application/json; charset=utf-8", BINARY_HEADERS)
    assert stored == {
        "specversion": "1.0",
        "id": "b1",
        "source": "/contoso/orders",
        "type": "Contoso.OrderPlaced",
        "datacontenttype": "application/json; charset=utf-8",
        "data": {"amount": Decimal("0.30000000000000001")},
    }


def test_binary_mode_with_a_non_json_body() -> None:
    body = b"\x00\x01\x02 raw bytes"
    [stored] = publish(body, "application/octet-stream", BINARY_HEADERS)
    assert base64.b64decode(stored["data_base64"]) == body
    assert stored["datacontenttype"] == "application/octet-stream"
    assert "data" not in stored


def test_binary_mode_text_body_is_base64() -> None:
    [stored] = publish(b"hello", "text/plain", BINARY_HEADERS)
    assert stored["data_base64"] == base64.b64encode(b"hello").decode()


def test_binary_mode_headers_any_case_optional_attributes_and_extensions() -> None:
    headers = {
        "CE-SpecVersion": "1.0",
        "Ce-Id": "b2",
        "ce-SOURCE": "%2Fcontoso%2Forders",
        "ce-type": "t",
        "ce-subject": "orders/%C3%A9",
        "ce-time": "2024-05-01T10:00:00Z",
        "ce-dataschema": "https://schemas.example/order",
        "ce-tenant": "blue",
        "Host": "localhost",
        "Content-Length": "2",
    }
    [stored] = publish(b"{}", "application/json", headers)
    assert stored == {
        "specversion": "1.0",
        "id": "b2",
        "source": "/contoso/orders",
        "type": "t",
        "subject": "orders/é",
        "time": "2024-05-01T10:00:00Z",
        "datacontenttype": "application/json",
        "dataschema": "https://schemas.example/order",
        "tenant": "blue",
        "data": {},
    }


def test_binary_mode_empty_body_has_no_data() -> None:
    [stored] = publish(b"", "application/json", BINARY_HEADERS)
    assert "data" not in stored
    assert "data_base64" not in stored


def test_binary_mode_without_content_type() -> None:
    [stored] = publish(b"abc", None, BINARY_HEADERS)
    assert "datacontenttype" not in stored
    assert base64.b64decode(stored["data_base64"]) == b"abc"


def test_binary_mode_missing_header_is_named() -> None:
    headers = {k: v for k, v in BINARY_HEADERS.items() if k != "ce-type"}
    error = refused(b"{}", "application/json", headers)
    assert error.message == "ce-type: required string is missing"
    assert error.details[0].target == "ce-type"


def test_binary_mode_bad_specversion_and_extension_name() -> None:
    headers = dict(BINARY_HEADERS, **{"ce-specversion": "0.3", "ce-my-ext": "x"})
    error = refused(b"x", "text/plain", headers)
    assert [d.target for d in error.details] == ["ce-specversion", "ce-my-ext"]


def test_binary_mode_data_header_is_refused() -> None:
    error = refused(b"x", "text/plain", dict(BINARY_HEADERS, **{"ce-data": "x"}))
    assert error.details[0].target == "ce-data"


def test_binary_mode_malformed_json_body() -> None:
    assert refused(b"{", "application/json", BINARY_HEADERS).code == "InvalidJson"


def test_structured_content_type_wins_over_ce_headers() -> None:
    assert publish(CLOUD_EVENT, SINGLE, BINARY_HEADERS) == [CLOUD_EVENT]


def test_binary_mode_body_over_1_mb() -> None:
    assert refused(b"x" * (MAX_REQUEST_BYTES + 1), "application/octet-stream", BINARY_HEADERS).status == 413
