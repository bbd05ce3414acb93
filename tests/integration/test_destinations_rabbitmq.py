"""The RabbitMQ destination against the real RabbitMQ on 127.0.0.1:5672 (SPEC §4)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue
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
    subscription_for,
    wait_until,
)
from tests.support.server import ServerProcess
from tests.support.services import need_rabbitmq

from mlgrid.delivery.outcome import OutcomeName
from mlgrid.delivery.queue_destinations.rabbitmq import RabbitMQDestination
from mlgrid.events.jsoncodec import dumps

pytestmark = pytest.mark.rabbitmq

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
ROUTING_KEY = "ml.events"


@dataclass
class Target:
    exchange: str
    queue: AbstractQueue
    channel: AbstractChannel

    async def take(self) -> AbstractIncomingMessage:
        """The next message of the queue, waiting a little for it (basic.get does not wait)."""

        async def get() -> AbstractIncomingMessage | None:
            return await self.queue.get(no_ack=True, fail=False, timeout=5)

        return await wait_until(get, f"a message in queue {self.queue.name}", timeout=10.0)


@pytest.fixture
async def amqp_admin() -> AsyncIterator[AbstractConnection]:
    need_rabbitmq()
    connection = await aio_pika.connect(AMQP_URL)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def target(amqp_admin: AbstractConnection) -> AsyncIterator[Target]:
    """A unique direct exchange with a queue bound on ``ROUTING_KEY``; both deleted after."""
    token = uuid.uuid4().hex
    channel = await amqp_admin.channel()
    exchange = await channel.declare_exchange(f"mlgrid-test-{token}", aio_pika.ExchangeType.DIRECT)
    queue = await channel.declare_queue(f"mlgrid-test-{token}")
    await queue.bind(exchange, ROUTING_KEY)
    try:
        yield Target(exchange=exchange.name, queue=queue, channel=channel)
    finally:
        cleanup = await amqp_admin.channel()
        await cleanup.queue_delete(queue.name)
        await cleanup.exchange_delete(exchange.name)
        await cleanup.close()


@pytest.fixture
async def destination() -> AsyncIterator[RabbitMQDestination]:
    dest = RabbitMQDestination(deny_private=False, timeout=5.0)
    try:
        yield dest
    finally:
        await dest.close()


def _props(target: Target, routing_key: str = ROUTING_KEY, url: str = AMQP_URL) -> dict[str, str]:
    return {"url": url, "exchange": target.exchange, "routingKey": routing_key}


async def test_event_is_a_persistent_confirmed_message_with_metadata(
    destination: RabbitMQDestination, target: Target
) -> None:
    event = eventgrid_event(1)
    sub = subscription_for("RabbitMQ", _props(target), name="to-rabbit")

    outcome = await destination.send(sub, [event], attempt(delivery_count=3))

    assert outcome.succeeded, outcome
    message = await target.take()
    assert message.body == dumps(event)
    assert '"Score":0.30000000000000001' in message.body.decode()
    assert message.message_id == event["id"]
    assert message.type == "Microsoft.MachineLearningServices.ModelRegistered"
    assert message.content_type == "application/json"
    assert message.content_encoding == "utf-8"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.app_id == "mlgrid"
    assert message.routing_key == ROUTING_KEY
    headers = message.headers
    assert headers["aeg-event-type"] == "Notification"
    assert headers["aeg-subscription-name"] == "TO-RABBIT"
    assert headers["aeg-delivery-count"] == "3"
    assert headers["event-id"] == event["id"]
    assert headers["event-subject"] == "models/churn:1"
    assert headers["event-source"] == event["topic"]
    assert headers["event-time"] == "2024-03-07T09:05:00Z"


async def test_cloud_events_in_order(destination: RabbitMQDestination, target: Target) -> None:
    events = [cloud_event(n) for n in range(1, 4)]
    sub = subscription_for("RabbitMQ", _props(target), delivery_schema="CloudEventSchemaV1_0")

    outcome = await destination.send(sub, events, attempt())

    assert outcome.succeeded, outcome
    received = [await target.take() for _ in events]
    assert [m.message_id for m in received] == [e["id"] for e in events]
    assert received[0].content_type == "application/cloudevents+json"
    assert json.loads(received[0].body)["specversion"] == "1.0"
    assert destination.open_connections == 1


async def test_default_exchange_routes_by_queue_name(
    destination: RabbitMQDestination, target: Target
) -> None:
    sub = subscription_for("RabbitMQ", {"url": AMQP_URL, "exchange": "", "routingKey": target.queue.name})

    outcome = await destination.send(sub, [eventgrid_event()], attempt())

    assert outcome.succeeded, outcome
    assert (await target.take()).routing_key == target.queue.name


async def test_unroutable_message_is_a_retryable_failure(
    destination: RabbitMQDestination, target: Target
) -> None:
    sub = subscription_for("RabbitMQ", _props(target, routing_key="nobody.listens"))

    outcome = await destination.send(sub, [eventgrid_event()], attempt())

    assert not outcome.succeeded
    assert outcome.retryable
    assert outcome.name == OutcomeName.NOT_FOUND
    assert "unroutable" in outcome.detail and "nobody.listens" in outcome.detail


async def test_missing_exchange_is_a_retryable_failure_and_the_channel_recovers(
    destination: RabbitMQDestination, target: Target
) -> None:
    missing = subscription_for(
        "RabbitMQ", {"url": AMQP_URL, "exchange": f"mlgrid-missing-{uuid.uuid4().hex}", "routingKey": "k"}
    )

    outcome = await destination.send(missing, [eventgrid_event()], attempt())

    assert not outcome.succeeded
    assert outcome.retryable
    assert outcome.name == OutcomeName.NOT_FOUND
    assert "does not exist" in outcome.detail
    # The broker closed the channel; the same connection serves the next attempt.
    ok = await destination.send(subscription_for("RabbitMQ", _props(target)), [eventgrid_event()], attempt())
    assert ok.succeeded, ok
    assert destination.open_connections == 1
    await target.take()


async def test_wrong_password_is_final(destination: RabbitMQDestination, target: Target) -> None:
    sub = subscription_for("RabbitMQ", _props(target, url="amqp://guest:wrong-password@127.0.0.1:5672/"))

    outcome = await destination.send(sub, [eventgrid_event()], attempt())

    assert not outcome.succeeded
    assert not outcome.retryable
    assert outcome.name == OutcomeName.UNAUTHORIZED
    assert "wrong-password" not in outcome.detail


async def test_closed_port_is_a_retryable_socket_error(destination: RabbitMQDestination) -> None:
    sub = subscription_for(
        "RabbitMQ",
        {"url": f"amqp://guest:guest@127.0.0.1:{closed_port()}/", "exchange": "x", "routingKey": ""},
    )

    outcome = await destination.send(sub, [eventgrid_event()], attempt())

    assert not outcome.succeeded
    assert outcome.retryable
    assert outcome.name == OutcomeName.SOCKET_ERROR


async def test_server_that_never_answers_times_out() -> None:
    dest = RabbitMQDestination(deny_private=False, timeout=0.5)
    try:
        async with SilentServer() as silent:
            sub = subscription_for(
                "RabbitMQ",
                {"url": f"amqp://guest:guest@127.0.0.1:{silent.port}/", "exchange": "x", "routingKey": ""},
            )
            outcome = await dest.send(sub, [eventgrid_event()], attempt())
    finally:
        await dest.close()
    assert not outcome.succeeded
    assert outcome.retryable
    assert outcome.name == OutcomeName.TIMED_OUT


async def test_private_endpoints_can_be_denied() -> None:
    dest = RabbitMQDestination(deny_private=True, timeout=2.0)
    try:
        sub = subscription_for("RabbitMQ", {"url": AMQP_URL, "exchange": "x", "routingKey": ""})
        outcome = await dest.send(sub, [eventgrid_event()], attempt())
    finally:
        await dest.close()
    assert outcome.name == OutcomeName.ENDPOINT_NOT_ALLOWED
    assert not outcome.retryable


async def test_reconnects_after_the_connection_breaks(
    destination: RabbitMQDestination, target: Target
) -> None:
    async with TcpProxy(5672) as proxy:
        sub = subscription_for("RabbitMQ", _props(target, url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/"))
        assert (await destination.send(sub, [eventgrid_event(1)], attempt())).succeeded

        await proxy.cut()
        second = await destination.send(sub, [eventgrid_event(2)], attempt())
        if not second.succeeded:  # the client may only notice the cut on this attempt
            assert second.retryable
            second = await destination.send(sub, [eventgrid_event(2)], attempt(1))
        assert second.succeeded, second

        await proxy.stop()
        down = await destination.send(sub, [eventgrid_event(3)], attempt())
        assert down.name == OutcomeName.SOCKET_ERROR and down.retryable

        await proxy.start()
        assert (await destination.send(sub, [eventgrid_event(3)], attempt(1))).succeeded
    assert [(await target.take()).message_id is not None for _ in range(3)] == [True, True, True]


# -- end to end: subscription API, publish, dispatcher, RabbitMQ -------------------------------


@pytest.fixture(scope="module")
def api(sqlite_server: ServerProcess) -> Iterator[httpx.Client]:
    with sqlite_server.client() as client:
        yield client


async def test_cloud_events_reach_the_queue_and_unroutable_ones_wait_for_a_binding(
    api: httpx.Client, target: Target
) -> None:
    topic = make_topic(api, "CloudEventSchemaV1_0")
    sub = create_subscription(
        api, topic, "RabbitMQ", {"url": AMQP_URL, "exchange": target.exchange, "routingKey": "late.key"}
    )
    event = {
        "specversion": "1.0",
        "id": f"ce-{uuid.uuid4().hex}",
        "source": "/mlflow/tracking",
        "type": REGISTERED,
        "subject": "models/churn:4",
        "time": "2026-01-01T00:00:00Z",
        "data": {"ModelName": "churn", "ModelVersion": "4"},
    }
    response = api.post(
        f"/topics/{topic}/api/events",
        content=json.dumps(event),
        headers={"Content-Type": "application/cloudevents+json; charset=utf-8"},
    )
    assert response.status_code == 200, response.text

    async def failed_attempt() -> dict[str, Any] | None:
        rows = deliveries(api, topic, sub, "pending")
        return rows[0] if rows and rows[0]["deliveryAttempts"] >= 1 else None

    row = await wait_until(failed_attempt, "an unroutable attempt")
    assert row["lastDeliveryOutcome"] == "NotFound"
    assert "unroutable" in row["lastError"]

    exchange = await target.channel.get_exchange(target.exchange)
    await target.queue.bind(exchange, "late.key")
    message = await target.take()
    assert message.message_id == event["id"]
    assert message.type == REGISTERED
    assert message.content_type == "application/cloudevents+json"
    assert message.headers["aeg-subscription-name"] == sub.upper()
    assert json.loads(message.body) == event

    async def delivered() -> list[dict[str, Any]] | None:
        return deliveries(api, topic, sub, "delivered") or None

    (done,) = await wait_until(delivered, "the delivered row")
    assert done["eventId"] == event["id"]


async def test_default_exchange_without_such_queue_is_unroutable(destination: RabbitMQDestination) -> None:
    need_rabbitmq()
    queue = f"mlgrid-missing-{uuid.uuid4().hex}"
    sub = subscription_for("RabbitMQ", {"url": AMQP_URL, "exchange": "", "routingKey": queue})

    outcome = await destination.send(sub, [eventgrid_event()], attempt())

    assert outcome.name == OutcomeName.NOT_FOUND and outcome.retryable
    assert f"no queue named {queue!r}" in outcome.detail
