"""The RedisStream destination against the real Redis on 127.0.0.1:6379 (SPEC §4)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from tests.support.queue_destinations import (
    REGISTERED,
    SilentServer,
    TcpProxy,
    attempt,
    closed_port,
    cloud_event,
    create_subscription,
    deliveries,
    eventgrid_event,
    make_topic,
    model_registered,
    publish,
    subscription_for,
    wait_until,
)
from tests.support.server import ServerProcess
from tests.support.services import need_redis

from mlgrid.delivery.outcome import OutcomeName
from mlgrid.delivery.queue_destinations.redis_stream import RedisStreamDestination
from mlgrid.events.jsoncodec import dumps

pytestmark = pytest.mark.redis

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def redis_admin() -> AsyncIterator[Redis]:
    need_redis()
    client = Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def stream(redis_admin: Redis) -> AsyncIterator[str]:
    """A unique stream key, deleted after the test."""
    key = f"mlgrid-test-{uuid.uuid4().hex}"
    try:
        yield key
    finally:
        await redis_admin.delete(key)


@pytest.fixture
async def destination() -> AsyncIterator[RedisStreamDestination]:
    dest = RedisStreamDestination(deny_private=False, timeout=5.0)
    try:
        yield dest
    finally:
        await dest.close()


def _decoded(fields: dict[bytes, bytes]) -> dict[str, str]:
    return {key.decode(): value.decode() for key, value in fields.items()}


async def test_event_becomes_one_stream_entry_with_metadata(
    destination: RedisStreamDestination, redis_admin: Redis, stream: str
) -> None:
    event = eventgrid_event(1)
    sub = subscription_for("RedisStream", {"url": REDIS_URL, "stream": stream}, name="models-to-redis")

    outcome = await destination.send(sub, [event], attempt(delivery_count=2))

    assert outcome.succeeded, outcome
    entries = await redis_admin.xrange(stream)
    assert len(entries) == 1
    fields = _decoded(entries[0][1])
    assert fields == {
        "event": dumps(event).decode(),
        "id": event["id"],
        "type": "Microsoft.MachineLearningServices.ModelRegistered",
        "subject": "models/churn:1",
        "source": event["topic"],
        "time": "2024-03-07T09:05:00Z",
        "subscription": "MODELS-TO-REDIS",
        "deliveryCount": "2",
        "contentType": "application/json; charset=utf-8",
    }
    # Numbers keep every digit the publisher wrote.
    assert '"Score":0.30000000000000001' in fields["event"]
    assert json.loads(fields["event"])["eventType"] == event["eventType"]


async def test_cloud_events_schema_and_several_events_in_order(
    destination: RedisStreamDestination, redis_admin: Redis, stream: str
) -> None:
    events = [cloud_event(n) for n in range(1, 4)]
    sub = subscription_for(
        "RedisStream", {"url": REDIS_URL, "stream": stream}, delivery_schema="CloudEventSchemaV1_0"
    )

    outcome = await destination.send(sub, events, attempt())

    assert outcome.succeeded, outcome
    entries = [_decoded(fields) for _, fields in await redis_admin.xrange(stream)]
    assert [e["id"] for e in entries] == [e["id"] for e in events]
    assert all(e["contentType"] == "application/cloudevents+json; charset=utf-8" for e in entries)
    assert json.loads(entries[0]["event"])["specversion"] == "1.0"
    assert entries[2]["type"] == "Microsoft.MachineLearningServices.ModelRegistered"


async def test_retried_event_is_appended_again_with_the_same_id(
    destination: RedisStreamDestination, redis_admin: Redis, stream: str
) -> None:
    event = eventgrid_event(7)
    sub = subscription_for("RedisStream", {"url": REDIS_URL, "stream": stream})

    assert (await destination.send(sub, [event], attempt(0))).succeeded
    assert (await destination.send(sub, [event], attempt(1))).succeeded

    entries = [_decoded(fields) for _, fields in await redis_admin.xrange(stream)]
    assert [e["id"] for e in entries] == [event["id"], event["id"]]
    assert [e["deliveryCount"] for e in entries] == ["0", "1"]


async def test_one_connection_per_url_shared_by_subscriptions(
    destination: RedisStreamDestination, redis_admin: Redis, stream: str
) -> None:
    first = subscription_for("RedisStream", {"url": REDIS_URL, "stream": stream}, name="a-sub")
    second = subscription_for("RedisStream", {"url": REDIS_URL, "stream": stream}, name="b-sub")
    for n in range(3):
        assert (await destination.send(first, [eventgrid_event(n)], attempt())).succeeded
        assert (await destination.send(second, [eventgrid_event(n)], attempt())).succeeded
    assert destination.open_connections == 1
    assert await redis_admin.xlen(stream) == 6


async def test_key_of_another_type_is_a_retryable_failure(
    destination: RedisStreamDestination, redis_admin: Redis, stream: str
) -> None:
    await redis_admin.set(stream, "not a stream")
    sub = subscription_for("RedisStream", {"url": REDIS_URL, "stream": stream})

    outcome = await destination.send(sub, [eventgrid_event()], attempt())

    assert not outcome.succeeded
    assert outcome.retryable
    assert outcome.name == OutcomeName.GENERIC_ERROR
    assert "not a stream" in outcome.detail


async def test_wrong_password_is_final(destination: RedisStreamDestination, stream: str) -> None:
    need_redis()
    sub = subscription_for(
        "RedisStream", {"url": "redis://nobody:wrong-password@127.0.0.1:6379/0", "stream": stream}
    )

    outcome = await destination.send(sub, [eventgrid_event()], attempt())

    assert not outcome.succeeded
    assert not outcome.retryable
    assert outcome.name == OutcomeName.UNAUTHORIZED
    assert "wrong-password" not in outcome.detail


async def test_closed_port_is_a_retryable_socket_error(destination: RedisStreamDestination) -> None:
    sub = subscription_for("RedisStream", {"url": f"redis://127.0.0.1:{closed_port()}/0", "stream": "s"})

    outcome = await destination.send(sub, [eventgrid_event()], attempt())

    assert not outcome.succeeded
    assert outcome.retryable
    assert outcome.name == OutcomeName.SOCKET_ERROR


async def test_server_that_never_answers_times_out() -> None:
    dest = RedisStreamDestination(deny_private=False, timeout=0.5)
    try:
        async with SilentServer() as silent:
            sub = subscription_for(
                "RedisStream", {"url": f"redis://127.0.0.1:{silent.port}/0", "stream": "s"}
            )
            outcome = await dest.send(sub, [eventgrid_event()], attempt())
    finally:
        await dest.close()
    assert not outcome.succeeded
    assert outcome.retryable
    assert outcome.name == OutcomeName.TIMED_OUT


async def test_endpoint_safety_rules_apply() -> None:
    dest = RedisStreamDestination(deny_private=True, timeout=2.0)
    try:
        metadata = subscription_for("RedisStream", {"url": "redis://169.254.169.254:6379/0", "stream": "s"})
        loopback = subscription_for("RedisStream", {"url": REDIS_URL, "stream": "s"})
        refused = [await dest.send(sub, [eventgrid_event()], attempt()) for sub in (metadata, loopback)]
    finally:
        await dest.close()
    for outcome in refused:
        assert outcome.name == OutcomeName.ENDPOINT_NOT_ALLOWED
        assert not outcome.retryable
    assert "metadata" in refused[0].detail
    assert "private endpoints are denied" in refused[1].detail


async def test_reconnects_after_the_connection_breaks(
    destination: RedisStreamDestination, redis_admin: Redis, stream: str
) -> None:
    async with TcpProxy(6379) as proxy:
        sub = subscription_for("RedisStream", {"url": f"redis://127.0.0.1:{proxy.port}/0", "stream": stream})
        assert (await destination.send(sub, [eventgrid_event(1)], attempt())).succeeded

        await proxy.cut()
        assert (await destination.send(sub, [eventgrid_event(2)], attempt())).succeeded

        await proxy.stop()
        down = await destination.send(sub, [eventgrid_event(3)], attempt())
        assert down.name == OutcomeName.SOCKET_ERROR and down.retryable

        await proxy.start()
        assert (await destination.send(sub, [eventgrid_event(3)], attempt(1))).succeeded
    assert await redis_admin.xlen(stream) == 3


# -- end to end: subscription API, publish, dispatcher, Redis ----------------------------------


@pytest.fixture(scope="module")
def api(sqlite_server: ServerProcess) -> Iterator[httpx.Client]:
    with sqlite_server.client() as client:
        yield client


async def test_published_events_reach_the_stream_through_the_server(
    api: httpx.Client, redis_admin: Redis, stream: str
) -> None:
    topic = make_topic(api)
    sub = create_subscription(
        api,
        topic,
        "RedisStream",
        {"url": REDIS_URL, "stream": stream},
        filter={"includedEventTypes": [REGISTERED]},
    )
    events = [model_registered(1), model_registered(2), {**model_registered(3), "eventType": "Other.Type"}]
    publish(api, topic, *events)

    async def two_entries() -> list[dict[str, str]] | None:
        entries = [_decoded(fields) for _, fields in await redis_admin.xrange(stream)]
        return entries if len(entries) >= 2 else None

    entries = await wait_until(two_entries, "two stream entries")
    assert sorted(e["id"] for e in entries) == sorted(e["id"] for e in events[:2])
    by_id: dict[str, Any] = {e["id"]: e for e in entries}
    first = by_id[events[0]["id"]]
    assert first["type"] == REGISTERED
    assert first["subject"] == "models/churn:1"
    assert first["subscription"] == sub.upper()
    assert first["deliveryCount"] == "0"
    delivered = json.loads(first["event"])
    assert delivered["data"] == events[0]["data"]
    assert delivered["topic"].endswith(f"/providers/Microsoft.EventGrid/topics/{topic}")
    assert first["source"] == delivered["topic"]

    async def recorded() -> list[dict[str, Any]] | None:
        rows = deliveries(api, topic, sub, "delivered")
        return rows if len(rows) == 2 else None

    rows = await wait_until(recorded, "two delivered rows")
    assert {r["lastDeliveryOutcome"] for r in rows} == {"Succeeded"}
    assert await redis_admin.xlen(stream) == 2  # the unmatched event was not delivered
