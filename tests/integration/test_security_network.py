"""Network defaults (docs/security.md) under both binds: a server that listens on a non-loopback
address refuses loopback and private webhook endpoints and guards /metrics unless told
otherwise; one that listens on loopback allows both. The validation handshake carries the
delivery attribute headers, as events do (an endpoint guarded by a static key must be able to
answer it); the private-endpoint rule is what keeps them from internal services."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.receiver import Receiver
from tests.support.server import ServerProcess

ENDPOINT_FIELD = "properties.destination.properties.endpointUrl"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def _server(tmp_path_factory: pytest.TempPathFactory, name: str, *args: str) -> Iterator[ServerProcess]:
    data_dir: Path = tmp_path_factory.mktemp(name)
    server = ServerProcess(data_dir=data_dir, extra_args=list(args))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Listens on every address (reached here through 127.0.0.1), with the defaults."""
    yield from _server(tmp_path_factory, "exposed", "--host", "0.0.0.0")


@pytest.fixture(scope="module")
def exposed_but_allowed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from _server(
        tmp_path_factory, "exposed-allowed",
        "--host", "0.0.0.0", "--allow-private-endpoints", "--metrics-open",
    )


def _subscribe(server: ServerProcess, url: str, **destination: Any) -> httpx.Response:
    name = "t" + uuid.uuid4().hex[:10]
    with server.client() as c:
        assert c.put(f"/topics/{name}", json={"properties": {}}).status_code == 201
        body = {"properties": {"destination": {
            "endpointType": "WebHook", "properties": {"endpointUrl": url, **destination}}}}
        return c.put(f"/topics/{name}/eventSubscriptions/s-{name}", json=body)


def test_an_exposed_server_refuses_private_endpoints_by_default(
    exposed: ServerProcess, receiver: Receiver
) -> None:
    for url in (receiver.endpoint("/exposed"), f"http://localhost:{receiver.port}/exposed",
                "http://10.1.2.3/x", "http://[::1]/x", f"http://127.0.0.1:{exposed.port}/principals/x"):
        response = _subscribe(exposed, url)
        assert response.status_code == 400, (url, response.text)
        detail = response.json()["error"]["details"][0]
        assert detail["target"] == ENDPOINT_FIELD and "private endpoints are denied" in detail["message"]
    assert receiver.requests("/exposed") == []


def test_an_exposed_server_may_allow_them_explicitly(
    exposed_but_allowed: ServerProcess, receiver: Receiver
) -> None:
    response = _subscribe(exposed_but_allowed, receiver.endpoint("/allowed"))
    assert response.status_code == 201, response.text
    assert len(receiver.validations("/allowed")) == 1


def test_a_loopback_server_allows_private_endpoints_by_default(
    sqlite_server: ServerProcess, receiver: Receiver
) -> None:
    response = _subscribe(sqlite_server, receiver.endpoint("/loopback"))
    assert response.status_code == 201, response.text


def test_the_handshake_carries_the_delivery_attribute_headers_as_events_do(
    sqlite_server: ServerProcess, receiver: Receiver
) -> None:
    mappings = [
        {"name": "X-Api-Key", "type": "Static", "properties": {"value": "internal-secret", "isSecret": True}},
        {"name": "X-Team", "type": "Static", "properties": {"value": "ml", "isSecret": False}},
    ]
    name = "t" + uuid.uuid4().hex[:10]
    with sqlite_server.client() as c:
        assert c.put(f"/topics/{name}", json={"properties": {}}).status_code == 201
        body = {"properties": {"destination": {"endpointType": "WebHook", "properties": {
            "endpointUrl": receiver.endpoint(f"/{name}"), "deliveryAttributeMappings": mappings}}}}
        assert c.put(f"/topics/{name}/eventSubscriptions/sub1", json=body).status_code == 201
        [validation] = receiver.validations(f"/{name}")
        assert validation.header("x-api-key") == "internal-secret" and validation.header("x-team") == "ml"
        key = c.post(f"/topics/{name}/listKeys").json()["key1"]
    event = {"id": "e1", "subject": "s", "eventType": "t", "eventTime": "2026-01-01T00:00:00Z",
             "data": {}, "dataVersion": "1"}
    answer = httpx.post(f"{sqlite_server.url}/topics/{name}/api/events", json=[event],
                        headers={"aeg-sas-key": key})
    assert answer.status_code == 200, answer.text
    receiver.wait_for_events(1, path=f"/{name}")
    [notification] = receiver.notifications(f"/{name}")
    assert notification.header("x-api-key") == "internal-secret" and notification.header("x-team") == "ml"


def test_metrics_need_a_token_on_an_exposed_server(
    exposed: ServerProcess, exposed_but_allowed: ServerProcess, sqlite_server: ServerProcess
) -> None:
    anonymous = httpx.get(f"{exposed.url}/metrics")
    assert anonymous.status_code == 401
    with exposed.client() as c:
        assert c.get("/metrics").status_code == 200
    assert httpx.get(f"{exposed_but_allowed.url}/metrics").status_code == 200  # --metrics-open
    assert httpx.get(f"{sqlite_server.url}/metrics").status_code == 200  # loopback: open
