"""Bodies exactly as the official azure-eventgrid SDK sends them are accepted.

The SDK clients run with an in-memory transport that records each request and answers 200,
so the bytes, the Content-Type and the path are the SDK's own, with no network involved.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from azure.core.credentials import AzureKeyCredential
from azure.core.messaging import CloudEvent
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest._http_response_impl import HttpResponseImpl
from azure.eventgrid import EventGridEvent, EventGridPublisherClient

# The public EventGridPublisherClient builds this class for classic (non-namespace) topics but
# does not forward a transport to it, so the test builds it directly with the same arguments.
from azure.eventgrid._legacy import EventGridPublisherClient as ClassicPublisherClient

from mlgrid.domain.schemas import EventSchema
from mlgrid.events.publish import parse_publish_body
from mlgrid.events.schemas import parse_input_schema_mapping

TOPIC = (
    "/subscriptions/0b5c1c9e-8c5d-4a36-9a39-5f3b7a0b4d11/resourceGroups/default"
    "/providers/Microsoft.EventGrid/topics/t1"
)
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
KEY = AzureKeyCredential(base64.b64encode(b"k" * 32).decode())


@dataclass
class Sent:
    url: str
    headers: dict[str, str]
    body: bytes


class RecordingTransport(HttpTransport):  # type: ignore[misc]
    """Records every request and answers ``200 {}`` like mlgrid's publish endpoints."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []

    def __enter__(self) -> RecordingTransport:
        return self

    def __exit__(self, *args: object) -> None:
        return None

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None

    def send(self, request: Any, **kwargs: Any) -> Any:
        content = getattr(request, "content", None)
        if content is None:
            content = request.body
        body = content.encode("utf-8") if isinstance(content, str) else bytes(content)
        self.sent.append(Sent(request.url, dict(request.headers.items()), body))
        response = HttpResponseImpl(
            request=request,
            internal_response=None,
            status_code=200,
            reason="OK",
            content_type="application/json",
            headers={"Content-Type": "application/json"},
            stream_download_generator=None,
        )
        response._content = b"{}"
        response._is_closed = True
        return response


@pytest.fixture
def transport() -> Iterator[RecordingTransport]:
    yield RecordingTransport()


def classic(transport: RecordingTransport) -> Any:
    return ClassicPublisherClient("http://127.0.0.1:8780/topics/t1/api/events", KEY, transport=transport)


def namespace(transport: RecordingTransport) -> Any:
    return EventGridPublisherClient("http://127.0.0.1:8780", KEY, namespace_topic="t1", transport=transport)


def receive(sent: Sent, input_schema: str, mapping: Any = None) -> list[dict[str, Any]]:
    content_type = next((v for k, v in sent.headers.items() if k.lower() == "content-type"), None)
    return parse_publish_body(
        sent.body,
        content_type,
        sent.headers,
        input_schema=input_schema,
        mapping=mapping,
        topic_id=TOPIC,
        now=NOW,
    )


def test_classic_eventgrid_events(transport: RecordingTransport) -> None:
    events = [
        EventGridEvent(
            subject="models/m:1", event_type="Contoso.A", data={"score": 0.1, "n": 2**70}, data_version="1.0"
        ),
        EventGridEvent(
            subject="s",
            event_type="Contoso.B",
            data=[1, "x"],
            data_version="",
            id="fixed-id",
            event_time=datetime(2024, 5, 1, 10, 0, tzinfo=UTC),
            topic=TOPIC,
        ),
    ]
    classic(transport).send(events)
    [sent] = transport.sent
    assert sent.url.startswith("http://127.0.0.1:8780/topics/t1/api/events?api-version=")
    assert sent.headers["Content-Type"] == "application/json; charset=utf-8"
    first, second = receive(sent, EventSchema.EVENT_GRID)
    assert first["id"] == str(events[0].id)
    assert first["subject"] == "models/m:1"
    assert first["eventType"] == "Contoso.A"
    assert first["data"] == {"score": Decimal("0.1"), "n": 2**70}
    assert first["dataVersion"] == "1.0"
    assert first["topic"] == TOPIC
    assert second["id"] == "fixed-id"
    assert second["data"] == [1, "x"]
    assert second["eventTime"].startswith("2024-05-01T10:00:00")


def test_classic_eventgrid_event_without_data(transport: RecordingTransport) -> None:
    # The SDK leaves "data" out of the body when it is None: data must be optional.
    classic(transport).send(EventGridEvent(subject="s", event_type="t", data=None, data_version=""))
    assert b'"data"' not in transport.sent[0].body
    [stored] = receive(transport.sent[0], EventSchema.EVENT_GRID)
    assert stored["data"] is None


def test_classic_eventgrid_dict(transport: RecordingTransport) -> None:
    event = {
        "id": "d1",
        "subject": "s",
        "eventType": "t",
        "eventTime": "2024-05-01T10:00:00Z",
        "data": {"x": 1},
        "dataVersion": "2",
    }
    classic(transport).send([event])
    [stored] = receive(transport.sent[0], EventSchema.EVENT_GRID)
    assert stored == dict(event, topic=TOPIC, metadataVersion="1")


def test_classic_custom_schema(transport: RecordingTransport) -> None:
    mapping = parse_input_schema_mapping(
        {"properties": {"id": {"sourceField": "ref"}, "eventType": {"sourceField": "kind"}}}
    )
    classic(transport).send([{"ref": "c1", "kind": "Contoso.Custom", "price": 2.5}])
    [stored] = receive(transport.sent[0], EventSchema.CUSTOM_EVENT, mapping)
    assert stored["id"] == "c1"
    assert stored["eventType"] == "Contoso.Custom"
    assert stored["data"] == {"ref": "c1", "kind": "Contoso.Custom", "price": Decimal("2.5")}


def test_classic_cloudevents(transport: RecordingTransport) -> None:
    events = [
        CloudEvent(source="/contoso", type="Contoso.A", data={"a": 1.25}, subject="things/1"),
        CloudEvent(
            source="/contoso",
            type="Contoso.B",
            data=b"\x00\x01raw",
            datacontenttype="application/octet-stream",
            dataschema="https://schemas.example/b",
            extensions={"tenant": "blue", "priority": 3},
        ),
    ]
    classic(transport).send(events)
    [sent] = transport.sent
    assert sent.headers["Content-Type"] == "application/cloudevents-batch+json; charset=utf-8"
    first, second = receive(sent, EventSchema.CLOUD_EVENTS)
    assert first["id"] == events[0].id
    assert first["source"] == "/contoso"
    assert first["type"] == "Contoso.A"
    assert first["subject"] == "things/1"
    assert first["data"] == {"a": Decimal("1.25")}
    assert "time" in first
    assert base64.b64decode(second["data_base64"]) == b"\x00\x01raw"
    assert second["tenant"] == "blue"
    assert second["priority"] == 3
    assert second["dataschema"] == "https://schemas.example/b"


def test_namespace_cloudevents(transport: RecordingTransport) -> None:
    client = namespace(transport)
    client.send(CloudEvent(source="/contoso", type="Contoso.Single", data={"one": 1}))
    client.send([CloudEvent(source="/contoso", type="Contoso.Many", data=b"bytes") for _ in range(3)])
    client.send({"id": "x1", "source": "/s", "type": "t", "specversion": "1.0", "data": {"q": 2}})
    single, many, from_dict = transport.sent
    assert single.url.startswith("http://127.0.0.1:8780/topics/t1:publish?api-version=")
    assert single.headers["content-type"] == "application/cloudevents-batch+json; charset=utf-8"
    assert receive(single, EventSchema.CLOUD_EVENTS)[0]["data"] == {"one": 1}
    decoded = [base64.b64decode(e["data_base64"]) for e in receive(many, EventSchema.CLOUD_EVENTS)]
    assert decoded == [b"bytes"] * 3
    assert receive(from_dict, EventSchema.CLOUD_EVENTS) == [
        {"specversion": "1.0", "id": "x1", "source": "/s", "type": "t", "data": {"q": 2}}
    ]


def test_stored_events_read_back_with_the_sdk(transport: RecordingTransport) -> None:
    classic(transport).send([EventGridEvent(subject="s", event_type="t", data={"k": "v"}, data_version="1")])
    [stored] = receive(transport.sent[0], EventSchema.EVENT_GRID)
    parsed = EventGridEvent.from_dict(stored)
    assert parsed.subject == "s"
    assert parsed.data == {"k": "v"}
    assert parsed.metadata_version == "1"
