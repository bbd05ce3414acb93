"""Helpers for the publish and topic tests: topics, keys, events, reading back, error shapes.

Everything goes through the HTTP API of a running server; nothing here touches storage.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from typing import Any
from urllib.parse import quote

import httpx

EVENT_TIME = "2024-05-01T12:00:00Z"


def new_name(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def create_topic(
    client: httpx.Client, name: str | None = None, schema: str = "EventGridSchema", **properties: Any
) -> dict[str, Any]:
    """Create a custom topic (admin client) and return its JSON."""
    name = name or new_name()
    body = {"properties": {"inputSchema": schema, **properties}}
    response = client.put(f"/topics/{name}", json=body)
    assert response.status_code == 201, response.text
    topic: dict[str, Any] = response.json()
    return topic


def topic_keys(client: httpx.Client, name: str) -> tuple[str, str]:
    response = client.post(f"/topics/{name}/listKeys")
    assert response.status_code == 200, response.text
    keys = response.json()
    return keys["key1"], keys["key2"]


def eg_event(event_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """A valid Event Grid schema event; keyword arguments override or add fields."""
    event: dict[str, Any] = {
        "id": uuid.uuid4().hex if event_id is None else event_id,
        "subject": "items/1",
        "eventType": "Test.ItemCreated",
        "eventTime": EVENT_TIME,
        "data": {"n": 1},
        "dataVersion": "1.0",
    }
    event.update(fields)
    return event


def cloud_event(event_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """A valid CloudEvents 1.0 event in structured JSON form."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": uuid.uuid4().hex if event_id is None else event_id,
        "source": "/tests/source",
        "type": "Test.ItemCreated",
        "time": EVENT_TIME,
        "data": {"n": 1},
    }
    event.update(fields)
    return event


def list_events(client: httpx.Client, topic: str, **params: Any) -> list[dict[str, Any]]:
    """Every retained event of a topic, following ``nextLink`` (bounded)."""
    found: list[dict[str, Any]] = []
    response = client.get(f"/topics/{topic}/events", params=params)
    for _ in range(1_000):
        assert response.status_code == 200, response.text
        page = response.json()
        found.extend(page["value"])
        next_link = page.get("nextLink")
        if not next_link:
            return found
        response = client.get(next_link)
    raise AssertionError("nextLink did not end after 1,000 pages")


def event_ids(client: httpx.Client, topic: str) -> list[str]:
    return [e["id"] for e in list_events(client, topic)]


def assert_error(
    response: httpx.Response, status: int, *fragments: str, code: str | None = None
) -> dict[str, Any]:
    """Assert SPEC §3's error envelope and that the message names every fragment.

    ``fragments`` are what the message must contain (an event index such as ``[2]``, a field
    name); ``details`` must be a list of ``{"code", "message"}`` objects.
    """
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text}"
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["details"], list), error
    for detail in error["details"]:
        assert isinstance(detail["code"], str) and isinstance(detail["message"], str), detail
    if code is not None:
        assert error["code"] == code or code in {d["code"] for d in error["details"]}, error
    for fragment in fragments:
        assert fragment in error["message"], f"{fragment!r} not in {error['message']!r}"
    result: dict[str, Any] = error
    return result


def sign_sas(resource: str, expiry: str, key: str) -> str:
    """A SAS token made by hand, as Azure documents it (independent of mlgrid's own code):
    ``r=<url-encoded resource>&e=<url-encoded expiry>&s=<url-encoded base64 HMAC-SHA256>``,
    signed with the base64-decoded key over the encoded ``r=..&e=..``."""
    unsigned = f"r={quote(resource, safe='')}&e={quote(expiry, safe='')}"
    digest = hmac.new(base64.b64decode(key), unsigned.encode(), hashlib.sha256).digest()
    return f"{unsigned}&s={quote(base64.b64encode(digest).decode(), safe='')}"
