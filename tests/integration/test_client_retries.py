"""The SDK transport's retries against a real loopback HTTP server (``tests.support.receiver``)
that answers 503 or 429 and then 200: idempotent requests and publishes of events with ids
are retried, honouring ``Retry-After``, within the policy's tries and total time; other
POSTs are not; a refused connection is retried for any request."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.support.receiver import Receiver, Reply
from tests.support.server import free_port

from mlgrid.client import ApiError, Client, RetryPolicy

_UNAVAILABLE = Reply(503, {"error": {"code": "DatabaseUnavailable", "message": "away"}}, {"Retry-After": "1"})


class Pauses(list[float]):
    """The transport's sleeps, recorded (and not slept: the test needs no wall-clock time)."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def server() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


def _client(url: str, policy: RetryPolicy | None = None) -> tuple[Client, Pauses]:
    client = Client(url, "token", retry=policy)
    pauses = Pauses()
    client.http.sleep = pauses
    return client, pauses


def test_a_get_answered_503_twice_is_retried_after_retry_after(server: Receiver) -> None:
    server.enqueue("/topics", _UNAVAILABLE, _UNAVAILABLE, Reply(200, {"value": [{"name": "t"}]}))
    client, pauses = _client(server.url)
    assert client.http.call("GET", "/topics") == {"value": [{"name": "t"}]}
    assert len(server.requests("/topics")) == 3
    assert len(pauses) == 2 and all(p >= 1.0 for p in pauses)  # at least what Retry-After said


def test_429_then_200_and_the_backoff_grows(server: Receiver) -> None:
    busy = Reply(429, {"error": {"code": "TooManyRequests", "message": "slow down"}})
    server.enqueue("/x", busy, busy, busy, Reply(200, {"ok": True}))
    client, pauses = _client(server.url, RetryPolicy(attempts=4, backoff=0.2, max_backoff=5.0))
    assert client.http.call("GET", "/x") == {"ok": True}
    assert len(pauses) == 3
    assert pauses[0] < pauses[1] < pauses[2]  # doubling (jitter is at most 25 %)


def test_tries_are_bounded_and_the_last_error_is_raised(server: Receiver) -> None:
    server.configure("/down", default=_UNAVAILABLE)
    client, pauses = _client(server.url, RetryPolicy(attempts=3, backoff=0.1))
    with pytest.raises(ApiError) as raised:
        client.http.call("GET", "/down")
    assert raised.value.status == 503 and raised.value.code == "DatabaseUnavailable"
    assert len(server.requests("/down")) == 3 and len(pauses) == 2


def test_a_retry_after_beyond_the_total_time_is_not_waited_for(server: Receiver) -> None:
    later = Reply(503, {"error": {"code": "DatabaseUnavailable", "message": "away"}}, {"Retry-After": "120"})
    server.enqueue("/slow", later, Reply(200, {}))
    client, pauses = _client(server.url, RetryPolicy(total=30.0))
    with pytest.raises(ApiError):
        client.http.call("GET", "/slow")
    assert len(server.requests("/slow")) == 1 and pauses == []


def test_a_plain_post_is_not_retried_but_a_publish_with_ids_is(server: Receiver) -> None:
    server.enqueue("/topics/t/listKeys", _UNAVAILABLE, Reply(200, {}))
    client, _ = _client(server.url)
    with pytest.raises(ApiError):
        client.http.call("POST", "/topics/t/listKeys")
    assert len(server.requests("/topics/t/listKeys")) == 1

    server.enqueue("/topics/t/api/events", _UNAVAILABLE, Reply(200))
    with_id = {"id": "e1", "eventType": "T", "subject": "s", "data": {}, "dataVersion": "1"}
    client.events.publish("t", [with_id])
    sent = server.requests("/topics/t/api/events")
    assert len(sent) == 2 and sent[0].body == sent[1].body  # the same events, the same ids

    server.enqueue("/topics/t/api/events", _UNAVAILABLE, Reply(200))
    with pytest.raises(ApiError):  # an event without an id: a retry could publish it twice
        client.events.publish("t", {"eventType": "T", "subject": "s", "data": {}}, complete=False)


def test_retries_can_be_turned_off(server: Receiver) -> None:
    server.enqueue("/off", _UNAVAILABLE, Reply(200, {}))
    client, pauses = _client(server.url, RetryPolicy.none())
    with pytest.raises(ApiError):
        client.http.call("GET", "/off")
    assert len(server.requests("/off")) == 1 and pauses == []


def test_a_refused_connection_is_retried_for_any_method() -> None:
    client, pauses = _client(f"http://127.0.0.1:{free_port()}", RetryPolicy(attempts=3, backoff=0.01))
    with pytest.raises(ApiError) as raised:
        client.http.call("POST", "/topics/t/listKeys")
    assert raised.value.status == 0 and raised.value.code == "ConnectionError"
    assert len(pauses) == 2
