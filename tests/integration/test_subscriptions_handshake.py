"""The webhook validation handshake of SPEC §4.1 against a real receiver on loopback.

Synchronous (validationResponse), manual (GET on the validationUrl), every way of failing
(nothing is created or changed), the CloudEvents OPTIONS consent, and the endpoint-safety
rule; plus servers started with ``--deny-private-endpoints`` and ``--no-webhook-validation``.
The manual window's expiry is tested with an injected clock in
``test_subscriptions_service_clock.py``.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.broker_db import delivered_event_ids
from tests.support.receiver import Receiver, Reply, validation_codes
from tests.support.server import ServerProcess


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture(scope="module")
def server(sqlite_server: ServerProcess) -> ServerProcess:
    """The handshake does not depend on the database (the manual path's storage is covered on
    both databases in test_subscriptions_service_clock.py): one SQLite server is enough."""
    return sqlite_server


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def new_name(prefix: str = "s") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def make_topic(client: httpx.Client, schema: str = "EventGridSchema") -> str:
    name = new_name("t")
    assert client.put(f"/topics/{name}", json={"properties": {"inputSchema": schema}}).status_code == 201
    return name


def webhook(url: str, **properties: Any) -> dict[str, Any]:
    return {
        "properties": {
            "destination": {"endpointType": "WebHook", "properties": {"endpointUrl": url}},
            **properties,
        }
    }


def publish(client: httpx.Client, topic: str, *ids: str) -> None:
    events = [
        {
            "id": i,
            "eventType": "Test.Event",
            "subject": "a/b",
            "eventTime": "2026-01-01T00:00:00Z",
            "data": {},
            "dataVersion": "1",
        }
        for i in ids
    ]
    response = client.post(f"/topics/{topic}/api/events", json=events)
    assert response.status_code == 200, response.text


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_synchronous_handshake(client: httpx.Client, receiver: Receiver) -> None:
    topic = make_topic(client)
    sub = new_name()
    response = client.put(
        f"/topics/{topic}/eventSubscriptions/{sub}", json=webhook(receiver.endpoint(f"/{sub}"))
    )
    assert response.status_code == 201
    assert response.json()["properties"]["provisioningState"] == "Succeeded"
    [request] = receiver.validations(f"/{sub}")
    [(code, url)] = validation_codes([request])
    assert url.endswith(f"&code={code}")


def test_manual_handshake(server: ServerProcess, client: httpx.Client, receiver: Receiver) -> None:
    topic = make_topic(client)
    sub = new_name()
    receiver.configure(f"/{sub}", validation="manual")
    path = f"/topics/{topic}/eventSubscriptions/{sub}"
    response = client.put(path, json=webhook(receiver.endpoint(f"/{sub}")))
    assert response.status_code == 201, response.text
    assert response.json()["properties"]["provisioningState"] == "AwaitingManualAction"
    [(code, validation_url)] = validation_codes(receiver.validations(f"/{sub}"))

    # Not validated yet: events do not match it.
    publish(client, topic, "before")
    assert delivered_event_ids(server, topic, sub) == []

    # The URL is the credential: a wrong code is a 404 and changes nothing.
    assert httpx.get(validation_url.replace(code, str(uuid.uuid4()))).status_code == 404
    assert client.get(path).json()["properties"]["provisioningState"] == "AwaitingManualAction"

    answer = httpx.get(validation_url)  # no Authorization header
    assert answer.status_code == 200, answer.text
    assert answer.json()["provisioningState"] == "Succeeded"
    assert client.get(path).json()["properties"]["provisioningState"] == "Succeeded"
    assert httpx.get(validation_url).status_code == 200  # visiting twice is harmless

    publish(client, topic, "after")
    assert delivered_event_ids(server, topic, sub) == ["after"]


@pytest.mark.parametrize(
    ("case", "behaviour"),
    [
        ("500", Reply(500)),
        ("404", Reply(404)),
        ("202 with the code", None),
        ("redirect", Reply(307, headers={"Location": "http://127.0.0.1:9/elsewhere"})),
        ("wrong code", "wrong"),
    ],
)
def test_failed_handshake_creates_nothing(
    client: httpx.Client, receiver: Receiver, case: str, behaviour: Reply | str | None
) -> None:
    topic = make_topic(client)
    sub = new_name()
    if behaviour is None:
        receiver.handler = lambda r: (
            Reply(202, {"validationResponse": r.events()[0]["data"]["validationCode"]})
            if r.path == f"/{sub}"
            else None
        )
    else:
        receiver.configure(f"/{sub}", validation=behaviour)
    try:
        response = client.put(
            f"/topics/{topic}/eventSubscriptions/{sub}", json=webhook(receiver.endpoint(f"/{sub}"))
        )
    finally:
        receiver.handler = None
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "WebhookValidationFailed"
    assert len(receiver.validations(f"/{sub}")) == 1
    assert client.get(f"/topics/{topic}/eventSubscriptions/{sub}").status_code == 404
    assert receiver.requests("/elsewhere") == []


def test_unreachable_endpoint_fails_validation(client: httpx.Client) -> None:
    topic = make_topic(client)
    sub = new_name()
    url = f"http://127.0.0.1:{closed_port()}/hook"
    response = client.put(f"/topics/{topic}/eventSubscriptions/{sub}", json=webhook(url))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "WebhookValidationFailed"
    assert client.get(f"/topics/{topic}/eventSubscriptions/{sub}").status_code == 404


def test_failed_handshake_on_update_changes_nothing(client: httpx.Client, receiver: Receiver) -> None:
    topic = make_topic(client)
    sub = new_name()
    path = f"/topics/{topic}/eventSubscriptions/{sub}"
    created = client.put(path, json=webhook(receiver.endpoint(f"/{sub}"))).json()
    receiver.configure(f"/{sub}-bad", validation=Reply(403))
    for method in ("PUT", "PATCH"):
        response = client.request(method, path, json=webhook(receiver.endpoint(f"/{sub}-bad")))
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "WebhookValidationFailed"
    assert client.get(path).json() == created


def test_cloud_events_consent(client: httpx.Client, receiver: Receiver) -> None:
    topic = make_topic(client, "CloudEventSchemaV1_0")
    for behaviour in ("echo", "*"):
        sub = new_name()
        receiver.configure(f"/{sub}", options=behaviour)
        response = client.put(
            f"/topics/{topic}/eventSubscriptions/{sub}", json=webhook(receiver.endpoint(f"/{sub}"))
        )
        assert response.status_code == 201, response.text
        assert response.json()["properties"]["provisioningState"] == "Succeeded"
        [request] = receiver.requests(f"/{sub}")
        assert request.method == "OPTIONS"
        assert request.header("webhook-request-origin") == "127.0.0.1"


@pytest.mark.parametrize(
    "behaviour",
    [
        "refuse",
        Reply(200, headers={"WebHook-Allowed-Origin": "someone-else.example"}),
        Reply(405),
        Reply(500),
    ],
    ids=["no header", "other origin", "405", "500"],
)
def test_cloud_events_refusal_creates_nothing(
    client: httpx.Client, receiver: Receiver, behaviour: Any
) -> None:
    topic = make_topic(client, "CloudEventSchemaV1_0")
    sub = new_name()
    receiver.configure(f"/{sub}", options=behaviour)
    response = client.put(
        f"/topics/{topic}/eventSubscriptions/{sub}", json=webhook(receiver.endpoint(f"/{sub}"))
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "WebhookValidationFailed"
    assert client.get(f"/topics/{topic}/eventSubscriptions/{sub}").status_code == 404


def test_cloud_events_delivery_from_an_event_grid_topic_uses_options(
    client: httpx.Client, receiver: Receiver
) -> None:
    topic = make_topic(client)
    sub = new_name()
    body = webhook(receiver.endpoint(f"/{sub}"), eventDeliverySchema="CloudEventSchemaV1_0")
    assert client.put(f"/topics/{topic}/eventSubscriptions/{sub}", json=body).status_code == 201
    assert [r.method for r in receiver.requests(f"/{sub}")] == ["OPTIONS"]
    # Switching the delivery schema changes the handshake kind: validated again, by POST.
    body["properties"]["eventDeliverySchema"] = "EventGridSchema"
    assert client.put(f"/topics/{topic}/eventSubscriptions/{sub}", json=body).status_code == 200
    assert [r.method for r in receiver.requests(f"/{sub}")] == ["OPTIONS", "POST"]


@pytest.mark.parametrize("host", ["169.254.169.254", "[::ffff:169.254.169.254]", "metadata.google.internal"])
def test_metadata_endpoints_are_refused(client: httpx.Client, host: str) -> None:
    topic = make_topic(client)
    response = client.put(
        f"/topics/{topic}/eventSubscriptions/{new_name()}", json=webhook(f"http://{host}/x")
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["target"] == "properties.destination.properties.endpointUrl"


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server that refuses private endpoints and skips the handshake (SQLite)."""
    data_dir: Path = tmp_path_factory.mktemp("subscriptions-strict")
    server = ServerProcess(
        data_dir=data_dir, extra_args=["--deny-private-endpoints", "--no-webhook-validation"]
    )
    try:
        yield server.start()
    finally:
        server.stop()


def test_deny_private_endpoints(strict_server: ServerProcess, receiver: Receiver) -> None:
    with strict_server.client() as c:
        topic = make_topic(c)
        for url in (
            receiver.endpoint("/private"),
            f"http://localhost:{receiver.port}/private",
            "http://10.1.2.3/x",
            "http://192.168.1.1/x",
            "http://[::1]/x",
        ):
            response = c.put(f"/topics/{topic}/eventSubscriptions/{new_name()}", json=webhook(url))
            assert response.status_code == 400, (url, response.text)
            target = response.json()["error"]["details"][0]["target"]
            assert target == "properties.destination.properties.endpointUrl"
    assert receiver.requests("/private") == []


def test_validation_can_be_turned_off(strict_server: ServerProcess) -> None:
    # With the handshake off nothing contacts the endpoint, so a name that resolves nowhere works.
    with strict_server.client() as c:
        topic = make_topic(c)
        sub = new_name()
        response = c.put(
            f"/topics/{topic}/eventSubscriptions/{sub}", json=webhook("https://hook.example.invalid/x")
        )
        assert response.status_code == 201, response.text
        assert response.json()["properties"]["provisioningState"] == "Succeeded"
