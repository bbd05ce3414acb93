"""Routing at ingest follows the subscription resources (SPEC §4, §5; issue 3 items 3 and 4).

After a subscription is created, a published event that matches it produces a delivery row
in the same commit; updates and deletes take effect without a restart; expired
subscriptions stop matching at once and are then deleted; a restart reloads the router;
and (PostgreSQL) a second node sharing the database sees the first node's changes.

Delivery rows are read through the store (``tests/support/broker_db.py``), so these tests
do not depend on the dispatcher.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.broker_db import delivered_event_ids, deliveries_of, subscription_row
from tests.support.fixtures import http_client_fixture, receiver_fixture  # noqa: F401 (pytest fixtures)
from tests.support.receiver import Receiver
from tests.support.server import ServerProcess

REGISTERED = "Microsoft.MachineLearningServices.ModelRegistered"


def new_name(prefix: str = "s") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def make_topic(client: httpx.Client) -> str:
    name = new_name("t")
    assert client.put(f"/topics/{name}", json={}).status_code == 201
    return name


def seed_subscription(url: str) -> dict[str, Any]:
    """The seed's subscription: ModelRegistered with data.ModelTags.key1 StringIn value1."""
    return {
        "properties": {
            "destination": {"endpointType": "WebHook", "properties": {"endpointUrl": url}},
            "filter": {
                "includedEventTypes": [REGISTERED],
                "advancedFilters": [
                    {"operatorType": "StringIn", "key": "data.ModelTags.key1", "values": ["value1"]}
                ],
            },
        }
    }


def model_registered(event_id: str, tag: str, name: str = "churn") -> dict[str, Any]:
    return {
        "id": event_id,
        "eventType": REGISTERED,
        "subject": f"models/{name}:1",
        "eventTime": "2026-01-01T00:00:00Z",
        "data": {"ModelName": name, "ModelVersion": "1", "ModelTags": {"key1": tag}, "ModelProperties": {}},
        "dataVersion": "",
    }


def publish(client: httpx.Client, topic: str, *events: dict[str, Any]) -> None:
    response = client.post(f"/topics/{topic}/api/events", json=list(events))
    assert response.status_code == 200, response.text


def test_published_events_are_routed_by_the_subscription_filter(
    server: ServerProcess, client: httpx.Client, receiver: Receiver
) -> None:
    topic = make_topic(client)
    sub, other = new_name(), new_name()
    client.put(
        f"/topics/{topic}/eventSubscriptions/{sub}", json=seed_subscription(receiver.endpoint(f"/{sub}"))
    )
    client.put(
        f"/topics/{topic}/eventSubscriptions/{other}",
        json={
            "properties": {
                "destination": {"endpointType": "Queue"},
                "filter": {"subjectBeginsWith": "models/fraud"},
            }
        },
    )
    publish(
        client,
        topic,
        model_registered("e1", "value1"),
        model_registered("e2", "VALUE1"),  # StringIn is case-insensitive
        model_registered("e3", "value2"),
        model_registered("e4", "value1", name="fraud"),
        {**model_registered("e5", "value1"), "eventType": "Microsoft.MachineLearningServices.RunCompleted"},
    )
    assert delivered_event_ids(server, topic, sub) == ["e1", "e2", "e4"]
    assert delivered_event_ids(server, topic, other) == ["e4"]


def test_updates_and_deletes_take_effect_without_a_restart(
    server: ServerProcess, client: httpx.Client, receiver: Receiver
) -> None:
    topic = make_topic(client)
    sub = new_name()
    path = f"/topics/{topic}/eventSubscriptions/{sub}"
    body = seed_subscription(receiver.endpoint(f"/{sub}"))
    assert client.put(path, json=body).status_code == 201
    publish(client, topic, model_registered("a1", "value1"), model_registered("a2", "value2"))
    assert delivered_event_ids(server, topic, sub) == ["a1"]

    changed = copy.deepcopy(body)
    changed["properties"]["filter"]["advancedFilters"][0]["values"] = ["value2"]
    assert client.put(path, json=changed).status_code == 200
    publish(client, topic, model_registered("b1", "value1"), model_registered("b2", "value2"))
    assert delivered_event_ids(server, topic, sub) == ["a1", "b2"]

    patch = {"properties": {"filter": {"includedEventTypes": ["Other.Type"]}}}
    assert client.patch(path, json=patch).status_code == 200
    publish(client, topic, model_registered("c1", "value2"))
    assert delivered_event_ids(server, topic, sub) == ["a1", "b2"]

    row = subscription_row(server, topic, sub)
    assert row is not None
    assert client.delete(path).status_code == 204
    publish(client, topic, {**model_registered("d1", "value2"), "eventType": "Other.Type"})
    assert [event_id for _, event_id, _ in deliveries_of(server, row.id)] == ["a1", "b2"]


def test_subscriptions_awaiting_validation_do_not_match(
    server: ServerProcess, client: httpx.Client, receiver: Receiver
) -> None:
    topic = make_topic(client)
    sub = new_name()
    receiver.configure(f"/{sub}", validation="manual")
    created = client.put(
        f"/topics/{topic}/eventSubscriptions/{sub}", json=seed_subscription(receiver.endpoint(f"/{sub}"))
    )
    assert created.json()["properties"]["provisioningState"] == "AwaitingManualAction"
    publish(client, topic, model_registered("m1", "value1"))
    assert delivered_event_ids(server, topic, sub) == []


def test_expired_subscriptions_stop_matching_and_are_deleted(
    server: ServerProcess, client: httpx.Client, receiver: Receiver
) -> None:
    topic = make_topic(client)
    sub = new_name()
    path = f"/topics/{topic}/eventSubscriptions/{sub}"
    expires = datetime.now(UTC) + timedelta(seconds=2)
    body = seed_subscription(receiver.endpoint(f"/{sub}"))
    body["properties"]["expirationTimeUtc"] = expires.isoformat()
    created = client.put(path, json=body)
    assert created.status_code == 201, created.text
    assert created.json()["properties"]["expirationTimeUtc"].endswith("Z")
    row = subscription_row(server, topic, sub)
    assert row is not None
    publish(client, topic, model_registered("x1", "value1"))
    assert delivered_event_ids(server, topic, sub) == ["x1"]

    while datetime.now(UTC) <= expires + timedelta(milliseconds=50):
        time.sleep(0.05)
    publish(client, topic, model_registered("x2", "value1"))
    assert [event_id for _, event_id, _ in deliveries_of(server, row.id)] == ["x1"]

    deadline = time.monotonic() + 20
    while client.get(path).status_code != 404:
        assert time.monotonic() < deadline, "the expired subscription was not deleted"
        time.sleep(0.2)


def test_a_restart_reloads_the_router(
    server: ServerProcess, client: httpx.Client, receiver: Receiver
) -> None:
    topic = make_topic(client)
    sub = new_name()
    client.put(
        f"/topics/{topic}/eventSubscriptions/{sub}", json=seed_subscription(receiver.endpoint(f"/{sub}"))
    )
    server.restart()
    with server.client() as fresh:
        publish(fresh, topic, model_registered("r1", "value1"))
    assert delivered_event_ids(server, topic, sub) == ["r1"]


@pytest.fixture
def second_node(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Another server on the same PostgreSQL database, sharing the first one's secret key."""
    if not server.database_url:
        pytest.skip("several nodes share PostgreSQL only")
    data_dir: Path = tmp_path_factory.mktemp("second-node")
    key = (server.data_dir / "secret.key").read_text().strip()
    node = ServerProcess(
        data_dir=data_dir,
        database_url=server.database_url,
        env={"MLGRID_SECRET_KEY": key},
        extra_args=["--retry-schedule", "0.2,0.4,0.8"],
    )
    try:
        yield node.start()
    finally:
        node.stop()


def test_a_second_node_sees_changes_made_on_the_first(
    server: ServerProcess, second_node: ServerProcess, receiver: Receiver
) -> None:
    token = server.admin_token  # the admin principal lives in the shared database
    first = server.client()
    other = httpx.Client(base_url=second_node.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    with first, other:
        topic = make_topic(first)
        sub = new_name()
        path = f"/topics/{topic}/eventSubscriptions/{sub}"
        assert first.put(path, json=seed_subscription(receiver.endpoint(f"/{sub}"))).status_code == 201
        row = subscription_row(server, topic, sub)
        assert row is not None

        def routed() -> int:
            return len(deliveries_of(server, row.id))

        # The second node picks the new subscription up within its refresh interval.
        attempt = 0
        deadline = time.monotonic() + 15
        while routed() == 0:
            assert time.monotonic() < deadline, "the second node never routed to the new subscription"
            attempt += 1
            publish(other, topic, model_registered(f"n{attempt}", "value1"))
            time.sleep(0.2)

        # ...and drops it within the same interval after it is deleted on the first node.
        assert first.delete(path).status_code == 204
        deadline = time.monotonic() + 15
        while True:
            before = routed()
            attempt += 1
            publish(other, topic, model_registered(f"n{attempt}", "value1"))
            if routed() == before:
                break
            assert time.monotonic() < deadline, "the second node kept routing to a deleted subscription"
            time.sleep(0.2)
