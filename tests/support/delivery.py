"""Helpers for the delivery tests: topics, subscriptions, events, and polling the deliveries API."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

TEST_EVENT_TYPE = "Test.Delivery.Happened"


def new_name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def make_topic(client: httpx.Client, schema: str = "EventGridSchema") -> tuple[str, str]:
    """A new custom topic; returns (name, key1)."""
    name = new_name("topic")
    response = client.put(f"/topics/{name}", json={"properties": {"inputSchema": schema}})
    assert response.status_code == 201, response.text
    keys = client.post(f"/topics/{name}/listKeys")
    assert keys.status_code == 200, keys.text
    return name, keys.json()["key1"]


def webhook(url: str, **properties: Any) -> dict[str, Any]:
    return {"endpointType": "WebHook", "properties": {"endpointUrl": url, **properties}}


def subscribe(
    client: httpx.Client,
    topic: str,
    destination: dict[str, Any],
    *,
    name: str | None = None,
    parent: str = "topics",
    **properties: Any,
) -> str:
    """Create a subscription (the receiver answers the handshake); returns its name."""
    name = name or new_name("sub")
    body = {"properties": {"destination": destination, **properties}}
    response = client.put(f"/{parent}/{topic}/eventSubscriptions/{name}", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["properties"]["provisioningState"] == "Succeeded", response.text
    return name


def event(event_id: str | None = None, *, data: Any = None, subject: str = "items/1",
          event_type: str = TEST_EVENT_TYPE, data_version: str = "1.0") -> dict[str, Any]:
    return {
        "id": event_id or str(uuid.uuid4()),
        "eventType": event_type,
        "subject": subject,
        "eventTime": "2026-01-02T03:04:05Z",
        "data": {"n": 1} if data is None else data,
        "dataVersion": data_version,
    }


def publish(client: httpx.Client, topic: str, events: list[dict[str, Any]]) -> None:
    response = client.post(f"/topics/{topic}/api/events", json=events)
    assert response.status_code == 200, response.text


def deliveries(client: httpx.Client, topic: str, sub: str, state: str | None = None,
               parent: str = "topics") -> list[dict[str, Any]]:
    """Every delivery of the subscription (all pages)."""
    url: str | None = f"/{parent}/{topic}/eventSubscriptions/{sub}/deliveries"
    params: dict[str, Any] | None = {"state": state, "top": 1000} if state else {"top": 1000}
    found: list[dict[str, Any]] = []
    while url:
        response = client.get(url, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        found.extend(body["value"])
        url = body.get("nextLink")
        params = None  # the next link carries its query (an empty dict would drop it)
    return found


def wait_until(predicate: Callable[[], Any], *, timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s (last: {result!r})")
        time.sleep(0.05)


def wait_final(client: httpx.Client, topic: str, sub: str, count: int, *, timeout: float = 15.0,
               parent: str = "topics") -> list[dict[str, Any]]:
    """Wait until ``count`` deliveries of the subscription are final; return all of them."""

    def final() -> list[dict[str, Any]] | None:
        rows = deliveries(client, topic, sub, parent=parent)
        done = [r for r in rows if r["state"] != "pending"]
        return rows if len(done) >= count and len(rows) == len(done) else None

    result: list[dict[str, Any]] = wait_until(final, timeout=timeout, what=f"{count} final deliveries")
    return result


def dead_letters(client: httpx.Client, topic: str, sub: str, parent: str = "topics") -> list[dict[str, Any]]:
    response = client.get(f"/{parent}/{topic}/eventSubscriptions/{sub}/deadLetters", params={"top": 1000})
    assert response.status_code == 200, response.text
    value: list[dict[str, Any]] = response.json()["value"]
    return value


def notifications(receiver: Any, path: str, count: int = 1, timeout: float = 15.0) -> list[Any]:
    """Wait for ``count`` notification requests (handshakes left out) to ``path``."""
    receiver.wait_for(lambda _: len(receiver.notifications(path)) >= count, path=path, timeout=timeout)
    found: list[Any] = receiver.notifications(path)
    return found
