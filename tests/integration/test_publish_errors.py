"""Every 4xx of publishing (SPEC §3), on SQLite and PostgreSQL, and the body forms that work.

Each rejection asserts the status, the error envelope, that the message names the event index
and the field, and that nothing was stored: a request with one bad event among good ones is
refused as a whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.support.broker_db import create_system_topic
from tests.support.publishing import (
    assert_error,
    cloud_event,
    create_topic,
    eg_event,
    event_ids,
    list_events,
    new_name,
    topic_keys,
)
from tests.support.server import ServerProcess

MB = 1_048_576


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


class Topic:
    """A topic and a publisher client holding its key."""

    def __init__(self, server: ServerProcess, admin: httpx.Client, schema: str, **properties: Any) -> None:
        body = create_topic(admin, schema=schema, **properties)
        self.name: str = body["name"]
        self.id: str = body["id"]
        self.admin = admin
        key1, _ = topic_keys(admin, self.name)
        self.client = httpx.Client(base_url=server.url, headers={"aeg-sas-key": key1}, timeout=60)
        self.path = f"/topics/{self.name}/api/events"

    def post(
        self,
        body: Any = None,
        *,
        content: bytes | str | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        path: str | None = None,
    ) -> httpx.Response:
        if content is None:
            content = json.dumps(body)
        all_headers = {"Content-Type": content_type, **(headers or {})}
        return self.client.post(path or self.path, content=content, headers=all_headers)

    def stored(self) -> list[dict[str, Any]]:
        return list_events(self.admin, self.name, top=1000)

    def count(self) -> int:
        return len(self.stored())

    def close(self) -> None:
        self.client.close()


@pytest.fixture(scope="module")
def eg_topic(server: ServerProcess, admin: httpx.Client) -> Iterator[Topic]:
    topic = Topic(server, admin, "EventGridSchema")
    yield topic
    topic.close()


@pytest.fixture(scope="module")
def ce_topic(server: ServerProcess, admin: httpx.Client) -> Iterator[Topic]:
    topic = Topic(server, admin, "CloudEventSchemaV1_0")
    yield topic
    topic.close()


MAPPING = {
    "mappingType": "Json",
    "properties": {
        "id": {"sourceField": "orderId"},
        "eventTime": {"sourceField": "meta.when"},
        "eventType": {"sourceField": "kind", "defaultValue": "Shop.Default"},
        "subject": {"sourceField": "meta.path"},
        "dataVersion": {"defaultValue": "7.0"},
    },
}


@pytest.fixture(scope="module")
def custom_topic(server: ServerProcess, admin: httpx.Client) -> Iterator[Topic]:
    topic = Topic(server, admin, "CustomEventSchema", inputSchemaMapping=MAPPING)
    yield topic
    topic.close()


def rejected(
    topic: Topic, response: httpx.Response, status: int, *fragments: str, code: str | None = None
) -> dict[str, Any]:
    """The request failed as expected and the topic holds what it held before (checked by
    the caller's ``before``) — here: the error shape."""
    return assert_error(response, status, *fragments, code=code)


# --- Event Grid schema ----------------------------------------------------------------------


EG_BAD_EVENTS: list[tuple[str, Any, tuple[str, ...]]] = [
    ("missing id", {k: v for k, v in eg_event().items() if k != "id"}, ("[2].id", "missing")),
    ("empty id", eg_event(""), ("[2].id", "empty")),
    ("id not a string", eg_event(**{"id": 17}), ("[2].id", "string", "number")),
    ("missing subject", {k: v for k, v in eg_event().items() if k != "subject"}, ("[2].subject",)),
    ("subject not a string", eg_event(subject=["a"]), ("[2].subject", "array")),
    ("missing eventType", {k: v for k, v in eg_event().items() if k != "eventType"}, ("[2].eventType",)),
    ("empty eventType", eg_event(eventType=""), ("[2].eventType", "empty")),
    ("eventType null", eg_event(eventType=None), ("[2].eventType", "null")),
    ("missing eventTime", {k: v for k, v in eg_event().items() if k != "eventTime"}, ("[2].eventTime",)),
    ("eventTime not a time", eg_event(eventTime="yesterday"), ("[2].eventTime", "ISO 8601")),
    ("eventTime a number", eg_event(eventTime=1714564800), ("[2].eventTime", "number")),
    ("dataVersion a number", eg_event(dataVersion=1), ("[2].dataVersion", "string")),
    ("unknown field", eg_event(color="red"), ("[2].color", "unknown field")),
    (
        "field in wrong case",
        {**{k: v for k, v in eg_event().items() if k != "eventType"}, "EventType": "X"},
        ("[2].EventType", "eventType"),
    ),
    (
        "wrong topic",
        eg_event(topic="/subscriptions/x/resourceGroups/y/providers/Microsoft.EventGrid/topics/z"),
        ("[2].topic", "this topic's id"),
    ),
    ("topic not a string", eg_event(topic=5), ("[2].topic", "string")),
    ("metadataVersion not 1", eg_event(metadataVersion="2"), ("[2].metadataVersion", '"1"')),
    ("metadataVersion a number", eg_event(metadataVersion=1), ("[2].metadataVersion",)),
    ("not an object", 42, ("[2]", "JSON object", "number")),
    ("a string", "event", ("[2]", "JSON object", "string")),
    ("null", None, ("[2]", "JSON object", "null")),
    ("a nested array", [eg_event()], ("[2]", "JSON object", "array")),
]


@pytest.mark.parametrize(("label", "bad", "fragments"), EG_BAD_EVENTS, ids=[c[0] for c in EG_BAD_EVENTS])
def test_event_grid_bad_event_among_good_ones(
    eg_topic: Topic, label: str, bad: Any, fragments: tuple[str, ...]
) -> None:
    before = eg_topic.count()
    good = [eg_event(), eg_event(), eg_event()]
    response = eg_topic.post([good[0], good[1], bad, good[2]])
    error = rejected(eg_topic, response, 400, *fragments)
    assert any(d.get("target", "").startswith("[2]") for d in error["details"]), error
    assert eg_topic.count() == before
    assert not {e["id"] for e in good} & set(event_ids(eg_topic.admin, eg_topic.name))


def test_event_grid_every_problem_is_listed(eg_topic: Topic) -> None:
    before = eg_topic.count()
    response = eg_topic.post([eg_event(), {"id": 1}, eg_event(color="red")])
    error = rejected(eg_topic, response, 400, "[1].", "more problem")
    targets = [d["target"] for d in error["details"]]
    assert targets == ["[1].id", "[1].subject", "[1].eventType", "[1].eventTime", "[2].color"]
    assert eg_topic.count() == before


@pytest.mark.parametrize(
    ("label", "body", "fragments"),
    [
        ("an object", eg_event(), ("body", "JSON array", "object")),
        ("a string", "events", ("body", "JSON array", "string")),
        ("a number", 5, ("body", "JSON array", "number")),
        ("null", None, ("body", "JSON array", "null")),
    ],
)
def test_event_grid_body_must_be_an_array(
    eg_topic: Topic, label: str, body: Any, fragments: tuple[str, ...]
) -> None:
    before = eg_topic.count()
    rejected(eg_topic, eg_topic.post(body), 400, *fragments)
    assert eg_topic.count() == before


@pytest.mark.parametrize(
    ("label", "content", "fragments"),
    [
        ("truncated", b'[{"id": "a"', ("body", "not valid JSON")),
        ("trailing comma", b"[{}, ]", ("not valid JSON",)),
        ("two documents", b"[] []", ("not valid JSON",)),
        ("NaN", b'[{"id": "a", "data": NaN}]', ("NaN",)),
        ("not UTF-8", b'[{"id": "\xff"}]', ("UTF-8",)),
        ("empty", b"", ("empty",)),
        ("only spaces", b"   ", ("empty",)),
    ],
)
def test_bad_json_is_400(eg_topic: Topic, label: str, content: bytes, fragments: tuple[str, ...]) -> None:
    before = eg_topic.count()
    rejected(eg_topic, eg_topic.post(content=content), 400, *fragments, code="InvalidJson")
    assert eg_topic.count() == before


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/xml", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
def test_unsupported_content_type_is_415(eg_topic: Topic, content_type: str) -> None:
    before = eg_topic.count()
    response = eg_topic.post([eg_event()], content_type=content_type)
    rejected(eg_topic, response, 415, "Content-Type", content_type.split(";")[0], code="UnsupportedMediaType")
    assert eg_topic.count() == before


def test_cloud_events_content_type_on_event_grid_topic_is_400(eg_topic: Topic) -> None:
    before = eg_topic.count()
    response = eg_topic.post(cloud_event(), content_type="application/cloudevents+json")
    rejected(eg_topic, response, 400, "CloudEventSchemaV1_0", code="InputSchemaMismatch")
    assert eg_topic.count() == before


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "Application/JSON; charset=utf-8", "text/json", "application/vnd.contoso+json"],
)
def test_json_content_types_are_accepted(eg_topic: Topic, content_type: str) -> None:
    event = eg_event()
    response = eg_topic.post([event], content_type=content_type)
    assert response.status_code == 200, response.text
    assert response.content == b""
    assert event["id"] in event_ids(eg_topic.admin, eg_topic.name)


def test_api_version_query_is_ignored_and_topic_field_may_be_sent(eg_topic: Topic) -> None:
    event = eg_event(topic=eg_topic.id.upper(), metadataVersion="1", data=None)
    response = eg_topic.post([event], path=f"{eg_topic.path}?api-version=2018-01-01")
    assert response.status_code == 200, response.text
    [stored] = [e for e in eg_topic.stored() if e["id"] == event["id"]]
    assert stored["topic"] == eg_topic.id
    assert stored["data"] is None and stored["metadataVersion"] == "1"


def _event_of_size(size: int) -> list[dict[str, Any]]:
    """A one-event array whose JSON text is exactly ``size`` bytes."""
    event = eg_event(data="")
    overhead = len(json.dumps([event]).encode())
    event["data"] = "x" * (size - overhead)
    assert len(json.dumps([event]).encode()) == size
    return [event]


def test_request_of_exactly_1_mb_is_accepted(server: ServerProcess, admin: httpx.Client) -> None:
    topic = Topic(server, admin, "EventGridSchema")  # its own topic: later listings stay small
    body = _event_of_size(MB)
    response = topic.post(body)
    assert response.status_code == 200, response.text
    assert topic.stored() == [{**body[0], "topic": topic.id, "metadataVersion": "1"}]
    topic.close()


def test_event_over_1_mb_is_413(eg_topic: Topic) -> None:
    before = eg_topic.count()
    response = eg_topic.post(_event_of_size(MB + 1))
    error = rejected(eg_topic, response, 413, "1,048,576", code="PayloadTooLarge")
    assert error["details"], error
    assert eg_topic.count() == before


def test_request_over_1_mb_of_small_events_is_413(eg_topic: Topic) -> None:
    before = eg_topic.count()
    events = [eg_event(data="y" * 1_000) for _ in range(1_100)]
    rejected(eg_topic, eg_topic.post(events), 413, "bytes", code="PayloadTooLarge")
    assert eg_topic.count() == before


def test_chunked_request_over_1_mb_is_413(eg_topic: Topic) -> None:
    """No Content-Length: the limit is enforced while reading the stream."""
    before = eg_topic.count()
    payload = json.dumps(_event_of_size(MB + 10)).encode()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(payload), 65_536):
            yield payload[start : start + 65_536]

    response = eg_topic.client.post(
        eg_topic.path, content=chunks(), headers={"Content-Type": "application/json"}
    )
    rejected(eg_topic, response, 413, code="PayloadTooLarge")
    assert eg_topic.count() == before


def test_5000_events_are_accepted_and_5001_are_413(server: ServerProcess, admin: httpx.Client) -> None:
    eg_topic = Topic(server, admin, "EventGridSchema")  # its own topic: later listings stay small
    before = eg_topic.count()
    too_many = [
        {"id": f"n{i}-{new_name()}", "subject": "", "eventType": "T", "eventTime": "2024-01-01T00:00:00Z"}
        for i in range(5_001)
    ]
    error = rejected(eg_topic, eg_topic.post(too_many), 413, "5,001", "5,000", code="PayloadTooLarge")
    assert error["details"][0]["code"] == "TooManyEvents"
    assert eg_topic.count() == before
    response = eg_topic.post(too_many[:5_000])
    assert response.status_code == 200, response.text
    assert eg_topic.count() == before + 5_000
    eg_topic.close()


def test_idempotent_on_event_id(eg_topic: Topic) -> None:
    first = eg_event(data={"version": 1})
    again = {**first, "data": {"version": 2}}
    assert eg_topic.post([first, first]).status_code == 200
    assert eg_topic.post([again]).status_code == 200
    assert eg_topic.post([again, eg_event()]).status_code == 200
    stored = [e for e in eg_topic.stored() if e["id"] == first["id"]]
    assert len(stored) == 1
    assert stored[0]["data"] == {"version": 1}


def test_same_id_on_two_topics_is_two_events(
    server: ServerProcess, admin: httpx.Client, eg_topic: Topic
) -> None:
    other = Topic(server, admin, "EventGridSchema")
    event = eg_event()
    assert eg_topic.post([event]).status_code == 200
    assert other.post([event]).status_code == 200
    assert [e["id"] for e in other.stored()] == [event["id"]]
    other.close()


def test_long_values_and_exact_numbers_are_stored_exactly(eg_topic: Topic) -> None:
    """The longest id and event type accepted (256 characters), a long subject, and numbers
    that a binary float would change, read back digit for digit."""
    event_id, event_type, subject = "i" * 256, "T" * 256, "s/" * 2_000
    text = (
        f'[{{"id": "{event_id}", "subject": "{subject}", "eventType": "{event_type}", '
        f'"eventTime": "2024-05-01T12:00:00.1234567Z", '
        '"data": {"big": 9007199254740993, "exact": 0.30000000000000001, '
        '"huge": 123456789012345678901234567890}}]'
    )
    response = eg_topic.post(content=text)
    assert response.status_code == 200, response.text
    raw = eg_topic.admin.get(f"/topics/{eg_topic.name}/events", params={"eventType": event_type})
    assert b'"big":9007199254740993' in raw.content
    assert b'"exact":0.30000000000000001' in raw.content
    assert b'"huge":123456789012345678901234567890' in raw.content
    [stored] = raw.json()["value"]
    assert (stored["id"], stored["eventType"], stored["subject"]) == (event_id, event_type, subject)
    assert stored["eventTime"] == "2024-05-01T12:00:00.1234567Z"


@pytest.mark.parametrize(("field", "target"), [("id", "[0].id"), ("eventType", "[0].eventType")])
def test_id_and_event_type_over_256_characters_are_400(
    eg_topic: Topic, ce_topic: Topic, field: str, target: str
) -> None:
    before = eg_topic.count()
    rejected(eg_topic, eg_topic.post([eg_event(**{field: "x" * 257})]), 400, target, "256")
    assert eg_topic.count() == before
    ce_field = "type" if field == "eventType" else "id"
    before = ce_topic.count()
    response = ce_topic.post(
        [cloud_event(**{ce_field: "x" * 257})], content_type="application/cloudevents-batch+json"
    )
    rejected(ce_topic, response, 400, f"[0].{ce_field}", "256")
    assert ce_topic.count() == before


@pytest.mark.parametrize("field", ["id", "subject", "eventType"])
def test_nul_in_indexed_fields_is_400_and_in_data_is_kept(
    eg_topic: Topic, ce_topic: Topic, field: str
) -> None:
    """PostgreSQL text cannot hold U+0000: refused (400, both databases) where it would reach a
    column, kept exactly inside ``data``."""
    before = eg_topic.count()
    good = eg_event()
    response = eg_topic.post([good, eg_event(**{field: "a\u0000b"})])
    rejected(eg_topic, response, 400, f"[1].{field}", "U+0000")
    assert eg_topic.count() == before
    ce_field = {"eventType": "type"}.get(field, field)
    before = ce_topic.count()
    response = ce_topic.post(
        [cloud_event(**{ce_field: "x\u0000"})], content_type="application/cloudevents-batch+json"
    )
    rejected(ce_topic, response, 400, f"[0].{ce_field}", "U+0000")
    assert ce_topic.count() == before
    kept = eg_event(data={"text": "a\u0000b"})
    assert eg_topic.post([kept]).status_code == 200
    [stored] = [e for e in eg_topic.stored() if e["id"] == kept["id"]]
    assert stored["data"] == {"text": "a\u0000b"}


def test_unknown_topic_is_404(server: ServerProcess) -> None:
    name = new_name()
    response = httpx.post(
        f"{server.url}/topics/{name}/api/events", json=[eg_event()], headers={"aeg-sas-key": "a2V5"}
    )
    assert_error(response, 404, name, code="NotFound")
    response = httpx.post(
        f"{server.url}/topics/{name}:publish", json=cloud_event(), headers={"aeg-sas-key": "a2V5"}
    )
    assert_error(response, 404, name, code="NotFound")


def test_publishing_to_a_system_topic_is_forbidden(server: ServerProcess, admin: httpx.Client) -> None:
    workspace = new_name("ws")
    create_system_topic(server, workspace)
    paths = (f"/topics/{workspace}/api/events", f"/systemTopics/{workspace}/api/events",
             f"/systemTopics/{workspace}:publish")
    for path in paths:
        response = admin.post(path, json=[eg_event()])
        assert_error(response, 403, "system topic", code="Forbidden")
        anonymous = httpx.post(f"{server.url}{path}", json=[eg_event()])
        assert anonymous.status_code == 401, (path, anonymous.text)
    for path in (f"/systemTopics/nope{workspace}/api/events", f"/systemTopics/nope{workspace}:publish"):
        assert_error(admin.post(path, json=[eg_event()]), 404, f"nope{workspace}", code="NotFound")
    listed = admin.get(f"/systemTopics/{workspace}/events")
    assert listed.status_code == 200 and listed.json()["value"] == []


# --- namespace-style :publish -----------------------------------------------------------------


def test_namespace_publish_answers_json_object(ce_topic: Topic, eg_topic: Topic) -> None:
    for topic in (ce_topic, eg_topic):
        event = cloud_event()
        response = topic.post(
            event,
            content_type="application/cloudevents+json",
            path=f"/topics/{topic.name}:publish?api-version=2024-06-01",
        )
        assert response.status_code == 200, response.text
        assert response.json() == {}
        assert event["id"] in event_ids(topic.admin, topic.name)


def test_namespace_publish_on_event_grid_topic_wants_cloud_events(eg_topic: Topic) -> None:
    before = eg_topic.count()
    response = eg_topic.post(
        [eg_event()],
        content_type="application/cloudevents-batch+json",
        path=f"/topics/{eg_topic.name}:publish",
    )
    rejected(eg_topic, response, 400, "[0].")
    assert eg_topic.count() == before


# --- CloudEvents ------------------------------------------------------------------------------


def test_cloud_events_structured_batch_and_binary(ce_topic: Topic) -> None:
    single = cloud_event(subject="a/b", dataschema="https://schema.example/v1", traceparent="00-abc-01")
    assert (
        ce_topic.post(single, content_type="application/cloudevents+json; charset=utf-8").status_code == 200
    )
    batch = [cloud_event(), cloud_event(data_base64="AAECAw==", data=None), cloud_event(data=None)]
    assert ce_topic.post(batch, content_type="application/cloudevents-batch+json").status_code == 200
    plain_json = [cloud_event()]
    assert ce_topic.post(plain_json, content_type="application/json").status_code == 200
    binary = ce_topic.post(
        content=b"\x00\x01\x02raw",
        content_type="application/octet-stream",
        headers={
            "ce-specversion": "1.0",
            "ce-id": "bin-" + new_name(),
            "ce-source": "/bin",
            "ce-type": "Bin.Type",
            "ce-subject": "files%2Fone",
            "ce-myext": "v1",
        },
    )
    assert binary.status_code == 200, binary.text
    binary_json = ce_topic.post(
        content=b'{"x": 1.50}',
        content_type="application/json",
        headers={
            "ce-specversion": "1.0",
            "ce-id": "binj-" + new_name(),
            "ce-source": "/bin",
            "ce-type": "Bin.Json",
        },
    )
    assert binary_json.status_code == 200, binary_json.text

    stored = {e["id"]: e for e in ce_topic.stored()}
    assert stored[single["id"]] == single
    assert stored[batch[1]["id"]]["data_base64"] == "AAECAw==" and "data" not in stored[batch[1]["id"]]
    assert "data" not in stored[batch[2]["id"]]
    assert stored[plain_json[0]["id"]] == plain_json[0]
    [raw] = [e for e in stored.values() if e["type"] == "Bin.Type"]
    assert raw["data_base64"] == "AAECcmF3" and raw["datacontenttype"] == "application/octet-stream"
    assert raw["subject"] == "files/one" and raw["myext"] == "v1"
    [as_json] = [e for e in stored.values() if e["type"] == "Bin.Json"]
    assert as_json["data"] == {"x": 1.5} and as_json["datacontenttype"] == "application/json"


CE_BAD: list[tuple[str, Any, str, tuple[str, ...]]] = [
    (
        "batch with a bad one",
        [cloud_event(), {k: v for k, v in cloud_event().items() if k != "source"}],
        "application/cloudevents-batch+json",
        ("[1].source",),
    ),
    ("batch with a non-object", [cloud_event(), 7], "application/cloudevents-batch+json", ("[1]", "object")),
    (
        "wrong specversion",
        [cloud_event(specversion="0.3")],
        "application/cloudevents-batch+json",
        ("[0].specversion", '"1.0"'),
    ),
    (
        "missing specversion",
        [{k: v for k, v in cloud_event().items() if k != "specversion"}],
        "application/cloudevents-batch+json",
        ("[0].specversion",),
    ),
    (
        "type not a string",
        [cloud_event(type=3)],
        "application/cloudevents-batch+json",
        ("[0].type", "string"),
    ),
    ("empty id", [cloud_event("")], "application/cloudevents-batch+json", ("[0].id", "empty")),
    ("bad time", [cloud_event(time="noon")], "application/cloudevents-batch+json", ("[0].time",)),
    (
        "bad extension name",
        [cloud_event(**{"Bad-Name": "x"})],
        "application/cloudevents-batch+json",
        ("[0].Bad-Name", "lowercase"),
    ),
    ("object extension", [cloud_event(ext={"a": 1})], "application/cloudevents-batch+json", ("[0].ext",)),
    (
        "data and data_base64",
        [cloud_event(data_base64="AA==")],
        "application/cloudevents-batch+json",
        ("[0].data_base64", "mutually exclusive"),
    ),
    (
        "bad base64",
        [cloud_event(data=None, data_base64="***")],
        "application/cloudevents-batch+json",
        ("[0].data_base64", "base64"),
    ),
    ("structured array", [cloud_event()], "application/cloudevents+json", ("body", "one CloudEvent")),
    ("batch object", cloud_event(), "application/cloudevents-batch+json", ("body", "array")),
    ("event grid events", [eg_event()], "application/json", ("[0].specversion",)),
]


@pytest.mark.parametrize(("label", "body", "content_type", "fragments"), CE_BAD, ids=[c[0] for c in CE_BAD])
def test_cloud_events_bad_requests(
    ce_topic: Topic, label: str, body: Any, content_type: str, fragments: tuple[str, ...]
) -> None:
    before = ce_topic.count()
    rejected(ce_topic, ce_topic.post(body, content_type=content_type), 400, *fragments)
    assert ce_topic.count() == before


@pytest.mark.parametrize(
    ("label", "headers", "content", "status", "fragments"),
    [
        (
            "missing ce-id",
            {"ce-specversion": "1.0", "ce-source": "/s", "ce-type": "T"},
            b"x",
            400,
            ("ce-id",),
        ),
        (
            "bad ce-specversion",
            {"ce-specversion": "2.0", "ce-id": "i", "ce-source": "/s", "ce-type": "T"},
            b"x",
            400,
            ("ce-specversion",),
        ),
        (
            "bad json data",
            {
                "ce-specversion": "1.0",
                "ce-id": "i",
                "ce-source": "/s",
                "ce-type": "T",
                "Content-Type": "application/json",
            },
            b"{nope",
            400,
            ("not valid JSON",),
        ),
        ("no ce headers", {"Content-Type": "text/plain"}, b"hello", 415, ("Content-Type",)),
    ],
)
def test_cloud_events_binary_bad_requests(
    ce_topic: Topic,
    label: str,
    headers: dict[str, str],
    content: bytes,
    status: int,
    fragments: tuple[str, ...],
) -> None:
    before = ce_topic.count()
    headers = dict(headers)  # the parameter is shared by both backends' runs
    content_type = headers.pop("Content-Type", "text/plain")
    response = ce_topic.post(content=content, content_type=content_type, headers=headers)
    rejected(ce_topic, response, status, *fragments)
    assert ce_topic.count() == before


# --- custom input schema ----------------------------------------------------------------------


def _order(order_id: str, **fields: Any) -> dict[str, Any]:
    order: dict[str, Any] = {
        "orderId": order_id,
        "kind": "Shop.OrderPlaced",
        "meta": {"when": "2024-05-01T10:00:00+02:00", "path": f"orders/{order_id}"},
        "total": 12.5,
    }
    order.update(fields)
    return order


def test_custom_schema_mapping(custom_topic: Topic) -> None:
    mapped = _order("o-" + new_name())
    defaulted = {k: v for k, v in _order("d-" + new_name()).items() if k != "kind"}
    assert custom_topic.post([mapped, defaulted]).status_code == 200
    single = _order("s-" + new_name())
    assert custom_topic.post(single).status_code == 200

    stored = {e["id"]: e for e in custom_topic.stored()}
    assert stored[mapped["orderId"]] == {
        "id": mapped["orderId"],
        "topic": custom_topic.id,
        "subject": f"orders/{mapped['orderId']}",
        "eventType": "Shop.OrderPlaced",
        "eventTime": "2024-05-01T10:00:00+02:00",
        "data": mapped,
        "dataVersion": "7.0",
        "metadataVersion": "1",
    }
    assert stored[defaulted["orderId"]]["eventType"] == "Shop.Default"
    assert stored[single["orderId"]]["data"] == single


CUSTOM_BAD: list[tuple[str, Any, tuple[str, ...]]] = [
    (
        "missing mapped id",
        {k: v for k, v in _order("x").items() if k != "orderId"},
        ("[1].orderId", "missing"),
    ),
    ("mapped id not a string", _order(5), ("[1].orderId", "string")),
    ("missing nested time", _order("x", meta={"path": "p"}), ("[1].meta.when",)),
    ("bad time", _order("x", meta={"when": "soon", "path": "p"}), ("[1].meta.when", "ISO 8601")),
    (
        "subject not a string",
        _order("x", meta={"when": "2024-05-01T10:00:00Z", "path": 1}),
        ("[1].meta.path",),
    ),
    ("not an object", ["x"], ("[1]", "object")),
]


@pytest.mark.parametrize(("label", "bad", "fragments"), CUSTOM_BAD, ids=[c[0] for c in CUSTOM_BAD])
def test_custom_schema_bad_event_among_good_ones(
    custom_topic: Topic, label: str, bad: Any, fragments: tuple[str, ...]
) -> None:
    before = custom_topic.count()
    good = _order("g-" + new_name())
    rejected(custom_topic, custom_topic.post([good, bad]), 400, *fragments)
    assert custom_topic.count() == before


def test_custom_schema_refuses_cloud_events_content_type(custom_topic: Topic) -> None:
    before = custom_topic.count()
    response = custom_topic.post([_order("c")], content_type="application/cloudevents-batch+json")
    rejected(custom_topic, response, 400, code="InputSchemaMismatch")
    assert custom_topic.count() == before
