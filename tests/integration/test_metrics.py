"""``GET /metrics``: the counters with Azure Event Grid's meanings move as events flow.

One topic with four subscriptions, each filtered to its own subject prefix, and a real
webhook receiver on loopback:

* ``ok/``   → a webhook that fails the first attempt (500) and then accepts: delivered,
  with one failed attempt on the way;
* ``bad/``  → a webhook that answers 400, with a dead-letter destination: dead-lettered;
* ``drop/`` → the same webhook without a dead-letter destination: dropped;
* ``pull/`` → a Queue subscription, received and acknowledged: delivered;
* ``none/`` matches nothing: unmatched.

Every series is labelled by topic (and subscription where Azure's metric is per
subscription); the test reads them from the Prometheus text, never from server internals.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.support.delivery import event, make_topic, new_name, publish, subscribe, wait_until, webhook
from tests.support.receiver import Receiver, Reply
from tests.support.server import ServerProcess

DEAD_LETTERS = {"endpointType": "StorageBlob", "properties": {"blobContainerName": "deadletters"}}


def scrape(client: httpx.Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of ``/metrics`` by (sample name, labels)."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def prefixed(prefix: str) -> dict[str, str]:
    return {"subjectBeginsWith": prefix}


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as rec:
        rec.configure("/bad", default=Reply(400))
        yield rec


def test_counters_follow_published_matched_delivered_and_dead_lettered_events(
    server: ServerProcess, receiver: Receiver
) -> None:
    with server.client() as client:
        topic, _ = make_topic(client)
        ok = subscribe(client, topic, webhook(receiver.endpoint("/ok")), filter=prefixed("ok/"))
        bad = subscribe(
            client, topic, webhook(receiver.endpoint("/bad")), filter=prefixed("bad/"),
            deadLetterDestination=DEAD_LETTERS,
        )
        drop = subscribe(client, topic, webhook(receiver.endpoint("/bad")), filter=prefixed("drop/"))
        pull = subscribe(client, topic, {"endpointType": "Queue", "properties": {}}, filter=prefixed("pull/"))
        receiver.enqueue("/ok", Reply(500))

        before = scrape(client)
        assert value(before, "mlgrid_published_events_total", topic=topic) == 0

        publish(client, topic, [event(subject="ok/1"), event(subject="ok/2")])
        publish(client, topic, [event(subject="bad/1"), event(subject="drop/1"), event(subject="pull/1")])
        publish(client, topic, [event(subject="none/1")])
        rejected = client.post(f"/topics/{topic}/api/events", json=[{"id": "x"}])
        assert rejected.status_code == 400

        received = client.post(
            f"/topics/{topic}/eventsubscriptions/{pull}:receive", params={"maxEvents": 10, "maxWaitTime": 10}
        )
        assert received.status_code == 200, received.text
        tokens = [item["brokerProperties"]["lockToken"] for item in received.json()["value"]]
        assert len(tokens) == 1
        acked = client.post(
            f"/topics/{topic}/eventsubscriptions/{pull}:acknowledge", json={"lockTokens": tokens}
        )
        assert acked.json()["succeededLockTokens"] == tokens

        def settled() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
            samples = scrape(client)
            done = (
                value(samples, "mlgrid_delivery_success_events_total", topic=topic, subscription=ok) == 2
                and value(samples, "mlgrid_dead_lettered_events_total", topic=topic, subscription=bad,
                          reason="UndeliverableDueToClientError") == 1
                and value(samples, "mlgrid_dropped_events_total", topic=topic, subscription=drop,
                          reason="UndeliverableDueToClientError") == 1
            )
            return samples if done else None

        after = wait_until(settled, timeout=20, what="delivered, dead-lettered and dropped counters")

    # PublishSuccessCount, PublishFailCount, PublishSuccessLatencyInMs
    assert value(after, "mlgrid_published_events_total", topic=topic) == 6
    assert value(after, "mlgrid_publish_failed_events_total", topic=topic, error="InvalidRequest") == 1
    assert value(after, "mlgrid_publish_latency_seconds_count", topic=topic) == 3
    # MatchedEventCount (per subscription), UnmatchedEventCount
    for sub, count in ((ok, 2), (bad, 1), (drop, 1), (pull, 1)):
        assert value(after, "mlgrid_matched_events_total", topic=topic, subscription=sub) == count, sub
    assert value(after, "mlgrid_unmatched_events_total", topic=topic) == 1
    # DeliverySuccessCount: push and pull
    assert value(after, "mlgrid_delivery_success_events_total", topic=topic, subscription=ok) == 2
    assert value(after, "mlgrid_delivery_success_events_total", topic=topic, subscription=pull) == 1
    # DeliveryAttemptFailCount, by outcome
    assert value(after, "mlgrid_delivery_attempt_failed_events_total", topic=topic, subscription=ok,
                 outcome="GenericError") == 1
    assert value(after, "mlgrid_delivery_attempt_failed_events_total", topic=topic, subscription=bad,
                 outcome="BadRequest") == 1
    # DeadLetteredCount and DroppedEventCount, by reason
    assert value(after, "mlgrid_dead_lettered_events_total", topic=topic, subscription=bad,
                 reason="UndeliverableDueToClientError") == 1
    assert value(after, "mlgrid_dropped_events_total", topic=topic, subscription=drop,
                 reason="UndeliverableDueToClientError") == 1
    # DestinationProcessingDurationInMs: one observation per push attempt (2 + 1 retry to ok)
    duration = "mlgrid_destination_processing_duration_seconds_count"
    assert value(after, duration, topic=topic, subscription=ok) == 3
    assert value(after, duration, topic=topic, subscription=bad) == 1
    # The dispatcher's own gauges are exported.
    assert ("mlgrid_dispatcher_queue_depth", frozenset()) in after
    assert ("mlgrid_dispatcher_in_flight", frozenset()) in after


def test_counters_are_labelled_per_topic(server: ServerProcess, receiver: Receiver) -> None:
    """Two topics publishing at once keep separate series; nothing is counted twice."""
    with server.client() as client:
        first, _ = make_topic(client)
        second, _ = make_topic(client)
        name = new_name("sub")
        subscribe(client, first, webhook(receiver.endpoint("/ok")), name=name)
        subscribe(client, second, webhook(receiver.endpoint("/ok")), name=name)
        publish(client, first, [event() for _ in range(3)])
        publish(client, second, [event()])

        def delivered() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
            samples = scrape(client)
            success = "mlgrid_delivery_success_events_total"
            done = (
                value(samples, success, topic=first, subscription=name) == 3
                and value(samples, success, topic=second, subscription=name) == 1
            )
            return samples if done else None

        after = wait_until(delivered, timeout=20, what="deliveries of both topics")
    assert value(after, "mlgrid_published_events_total", topic=first) == 3
    assert value(after, "mlgrid_published_events_total", topic=second) == 1
    assert value(after, "mlgrid_matched_events_total", topic=first, subscription=name) == 3
    assert value(after, "mlgrid_matched_events_total", topic=second, subscription=name) == 1
