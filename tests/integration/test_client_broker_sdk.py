"""The broker SDK against a real server: paging, the tail cursor, deliveries and replay."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from tests.support.server import ServerProcess

from mlgrid.client import ApiError, Client


@pytest.fixture(scope="module")
def client(sqlite_server: ServerProcess) -> Iterator[Client]:
    with Client(sqlite_server.url, sqlite_server.admin_token) as sdk:
        yield sdk


@pytest.fixture
def topic(client: Client) -> str:
    name = "t" + uuid.uuid4().hex[:10]
    client.topics.create(name)
    return name


def events(prefix: str, count: int) -> list[dict[str, str]]:
    return [{"id": f"{prefix}{i}", "eventType": "Shop.A", "subject": f"s/{i}"} for i in range(count)]


def test_list_follows_next_links(client: Client, topic: str) -> None:
    client.events.publish(topic, events("e", 7))
    listed = list(client.events.list(topic, page_size=2))
    assert [e["id"] for e in listed] == [f"e{i}" for i in range(7)]
    assert [e["id"] for e in client.events.list(f"/topics/{topic}", event_type="SHOP.A", page_size=3)] == [
        f"e{i}" for i in range(7)
    ]


def test_tail_yields_each_event_once_across_pages_and_polls(client: Client, topic: str) -> None:
    client.events.publish(topic, events("old", 5))
    seen: list[str] = []
    started = threading.Event()

    def publish_more() -> None:
        started.wait(30)
        for batch in range(3):
            client.events.publish(topic, events(f"new{batch}-", 3))

    worker = threading.Thread(target=publish_more, daemon=True)
    worker.start()
    for event in client.events.tail(topic, since="2000-01-01T00:00:00Z", page_size=2, poll_interval=0.05,
                                    timeout=60, max_events=14):
        seen.append(event["id"])
        started.set()
    worker.join(30)
    expected = [f"old{i}" for i in range(5)] + [f"new{b}-{i}" for b in range(3) for i in range(3)]
    assert seen == expected


def test_subscription_deliveries_and_replay(client: Client, topic: str) -> None:
    client.subscriptions.create(topic, "pull-sub", {"destination": {"endpointType": "Queue"}})
    client.events.publish(topic, events("d", 3))
    pending = client.subscriptions.deliveries(topic, "pull-sub", state="pending")
    assert sorted(d["eventId"] for d in pending) == ["d0", "d1", "d2"]
    assert client.subscriptions.dead_letters(topic, "pull-sub") == []
    replayed = client.subscriptions.replay(topic, "pull-sub", "2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z")
    assert replayed["replayedEvents"] == 3
    assert len(client.subscriptions.deliveries(topic, "pull-sub")) == 6
    until_now = client.subscriptions.replay(topic, "pull-sub", "2000-01-01T00:00:00Z")  # no end: now
    assert until_now["replayedEvents"] == 3
    assert abs(datetime.fromisoformat(until_now["to"]) - datetime.now(UTC)) < timedelta(minutes=1)
    assert len(client.subscriptions.deliveries(topic, "pull-sub")) == 9
    assert [s["name"] for s in client.subscriptions.list(topic)] == ["pull-sub"]
    client.subscriptions.delete(topic, "pull-sub")
    with pytest.raises(ApiError) as info:
        client.subscriptions.get(topic, "pull-sub")
    assert info.value.status == 404


def test_sources_that_name_no_topic_fail_before_any_request(client: Client) -> None:
    with pytest.raises(ValueError, match="not a topic name"):
        client.subscriptions.list("/queues/q1")
    with pytest.raises(ValueError, match="custom topics"):
        client.events.publish("/workspaces/ws1", events("x", 1))
    with pytest.raises(ValueError, match="not a custom topic"):
        client.topics.get("/workspaces/ws1")
