"""The credentials the official ``azure-eventgrid`` clients really send are recognised and accepted.

The clients run with a transport that records the request instead of sending it, so this stays
a unit test (no sockets) while exercising the SDK's own authentication policies.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from azure.core.credentials import AzureKeyCredential, AzureSasCredential
from azure.core.messaging import CloudEvent
from azure.core.pipeline.transport import HttpTransport
from azure.eventgrid import EventGridConsumerClient, EventGridEvent, EventGridPublisherClient, generate_sas

# The public publisher wraps this class for classic topics but drops the ``transport`` argument,
# so the classic cases build it directly; its credential policies are the ones the public one uses.
from azure.eventgrid._legacy import EventGridPublisherClient as ClassicPublisherClient

from mlgrid.auth.credentials import KeyCredential, SasCredential, key_matches, parse_publish_credentials
from mlgrid.auth.sas import verify_sas
from mlgrid.auth.tokens import new_topic_key

KEY1 = new_topic_key()
KEY2 = new_topic_key()
BASE = "http://127.0.0.1:8780"


class _Sent(Exception):
    """Raised by the recording transport once the request is captured."""


class _RecordingTransport(HttpTransport):  # type: ignore[type-arg]
    def __init__(self) -> None:
        self.request: Any = None

    def __enter__(self) -> _RecordingTransport:
        return self

    def __exit__(self, *args: object) -> None:
        return None

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None

    def send(self, request: Any, **kwargs: Any) -> Any:
        self.request = request
        raise _Sent


def _capture(call: Callable[[_RecordingTransport], object]) -> tuple[dict[str, str], dict[str, str]]:
    transport = _RecordingTransport()
    with pytest.raises(_Sent):
        call(transport)
    request = transport.request
    return dict(request.headers), dict(parse_qsl(urlsplit(request.url).query))


def _event() -> EventGridEvent:
    return EventGridEvent(subject="s", event_type="t", data={}, data_version="1")


def test_classic_publisher_with_key() -> None:
    def call(transport: _RecordingTransport) -> object:
        client = ClassicPublisherClient(
            f"{BASE}/topics/t1/api/events", AzureKeyCredential(KEY2), transport=transport
        )
        return client.send([_event()])

    credential = parse_publish_credentials(*_capture(call))
    assert isinstance(credential, KeyCredential)
    assert key_matches(credential.key, KEY1, KEY2)


def test_classic_publisher_with_sas() -> None:
    token = generate_sas(f"{BASE}/topics/t1/api/events", KEY1, datetime.now(UTC) + timedelta(hours=1))

    def call(transport: _RecordingTransport) -> object:
        client = ClassicPublisherClient(
            f"{BASE}/topics/t1/api/events", AzureSasCredential(token), transport=transport
        )
        return client.send([_event()])

    credential = parse_publish_credentials(*_capture(call))
    assert isinstance(credential, SasCredential)
    verify_sas(credential.token, KEY1, KEY2, "/topics/t1", datetime.now(UTC))


def test_namespace_publisher_with_key() -> None:
    def call(transport: _RecordingTransport) -> object:
        client = EventGridPublisherClient(
            BASE, AzureKeyCredential(KEY1), namespace_topic="t1", transport=transport
        )
        return client.send([CloudEvent(source="/s", type="t", data={})])

    headers, query = _capture(call)
    assert headers["Authorization"] == f"SharedAccessKey {KEY1}"
    credential = parse_publish_credentials(headers, query)
    assert credential == KeyCredential(KEY1, source="Authorization: SharedAccessKey")
    assert key_matches(credential.key, KEY1, KEY2)


def test_consumer_client_with_key() -> None:
    def call(transport: _RecordingTransport) -> object:
        client = EventGridConsumerClient(
            BASE,
            AzureKeyCredential(KEY1),
            namespace_topic="t1",
            subscription="s1",
            transport=transport,
        )
        return client.receive(max_events=1)

    credential = parse_publish_credentials(*_capture(call))
    assert isinstance(credential, KeyCredential)
    assert key_matches(credential.key, KEY1, KEY2)
