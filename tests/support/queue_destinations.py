"""Helpers for the queue destination tests: subscriptions, events, and misbehaving endpoints.

* ``subscription_for`` builds the ``Subscription`` a destination reads (the model the
  subscription service produces), without a server;
* ``closed_port`` gives a loopback port nobody listens on (connection refused);
* ``SilentServer`` accepts connections and never answers (a broker that hangs);
* ``TcpProxy`` forwards a loopback port to a real broker and can cut every connection or
  stop listening, to show that destinations reconnect after a failure;
* ``make_topic``, ``publish``, ``deliveries`` and ``wait_until`` for the end-to-end tests
  through a real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

import httpx

from mlgrid.delivery.destinations import Attempt
from mlgrid.domain.event_filter import EventFilter
from mlgrid.domain.subscription import Subscription
from mlgrid.events.convert import eventgrid_to_cloudevent

T = TypeVar("T")

REGISTERED = "Microsoft.MachineLearningServices.ModelRegistered"

WORKSPACE_TOPIC = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/default/providers/"
    "Microsoft.MachineLearningServices/workspaces/ws1"
)


def subscription_for(
    endpoint_type: str,
    properties: dict[str, Any],
    *,
    delivery_schema: str = "EventGridSchema",
    name: str = "queue-sub",
) -> Subscription:
    stored = "CloudEventSchemaV1_0" if delivery_schema == "CloudEventSchemaV1_0" else "EventGridSchema"
    return Subscription(
        id=uuid.uuid4().hex,
        name=name,
        topic_key="topic-key",
        topic_name="t1",
        topic_kind="custom",
        stored_schema=stored,
        input_schema=stored,
        endpoint_type=endpoint_type,
        event_filter=EventFilter(),
        event_delivery_schema=delivery_schema,
        destination_properties=properties,
    )


def eventgrid_event(n: int = 1, **data: Any) -> dict[str, Any]:
    return {
        "id": f"evt-{uuid.uuid4().hex[:8]}-{n}",
        "topic": WORKSPACE_TOPIC,
        "subject": f"models/churn:{n}",
        "eventType": "Microsoft.MachineLearningServices.ModelRegistered",
        "eventTime": "2024-03-07T09:05:00Z",
        "data": {
            "ModelName": "churn",
            "ModelVersion": str(n),
            "Score": Decimal("0.30000000000000001"),
            **data,
        },
        "dataVersion": "2",
        "metadataVersion": "1",
    }


def cloud_event(n: int = 1) -> dict[str, Any]:
    return eventgrid_to_cloudevent(eventgrid_event(n))


def attempt(delivery_count: int = 0, batch_id: str = "msg_1") -> Attempt:
    return Attempt(delivery_count=delivery_count, batch_id=batch_id)


def closed_port() -> int:
    """A loopback port that was free a moment ago: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SilentServer:
    """Accepts TCP connections on loopback and never sends a byte."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def __aenter__(self) -> SilentServer:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        with contextlib.suppress(Exception):
            while await reader.read(65536):
                pass

    async def __aexit__(self, *exc: object) -> None:
        for writer in self._writers:
            writer.close()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a real service; ``cut()`` breaks every open connection,
    ``stop()``/``start()`` stop and resume listening on the same port."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self.connections = 0

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
        for w in (writer, up_writer):
            w.close()
            self._writers.discard(w)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()

    async def cut(self) -> None:
        """Close every connection going through the proxy (both sides)."""
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._writers.clear()
        await asyncio.sleep(0.05)  # let both ends see the close

    async def stop(self) -> None:
        await self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> TcpProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


# -- end to end through a real server -----------------------------------------------------------


def new_name(prefix: str = "s") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def make_topic(client: httpx.Client, schema: str = "EventGridSchema") -> str:
    name = new_name("t")
    response = client.put(f"/topics/{name}", json={"properties": {"inputSchema": schema}})
    assert response.status_code == 201, response.text
    return name


def create_subscription(
    client: httpx.Client, topic: str, endpoint_type: str, properties: dict[str, Any], **extra: Any
) -> str:
    name = new_name()
    body = {"properties": {"destination": {"endpointType": endpoint_type, "properties": properties}, **extra}}
    response = client.put(f"/topics/{topic}/eventSubscriptions/{name}", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["properties"]["provisioningState"] == "Succeeded"
    return name


def model_registered(n: int, name: str = "churn") -> dict[str, Any]:
    """A ModelRegistered event as a publisher sends it (Event Grid schema)."""
    return {
        "id": f"mr-{uuid.uuid4().hex[:8]}-{n}",
        "eventType": REGISTERED,
        "subject": f"models/{name}:{n}",
        "eventTime": "2026-01-01T00:00:00Z",
        "data": {"ModelName": name, "ModelVersion": str(n), "ModelTags": {}, "ModelProperties": {}},
        "dataVersion": "",
    }


def publish(client: httpx.Client, topic: str, *events: dict[str, Any]) -> None:
    response = client.post(f"/topics/{topic}/api/events", json=list(events))
    assert response.status_code == 200, response.text


def deliveries(client: httpx.Client, topic: str, subscription: str, state: str) -> list[dict[str, Any]]:
    response = client.get(
        f"/topics/{topic}/eventSubscriptions/{subscription}/deliveries", params={"state": state}
    )
    assert response.status_code == 200, response.text
    value: list[dict[str, Any]] = response.json()["value"]
    return value


async def wait_until(check: Callable[[], Awaitable[T | None]], what: str, timeout: float = 20.0) -> T:
    """Poll ``check`` until it returns something other than ``None`` (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout:g} s")
        await asyncio.sleep(0.1)
