"""Every validation error of SPEC §4: a 400 naming the field, and nothing created or changed.

Table-driven: each case takes a valid body, breaks one thing, and names the field path the
error must point at (in ``error.message`` and ``error.details[0].target``).
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from tests.support.receiver import Receiver
from tests.support.server import ServerProcess

DEST = "properties.destination.properties"
URL_FIELD = f"{DEST}.endpointUrl"
MAPPINGS = f"{DEST}.deliveryAttributeMappings"

Body = dict[str, Any]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture(scope="module")
def client(sqlite_server: ServerProcess) -> Iterator[httpx.Client]:
    with sqlite_server.client() as c:
        yield c


@pytest.fixture(scope="module")
def topic(client: httpx.Client) -> str:
    name = "t" + uuid.uuid4().hex[:10]
    assert client.put(f"/topics/{name}", json={}).status_code == 201
    return name


def valid_body(url: str) -> Body:
    return {
        "properties": {
            "destination": {
                "endpointType": "WebHook",
                "properties": {
                    "endpointUrl": url,
                    "deliveryAttributeMappings": [
                        {"name": "X-Team", "type": "Static", "properties": {"value": "ml", "isSecret": False}}
                    ],
                },
            },
            "filter": {
                "includedEventTypes": ["Microsoft.MachineLearningServices.ModelRegistered"],
                "advancedFilters": [
                    {"operatorType": "StringIn", "key": "data.ModelTags.key1", "values": ["value1"]}
                ],
            },
            "retryPolicy": {"maxDeliveryAttempts": 30, "eventTimeToLiveInMinutes": 1440},
            "deadLetterDestination": {
                "endpointType": "StorageBlob",
                "properties": {"blobContainerName": "dead"},
            },
            "labels": ["a"],
        }
    }


def _set(path: str, value: Any) -> Callable[[Body], None]:
    """A mutation that sets ``properties.x.y`` (dots; ``[i]`` indexes lists) to ``value``."""

    def mutate(body: Body) -> None:
        target: Any = body
        parts = path.replace("[", ".[").split(".")
        for part in parts[:-1]:
            target = target[int(part[1:-1])] if part.startswith("[") else target.setdefault(part, {})
        last = parts[-1]
        if last.startswith("["):
            target[int(last[1:-1])] = value
        else:
            target[last] = value

    return mutate


def _delete(path: str) -> Callable[[Body], None]:
    def mutate(body: Body) -> None:
        target: Any = body
        parts = path.split(".")
        for part in parts[:-1]:
            target = target[part]
        del target[parts[-1]]

    return mutate


def _destination(endpoint_type: str, **props: Any) -> Callable[[Body], None]:
    return _set("properties.destination", {"endpointType": endpoint_type, "properties": props})


def _mappings(items: list[Any]) -> Callable[[Body], None]:
    return _set(MAPPINGS, items)


def _static(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "type": "Static", "properties": {"value": value, "isSecret": False}}


PAST = (datetime.now(UTC) - timedelta(hours=1)).isoformat()

CASES: list[tuple[str, Callable[[Body], None], str]] = [
    # the envelope
    ("unknown top-level member", _set("bogus", 1), "bogus"),
    ("unknown property", _set("properties.bogus", 1), "properties.bogus"),
    ("properties not an object", _set("properties", [1]), "properties"),
    ("destination missing", _delete("properties.destination"), "properties.destination"),
    ("destination not an object", _set("properties.destination", "x"), "properties.destination"),
    (
        "endpointType missing",
        _delete("properties.destination.endpointType"),
        "properties.destination.endpointType",
    ),
    (
        "endpointType unknown",
        _set("properties.destination.endpointType", "EventHub"),
        "properties.destination.endpointType",
    ),
    ("unknown destination property", _set(f"{DEST}.bogus", 1), f"{DEST}.bogus"),
    # WebHook endpoint
    ("endpointUrl missing", _delete(f"{DEST}.endpointUrl"), URL_FIELD),
    ("endpointUrl not a string", _set(f"{DEST}.endpointUrl", 5), URL_FIELD),
    ("endpointUrl not http", _set(f"{DEST}.endpointUrl", "ftp://example.org/x"), URL_FIELD),
    ("endpointUrl without host", _set(f"{DEST}.endpointUrl", "http:///x"), URL_FIELD),
    ("endpointUrl with credentials", _set(f"{DEST}.endpointUrl", "http://u:p@127.0.0.1/x"), URL_FIELD),
    ("endpointUrl cloud metadata", _set(f"{DEST}.endpointUrl", "http://169.254.169.254/latest"), URL_FIELD),
    ("endpointUrl link-local", _set(f"{DEST}.endpointUrl", "http://[fe80::1]/x"), URL_FIELD),
    ("signingSecret malformed", _set(f"{DEST}.signingSecret", "not-a-secret"), f"{DEST}.signingSecret"),
    ("signingSecret too short", _set(f"{DEST}.signingSecret", "whsec_c2hvcnQ="), f"{DEST}.signingSecret"),
    # batching ranges
    ("maxEventsPerBatch 0", _set(f"{DEST}.maxEventsPerBatch", 0), f"{DEST}.maxEventsPerBatch"),
    ("maxEventsPerBatch 5001", _set(f"{DEST}.maxEventsPerBatch", 5001), f"{DEST}.maxEventsPerBatch"),
    ("maxEventsPerBatch string", _set(f"{DEST}.maxEventsPerBatch", "10"), f"{DEST}.maxEventsPerBatch"),
    ("maxEventsPerBatch fraction", _set(f"{DEST}.maxEventsPerBatch", 1.5), f"{DEST}.maxEventsPerBatch"),
    ("maxEventsPerBatch boolean", _set(f"{DEST}.maxEventsPerBatch", True), f"{DEST}.maxEventsPerBatch"),
    (
        "preferredBatchSizeInKilobytes 0",
        _set(f"{DEST}.preferredBatchSizeInKilobytes", 0),
        f"{DEST}.preferredBatchSizeInKilobytes",
    ),
    (
        "preferredBatchSizeInKilobytes 1025",
        _set(f"{DEST}.preferredBatchSizeInKilobytes", 1025),
        f"{DEST}.preferredBatchSizeInKilobytes",
    ),
    # retry policy
    (
        "maxDeliveryAttempts 0",
        _set("properties.retryPolicy.maxDeliveryAttempts", 0),
        "properties.retryPolicy.maxDeliveryAttempts",
    ),
    (
        "maxDeliveryAttempts 31",
        _set("properties.retryPolicy.maxDeliveryAttempts", 31),
        "properties.retryPolicy.maxDeliveryAttempts",
    ),
    (
        "eventTimeToLiveInMinutes 0",
        _set("properties.retryPolicy.eventTimeToLiveInMinutes", 0),
        "properties.retryPolicy.eventTimeToLiveInMinutes",
    ),
    (
        "eventTimeToLiveInMinutes 1441",
        _set("properties.retryPolicy.eventTimeToLiveInMinutes", 1441),
        "properties.retryPolicy.eventTimeToLiveInMinutes",
    ),
    (
        "retryPolicy unknown member",
        _set("properties.retryPolicy.maxRetries", 3),
        "properties.retryPolicy.maxRetries",
    ),
    # delivery attribute mappings
    ("11 mappings", _mappings([_static(f"X-H{i}", "v") for i in range(11)]), MAPPINGS),
    (
        "header value over 4096 bytes",
        _mappings([_static("X-Big", "é" * 2049)]),
        f"{MAPPINGS}[0].properties.value",
    ),
    ("header name aeg-", _mappings([_static("aeg-custom", "v")]), f"{MAPPINGS}[0].name"),
    ("header name AEG- any case", _mappings([_static("AEG-Custom", "v")]), f"{MAPPINGS}[0].name"),
    (
        "mapping type unknown",
        _mappings([{"name": "X-A", "type": "Other", "properties": {}}]),
        f"{MAPPINGS}[0].type",
    ),
    (
        "dynamic without sourceField",
        _mappings([{"name": "X-A", "type": "Dynamic", "properties": {}}]),
        f"{MAPPINGS}[0].properties.sourceField",
    ),
    ("mappings not an array", _mappings({"name": "X"}), MAPPINGS),  # type: ignore[arg-type]
    # Queue
    (
        "receiveLockDurationInSeconds 59",
        _destination("Queue", receiveLockDurationInSeconds=59),
        f"{DEST}.receiveLockDurationInSeconds",
    ),
    (
        "receiveLockDurationInSeconds 301",
        _destination("Queue", receiveLockDurationInSeconds=301),
        f"{DEST}.receiveLockDurationInSeconds",
    ),
    ("maxDeliveryCount 0", _destination("Queue", maxDeliveryCount=0), f"{DEST}.maxDeliveryCount"),
    ("maxDeliveryCount 11", _destination("Queue", maxDeliveryCount=11), f"{DEST}.maxDeliveryCount"),
    (
        "Queue with a webhook property",
        _destination("Queue", endpointUrl="http://127.0.0.1/x"),
        f"{DEST}.endpointUrl",
    ),
    # RedisStream, NatsJetStream, RabbitMQ
    ("RedisStream without url", _destination("RedisStream", stream="s"), f"{DEST}.url"),
    (
        "RedisStream bad scheme",
        _destination("RedisStream", url="http://127.0.0.1", stream="s"),
        f"{DEST}.url",
    ),
    ("RedisStream without stream", _destination("RedisStream", url="redis://127.0.0.1"), f"{DEST}.stream"),
    (
        "NatsJetStream without subject",
        _destination("NatsJetStream", url="nats://127.0.0.1"),
        f"{DEST}.subject",
    ),
    (
        "NatsJetStream wildcard subject",
        _destination("NatsJetStream", url="nats://127.0.0.1", subject="a.*"),
        f"{DEST}.subject",
    ),
    (
        "RabbitMQ without exchange",
        _destination("RabbitMQ", url="amqp://127.0.0.1", routingKey="k"),
        f"{DEST}.exchange",
    ),
    (
        "RabbitMQ routingKey not a string",
        _destination("RabbitMQ", url="amqp://127.0.0.1", exchange="x", routingKey=5),
        f"{DEST}.routingKey",
    ),
    (
        "RabbitMQ exchange with a space",
        _destination("RabbitMQ", url="amqp://127.0.0.1", exchange="a b", routingKey="k"),
        f"{DEST}.exchange",
    ),
    (
        "RabbitMQ bad scheme",
        _destination("RabbitMQ", url="redis://127.0.0.1", exchange="x", routingKey="k"),
        f"{DEST}.url",
    ),
    # dead-letter destination
    (
        "dead-letter endpointType",
        _set("properties.deadLetterDestination.endpointType", "WebHook"),
        "properties.deadLetterDestination.endpointType",
    ),
    *[
        (
            f"container name {name!r}",
            _set("properties.deadLetterDestination.properties.blobContainerName", name),
            "properties.deadLetterDestination.properties.blobContainerName",
        )
        for name in ("ab", "Dead", "-dead", "dead-", "de--ad", "d" * 64, "dead_letters", 42)
    ],
    # expiration, labels, delivery schema
    (
        "expirationTimeUtc not a date",
        _set("properties.expirationTimeUtc", "next tuesday"),
        "properties.expirationTimeUtc",
    ),
    (
        "expirationTimeUtc in the past",
        _set("properties.expirationTimeUtc", PAST),
        "properties.expirationTimeUtc",
    ),
    ("labels not an array", _set("properties.labels", "a"), "properties.labels"),
    ("label not a string", _set("properties.labels", ["a", 1]), "properties.labels[1]"),
    (
        "eventDeliverySchema unknown",
        _set("properties.eventDeliverySchema", "Avro"),
        "properties.eventDeliverySchema",
    ),
    (
        "CustomInputSchema on an Event Grid topic",
        _set("properties.eventDeliverySchema", "CustomInputSchema"),
        "properties.eventDeliverySchema",
    ),
    # filters (limits of SPEC §4/§5)
    (
        "26 advanced filters",
        _set(
            "properties.filter.advancedFilters",
            [{"operatorType": "IsNotNull", "key": f"data.k{i}"} for i in range(26)],
        ),
        "properties.filter.advancedFilters",
    ),
    (
        "26 values in total",
        _set(
            "properties.filter.advancedFilters",
            [
                {"operatorType": "StringIn", "key": "data.a", "values": [str(i) for i in range(13)]},
                {"operatorType": "StringIn", "key": "data.b", "values": [str(i) for i in range(13)]},
            ],
        ),
        "properties.filter.advancedFilters",
    ),
    (
        "string value of 513 characters",
        _set(
            "properties.filter.advancedFilters",
            [{"operatorType": "StringIn", "key": "data.a", "values": ["x" * 513]}],
        ),
        "properties.filter.advancedFilters[0].values[0]",
    ),
    (
        "unknown operator",
        _set(
            "properties.filter.advancedFilters",
            [{"operatorType": "StringLike", "key": "data.a", "values": ["x"]}],
        ),
        "properties.filter.advancedFilters[0].operatorType",
    ),
    (
        "unknown filter member",
        _set("properties.filter.subjectContains", "x"),
        "properties.filter.subjectContains",
    ),
]


@pytest.mark.parametrize(("case", "mutate", "field"), CASES, ids=[c[0] for c in CASES])
def test_invalid_body_is_a_400_naming_the_field_and_creates_nothing(
    client: httpx.Client,
    receiver: Receiver,
    topic: str,
    case: str,
    mutate: Callable[[Body], None],
    field: str,
) -> None:
    name = "s" + uuid.uuid4().hex[:10]
    body = valid_body(receiver.endpoint(f"/{name}"))
    mutate(body)
    response = client.put(f"/topics/{topic}/eventSubscriptions/{name}", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert field in error["message"], error
    assert error["details"][0]["target"] == field, error
    assert client.get(f"/topics/{topic}/eventSubscriptions/{name}").status_code == 404
    assert receiver.requests(f"/{name}") == []


# An update may leave the destination out (PATCH keeps it); every other broken property fails.
UPDATE_CASES = [c for c in CASES if c[2].startswith("properties") and c[0] != "destination missing"]


@pytest.mark.parametrize(("case", "mutate", "field"), UPDATE_CASES, ids=[c[0] for c in UPDATE_CASES])
def test_invalid_update_is_a_400_and_changes_nothing(
    client: httpx.Client,
    receiver: Receiver,
    topic: str,
    case: str,
    mutate: Callable[[Body], None],
    field: str,
) -> None:
    name = "s" + uuid.uuid4().hex[:10]
    good = valid_body(receiver.endpoint(f"/{name}"))
    created = client.put(f"/topics/{topic}/eventSubscriptions/{name}", json=good)
    assert created.status_code == 201, created.text
    bad = copy.deepcopy(good)
    mutate(bad)
    for method in ("PUT", "PATCH"):
        response = client.request(method, f"/topics/{topic}/eventSubscriptions/{name}", json=bad)
        assert response.status_code == 400, (method, response.text)
        assert response.json()["error"]["details"][0]["target"] == field
    assert client.get(f"/topics/{topic}/eventSubscriptions/{name}").json() == created.json()
    assert len(receiver.requests(f"/{name}")) == 1  # only the handshake of the creation


@pytest.mark.parametrize("name", ["ab", "a" * 65, "has.dot", "has space", "ünïcode"])
def test_invalid_subscription_name(client: httpx.Client, receiver: Receiver, topic: str, name: str) -> None:
    response = client.put(
        f"/topics/{topic}/eventSubscriptions/{name}", json=valid_body(receiver.endpoint("/n"))
    )
    assert response.status_code in (400, 404), response.text
    if response.status_code == 400:
        assert response.json()["error"]["details"][0]["target"] == "eventSubscriptionName"


def test_body_must_be_a_json_object(client: httpx.Client, topic: str) -> None:
    path = f"/topics/{topic}/eventSubscriptions/s{uuid.uuid4().hex[:8]}"
    response = client.put(path, json=[1, 2])
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["target"] == "body"
    response = client.put(path, content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    response = client.put(path)
    assert response.status_code == 400


def test_at_most_500_subscriptions_per_topic(client: httpx.Client) -> None:
    topic = "t" + uuid.uuid4().hex[:10]
    assert client.put(f"/topics/{topic}", json={}).status_code == 201
    queue = {"properties": {"destination": {"endpointType": "Queue"}}}
    for i in range(500):
        response = client.put(f"/topics/{topic}/eventSubscriptions/sub{i:03d}", json=queue)
        assert response.status_code == 201, response.text
    response = client.put(f"/topics/{topic}/eventSubscriptions/sub500", json=queue)
    assert response.status_code == 400
    assert "500" in response.json()["error"]["message"]
    assert client.get(f"/topics/{topic}/eventSubscriptions/sub500").status_code == 404
    # Replacing an existing one is still allowed at the limit.
    assert client.put(f"/topics/{topic}/eventSubscriptions/sub000", json=queue).status_code == 200
    assert client.delete(f"/topics/{topic}/eventSubscriptions/sub001").status_code == 204
    assert client.put(f"/topics/{topic}/eventSubscriptions/sub500", json=queue).status_code == 201
