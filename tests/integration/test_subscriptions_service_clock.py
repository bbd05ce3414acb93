"""The subscription service in-process with an injected clock, on real SQLite and PostgreSQL.

What depends on time is tested here without waiting for it: the 5-minute window of a manual
validation (visited in time, visited too late, swept), expiry (stops matching at the expiry
instant, then deleted with the ``on_deleted`` listeners told), and two service instances on
one database standing for two nodes (``refresh``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.support.receiver import Receiver, validation_codes

from mlgrid.auth.secretbox import SecretBox, new_key
from mlgrid.broker.routing import Router
from mlgrid.broker.subscriptions import SubscriptionService
from mlgrid.broker.topics import Topic, TopicService, parse_topic_body
from mlgrid.broker.webhook_validation import MANUAL_VALIDATION_WINDOW
from mlgrid.config import Settings
from mlgrid.domain.subscription import Subscription
from mlgrid.errors import BadRequest, NotFound
from mlgrid.store import migrate
from mlgrid.store.database import Database

EVENT_GRID = "EventGridSchema"


class Clock:
    """A settable clock shared by the service and its router."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Node:
    service: SubscriptionService
    router: Router


@dataclass
class World:
    db: Database
    clock: Clock
    topic: Topic
    receiver: Receiver
    make_node: Callable[[], Node]


@pytest.fixture
async def world(database_url: str, tmp_path: Path) -> AsyncIterator[World]:
    clock = Clock()
    settings = Settings(data_dir=tmp_path, database_url=database_url, public_url="http://127.0.0.1:9")
    db = Database.connect(settings.resolved_database_url)
    await migrate.upgrade(db)
    box = SecretBox(new_key())
    topics = TopicService(db, settings, box, "00000000-0000-0000-0000-000000000000", clock=clock)
    topic, _ = await topics.put("t" + uuid.uuid4().hex[:10], parse_topic_body({}))

    def make_node() -> Node:
        router = Router(clock=lambda: clock().timestamp())
        return Node(SubscriptionService(db, settings, box, topics, router, clock=clock), router)

    with Receiver() as receiver:
        try:
            yield World(db, clock, topic, receiver, make_node)
        finally:
            await db.close()


def webhook(url: str, **properties: Any) -> dict[str, Any]:
    return {
        "properties": {
            "destination": {"endpointType": "WebHook", "properties": {"endpointUrl": url}},
            **properties,
        }
    }


def event(event_id: str = "e1") -> dict[str, Any]:
    return {
        "id": event_id,
        "eventType": "Test.Event",
        "subject": "a/b",
        "data": {},
        "dataVersion": "",
        "eventTime": "2026-01-01T00:00:00Z",
    }


async def manual_subscription(world: World, node: Node) -> tuple[str, str, str]:
    """A subscription left AwaitingManualAction; returns (name, id, code)."""
    name = "s" + uuid.uuid4().hex[:10]
    world.receiver.configure(f"/{name}", validation="manual")
    resource, created = await node.service.put(
        world.topic, name, webhook(world.receiver.endpoint(f"/{name}"))
    )
    assert created
    assert resource["properties"]["provisioningState"] == "AwaitingManualAction"
    [(code, url)] = validation_codes(world.receiver.validations(f"/{name}"))
    subscription_id = url.split("id=")[1].split("&")[0]
    return name, subscription_id, code


async def test_manual_validation_within_the_window(world: World) -> None:
    node = world.make_node()
    name, subscription_id, code = await manual_subscription(world, node)
    assert node.router.match(world.topic.key, event(), EVENT_GRID) == []
    world.clock.advance(seconds=MANUAL_VALIDATION_WINDOW.total_seconds() - 1)
    result = await node.service.confirm_manual_validation(subscription_id, code)
    assert result["provisioningState"] == "Succeeded"
    assert (await node.service.get(world.topic, name))["properties"]["provisioningState"] == "Succeeded"
    assert node.router.match(world.topic.key, event(), EVENT_GRID) == [subscription_id]


async def test_manual_validation_after_the_window_fails_the_subscription(world: World) -> None:
    node = world.make_node()
    name, subscription_id, code = await manual_subscription(world, node)
    world.clock.advance(seconds=MANUAL_VALIDATION_WINDOW.total_seconds() + 1)
    with pytest.raises(BadRequest) as raised:
        await node.service.confirm_manual_validation(subscription_id, code)
    assert raised.value.code == "ValidationExpired"
    assert (await node.service.get(world.topic, name))["properties"]["provisioningState"] == "Failed"
    assert node.router.match(world.topic.key, event(), EVENT_GRID) == []
    with pytest.raises(BadRequest):
        await node.service.confirm_manual_validation(subscription_id, code)


async def test_wrong_code_or_id_is_not_found(world: World) -> None:
    node = world.make_node()
    _, subscription_id, code = await manual_subscription(world, node)
    with pytest.raises(NotFound):
        await node.service.confirm_manual_validation(subscription_id, code + "x")
    with pytest.raises(NotFound):
        await node.service.confirm_manual_validation(str(uuid.uuid4()), code)


async def test_the_sweeper_fails_stale_manual_validations(world: World) -> None:
    node = world.make_node()
    name, _, _ = await manual_subscription(world, node)
    due = await node.service.sweep()  # the window's end is the next moment to look
    window_end = (world.clock.now + MANUAL_VALIDATION_WINDOW).timestamp()
    assert due is not None and world.clock.now.timestamp() < due <= window_end
    assert (await node.service.get(world.topic, name))["properties"][
        "provisioningState"
    ] == "AwaitingManualAction"
    world.clock.advance(minutes=5, seconds=1)
    await node.service.sweep()
    assert (await node.service.get(world.topic, name))["properties"]["provisioningState"] == "Failed"


async def test_a_new_endpoint_restarts_validation(world: World) -> None:
    node = world.make_node()
    name, subscription_id, _ = await manual_subscription(world, node)
    world.clock.advance(minutes=10)
    await node.service.sweep()
    # Updating the subscription runs a new handshake, which this endpoint answers at once.
    resource, created = await node.service.put(
        world.topic, name, webhook(world.receiver.endpoint(f"/{name}-ok"))
    )
    assert not created
    assert resource["properties"]["provisioningState"] == "Succeeded"
    assert node.router.match(world.topic.key, event(), EVENT_GRID) == [subscription_id]


async def test_expired_subscriptions_stop_matching_then_are_deleted(world: World) -> None:
    node = world.make_node()
    deleted: list[Subscription] = []

    async def listener(sub: Subscription) -> None:
        deleted.append(sub)

    node.service.on_deleted.append(listener)
    name = "s" + uuid.uuid4().hex[:10]
    expires = world.clock.now + timedelta(minutes=1)
    await node.service.put(
        world.topic, name, webhook(world.receiver.endpoint(f"/{name}"), expirationTimeUtc=expires.isoformat())
    )
    sub = await node.service.find(world.topic, name)
    assert sub.expires_at == expires
    assert node.router.match(world.topic.key, event(), EVENT_GRID) == [sub.id]

    # The sweeper learns when to look next: at the latest at this expiry, not every few seconds.
    due = await node.service.sweep()
    assert due is not None and world.clock.now.timestamp() < due <= expires.timestamp()
    world.clock.advance(minutes=1)  # the expiry instant itself: no longer matching
    assert node.router.match(world.topic.key, event(), EVENT_GRID) == []
    assert deleted == []
    await node.service.sweep()
    assert [d.id for d in deleted] == [sub.id]
    with pytest.raises(NotFound):
        await node.service.get(world.topic, name)
    assert await node.service.get_by_id(sub.id) is None


async def test_refresh_follows_another_node(world: World) -> None:
    first, second = world.make_node(), world.make_node()
    await second.service.load_into_router()
    name = "s" + uuid.uuid4().hex[:10]
    await first.service.put(world.topic, name, webhook(world.receiver.endpoint(f"/{name}")))
    sub = await first.service.find(world.topic, name)
    assert second.router.match(world.topic.key, event(), EVENT_GRID) == []
    # A cache miss on the second node reads the database (what the dispatcher relies on).
    found = await second.service.get_by_id(sub.id)
    assert found is not None and found.endpoint_url == sub.endpoint_url

    world.clock.advance(seconds=1)
    await second.service.refresh()
    assert second.router.match(world.topic.key, event(), EVENT_GRID) == [sub.id]

    filtered = webhook(world.receiver.endpoint(f"/{name}"), filter={"includedEventTypes": ["Other.Type"]})
    world.clock.advance(seconds=1)
    await first.service.put(world.topic, name, filtered)
    await second.service.refresh()
    assert second.router.match(world.topic.key, event(), EVENT_GRID) == []
    assert (await second.service.get_by_id(sub.id)) == (await first.service.get_by_id(sub.id))

    world.clock.advance(seconds=1)
    await first.service.put(world.topic, name, webhook(world.receiver.endpoint(f"/{name}")))
    await second.service.refresh()
    assert second.router.match(world.topic.key, event(), EVENT_GRID) == [sub.id]
    await first.service.delete(world.topic, name)
    await second.service.refresh()
    assert second.router.match(world.topic.key, event(), EVENT_GRID) == []
    assert second.service.cached(sub.id) is None


async def test_dropping_a_topic_forgets_its_subscriptions(world: World) -> None:
    node = world.make_node()
    deleted: list[str] = []

    async def listener(sub: Subscription) -> None:
        deleted.append(sub.id)

    node.service.on_deleted.append(listener)
    name = "s" + uuid.uuid4().hex[:10]
    await node.service.put(world.topic, name, {"properties": {"destination": {"endpointType": "Queue"}}})
    sub = await node.service.find(world.topic, name)
    node.service.drop_topic(world.topic.key)
    assert node.router.match(world.topic.key, event(), EVENT_GRID) == []
    assert node.service.cached(sub.id) is None
    await asyncio.sleep(0)  # the listeners are told from a task (the topic hook is synchronous)
    assert deleted == [sub.id]
    await node.service.close()
