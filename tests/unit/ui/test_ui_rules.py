"""Pure rules of the web UI: stream filters, where sign-in may redirect, health badges."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mlgrid.store.event_feed import FeedRow, LastFailure
from mlgrid.ui.health import DeliveryHealth
from mlgrid.ui.session import safe_next
from mlgrid.ui.stream import StreamFilter, sse

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def row(topic: str = "orders", event_type: str = "Shop.OrderPlaced", subject: str = "orders/1") -> FeedRow:
    return FeedRow(1, topic, "id-1", event_type, subject, NOW)


@pytest.mark.parametrize(
    ("wanted", "matches"),
    [
        (StreamFilter(), True),
        (StreamFilter.from_query("ORDERS", "", ""), True),
        (StreamFilter.from_query("other", "", ""), False),
        (StreamFilter.from_query("", "orderplaced", ""), True),
        (StreamFilter.from_query("", "Shipped", ""), False),
        (StreamFilter.from_query("", "", "ORDERS/"), True),
        (StreamFilter.from_query("", "", "orders/2"), False),
        (StreamFilter.from_query(" orders ", " placed ", " orders/ "), True),
    ],
)
def test_stream_filter(wanted: StreamFilter, matches: bool) -> None:
    assert wanted.matches(row()) is matches


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/ui/topics?x=1", "/ui/topics?x=1"),
        ("/", "/"),
        (None, "/"),
        ("", "/"),
        ("//evil.example", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("ui/topics", "/"),
    ],
)
def test_sign_in_redirects_only_to_local_paths(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def failure(delivery_id: int, state: str) -> LastFailure:
    return LastFailure(delivery_id, state, "BadRequest", 400, "HTTP 400", NOW)


@pytest.mark.parametrize(
    ("health", "status"),
    [
        (DeliveryHealth({"pending": 0, "delivered": 0}, 0, None), "idle"),
        (DeliveryHealth({"delivered": 3}, 0, None, 3), "healthy"),
        (DeliveryHealth({"pending": 1}, 0, failure(4, "pending")), "retrying"),
        (DeliveryHealth({"deadLettered": 1, "delivered": 2}, 1, failure(5, "deadLettered"), 3), "failing"),
        # newer events got through after the failure: healthy again (the counts still show it)
        (DeliveryHealth({"deadLettered": 1, "delivered": 2}, 1, failure(2, "deadLettered"), 3), "healthy"),
        (DeliveryHealth({"delivered": 3}, 0, None, 3, circuit="open", consecutive_failures=10), "unhealthy"),
        (DeliveryHealth({"delivered": 3}, 0, None, 3, circuit="closed", consecutive_failures=2), "healthy"),
    ],
)
def test_health_badge(health: DeliveryHealth, status: str) -> None:
    assert health.status == status


def test_server_sent_event_framing() -> None:
    assert sse({"a": 1}, event="event", event_id="7") == b'event: event\nid: 7\ndata: {"a":1}\n\n'
    assert sse({"line": "a\nb"}) == b'data: {"line":"a\\nb"}\n\n'
