"""The NatsJetStream destination against the real NATS JetStream on 127.0.0.1:4222 (SPEC §4)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
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
from tests.support.services import need_nats

from mlgrid.delivery.outcome import OutcomeName
from mlgrid.delivery.queue_destinations.nats_jetstream import NatsJetStreamDestination
from mlgrid.events.jsoncodec import dumps

pytestmark = pytest.mark.nats

NATS_URL = "nats://127.0.0.1:4222"


@dataclass
class Stream:
    name: str
    subject: str  # a subject the stream captures
    js: JetStreamContext


@pytest.fixture
async def nats_admin() -> AsyncIterator[NatsClient]:
    need_nats()
    client = await nats.connect(NATS_URL)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def stream(nats_admin: NatsClient) -> AsyncIterator[Stream]:
    """A unique JetStream stream capturing ``mlgrid-test.<hex>.>``, deleted after the test."""
    token = uuid.uuid4().hex
    js = nats_admin.jetstream()
    name = f"MLGRID_TEST_{token}"
    await js.add_stream(name=name, subjects=[f"mlgrid-test.{token}.>"])
    try:
        yield Stream(name=name, subject=f"mlgrid-test.{token}.events", js=js)
    finally:
        await js.delete_stream(name)


@pytest.fixture
async def destination() -> AsyncIterator[NatsJetStreamDestination]:
    dest = NatsJetStreamDestination(deny_private=False, timeout=5.0)
    try:
        yield dest
    finally:
        await dest.close()


async def test_event_is_stored_in_the_stream_with_headers(
    destination: NatsJetStreamDestination, stream: Stream
) -> None:
    event = eventgrid_event(1)
    sub = subscription_for("NatsJetStream", {"url": NATS_URL, "subject": stream.subject}, name="to-nats")

    outcome = await destination.send(sub, [event], attempt(delivery_count=1))

    assert outcome.succeeded, outcome
    stored = await stream.js.get_msg(stream.name, seq=1)
    assert stored.subject == stream.subject
    assert stored.data == dumps(event)
    assert '"Score":0.30000000000000001' in stored.data.decode()
    headers = stored.headers or {}
    assert headers["Nats-Msg-Id"] == event["id"]
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers["aeg-event-type"] == "Notification"
    assert headers["aeg-subscription-name"] == "TO-NATS"
    assert headers["aeg-delivery-count"] == "1"
    assert headers["aeg-data-version"] == "2"
    assert headers["aeg-metadata-version"] == "1"
    assert headers["event-id"] == event["id"]
    assert headers["event-type"] == "Microsoft.MachineLearningServices.ModelRegistered"
    assert headers["event-subject"] == "models/churn:1"
    assert headers["event-source"] == event["topic"]
    assert headers["event-time"] == "2024-03-07T09:05:00Z"
    assert not any(name.lower().startswith("ce-") for name in headers)


async def test_cloud_events_in_order(destination: NatsJetStreamDestination, stream: Stream) -> None:
    events = [cloud_event(n) for n in range(1, 4)]
    sub = subscription_for(
        "NatsJetStream", {"url": NATS_URL, "subject": stream.subject}, delivery_schema="CloudEventSchemaV1_0"
    )

    outcome = await destination.send(sub, events, attempt())

    assert outcome.succeeded, outcome
    stored = [await stream.js.get_msg(stream.name, seq=n) for n in (1, 2, 3)]
    assert [json.loads(m.data)["id"] for m in stored] == [e["id"] for e in events]
    assert (stored[0].headers or {})["Content-Type"] == "application/cloudevents+json; charset=utf-8"


async def test_jetstream_drops_a_retried_duplicate(
    destination: NatsJetStreamDestination, stream: Stream
) -> None:
    event = eventgrid_event(5)
    sub = subscription_for("NatsJetStream", {"url": NATS_URL, "subject": stream.subject})

    assert (await destination.send(sub, [event], attempt(0))).succeeded
    assert (await destination.send(sub, [event], attempt(1))).succeeded
    assert (await destination.send(sub, [eventgrid_event(6)], attempt(0))).succeeded

    info = await stream.js.stream_info(stream.name)
    assert info.state.messages == 2
    assert destination.open_connections == 1


async def test_subject_without_a_stream_is_a_retryable_not_found(
    destination: NatsJetStreamDestination, stream: Stream
) -> None:
    subject = f"mlgrid-test.nobody-{uuid.uuid4().hex}.events"
    sub = subscription_for("NatsJetStream", {"url": NATS_URL, "subject": subject})

    outcome = await destination.send(sub, [eventgrid_event()], attempt())

    assert not outcome.succeeded
    assert outcome.retryable
    assert outcome.name == OutcomeName.NOT_FOUND
    assert subject in outcome.detail and "stream" in outcome.detail

    # Once the operator creates the stream, the next attempt succeeds.
    await stream.js.add_stream(name=f"{stream.name}_LATE", subjects=[subject])
    try:
        assert (await destination.send(sub, [eventgrid_event()], attempt(1))).succeeded
    finally:
        await stream.js.delete_stream(f"{stream.name}_LATE")


async def test_closed_port_is_a_retryable_socket_error(destination: NatsJetStreamDestination) -> None:
    sub = subscription_for("NatsJetStream", {"url": f"nats://127.0.0.1:{closed_port()}", "subject": "a.b"})

    outcome = await destination.send(sub, [eventgrid_event()], attempt())

    assert not outcome.succeeded
    assert outcome.retryable
    assert outcome.name == OutcomeName.SOCKET_ERROR


async def test_server_that_never_answers_times_out() -> None:
    dest = NatsJetStreamDestination(deny_private=False, timeout=0.5)
    try:
        async with SilentServer() as silent:
            sub = subscription_for(
                "NatsJetStream", {"url": f"nats://127.0.0.1:{silent.port}", "subject": "a.b"}
            )
            outcome = await dest.send(sub, [eventgrid_event()], attempt())
    finally:
        await dest.close()
    assert not outcome.succeeded
    assert outcome.retryable
    assert outcome.name == OutcomeName.TIMED_OUT


async def test_metadata_address_is_refused() -> None:
    dest = NatsJetStreamDestination(deny_private=False, timeout=2.0)
    try:
        sub = subscription_for("NatsJetStream", {"url": "nats://169.254.169.254:4222", "subject": "a.b"})
        outcome = await dest.send(sub, [eventgrid_event()], attempt())
    finally:
        await dest.close()
    assert outcome.name == OutcomeName.ENDPOINT_NOT_ALLOWED
    assert not outcome.retryable


async def test_reconnects_after_the_connection_breaks(
    destination: NatsJetStreamDestination, stream: Stream
) -> None:
    async with TcpProxy(4222) as proxy:
        sub = subscription_for(
            "NatsJetStream", {"url": f"nats://127.0.0.1:{proxy.port}", "subject": stream.subject}
        )
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
    info = await stream.js.stream_info(stream.name)
    assert info.state.messages == 3


# -- end to end: subscription API, publish, dispatcher, JetStream ------------------------------


@pytest.fixture(scope="module")
def api(sqlite_server: ServerProcess) -> Iterator[httpx.Client]:
    with sqlite_server.client() as client:
        yield client


async def test_published_events_reach_jetstream_through_the_server(api: httpx.Client, stream: Stream) -> None:
    topic = make_topic(api)
    sub = create_subscription(
        api,
        topic,
        "NatsJetStream",
        {"url": NATS_URL, "subject": stream.subject},
        eventDeliverySchema="CloudEventSchemaV1_0",
    )
    event = model_registered(1)
    publish(api, topic, event)

    async def stored() -> int | None:
        info = await stream.js.stream_info(stream.name)
        return info.state.messages or None

    assert await wait_until(stored, "a message in the stream") == 1
    message = await stream.js.get_msg(stream.name, seq=1)
    body = json.loads(message.data)
    assert body["specversion"] == "1.0"
    assert body["id"] == event["id"]
    assert body["type"] == REGISTERED
    headers = message.headers or {}
    assert headers["Nats-Msg-Id"] == event["id"]
    assert headers["Content-Type"] == "application/cloudevents+json; charset=utf-8"
    assert headers["aeg-subscription-name"] == sub.upper()


async def test_missing_stream_is_retried_until_the_operator_creates_it(
    api: httpx.Client, stream: Stream
) -> None:
    subject = f"mlgrid-test.late-{uuid.uuid4().hex}.events"
    topic = make_topic(api)
    sub = create_subscription(api, topic, "NatsJetStream", {"url": NATS_URL, "subject": subject})
    event = model_registered(1)
    publish(api, topic, event)

    async def failed_attempt() -> dict[str, Any] | None:
        rows = deliveries(api, topic, sub, "pending")
        return rows[0] if rows and rows[0]["deliveryAttempts"] >= 1 else None

    row = await wait_until(failed_attempt, "a failed attempt")
    assert row["lastDeliveryOutcome"] == "NotFound"
    assert subject in row["lastError"]

    late = f"{stream.name}_LATE"
    await stream.js.add_stream(name=late, subjects=[subject])
    try:

        async def delivered() -> list[dict[str, Any]] | None:
            return deliveries(api, topic, sub, "delivered") or None

        (done,) = await wait_until(delivered, "the delivery after the stream was created")
        assert done["eventId"] == event["id"]
        assert done["deliveryAttempts"] >= 2
        message = await stream.js.get_msg(late, seq=1)
        assert (message.headers or {})["Nats-Msg-Id"] == event["id"]
    finally:
        await stream.js.delete_stream(late)
