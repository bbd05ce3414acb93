"""Pull delivery for Queue subscriptions (SPEC §7) with the official ``EventGridConsumerClient``
and with mlgrid's consumer helper: receive (long poll), acknowledge, release, reject,
renewLock, lock expiry, ``maxDeliveryCount``, credentials, and the workspace alias.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridConsumerClient, EventGridPublisherClient, generate_sas
from tests.support.delivery import dead_letters, deliveries, make_topic, new_name, subscribe, wait_final
from tests.support.server import ServerProcess

from mlgrid.client.consumer import PullConsumer, RejectEvent

DEAD_LETTER = {"endpointType": "StorageBlob", "properties": {"blobContainerName": "pulled"}}


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


class Queue:
    """A CloudEvents topic with one Queue subscription, and SDK clients for both ends."""

    def __init__(self, server: ServerProcess, client: httpx.Client, **queue_properties: Any) -> None:
        self.topic, self.key = make_topic(client, "CloudEventSchemaV1_0")
        extra = queue_properties.pop("subscription_properties", {})
        self.name = subscribe(
            client, self.topic, {"endpointType": "Queue", "properties": queue_properties}, **extra
        )
        credential = AzureKeyCredential(self.key)
        self.publisher = EventGridPublisherClient(server.url, credential, namespace_topic=self.topic)
        self.consumer = EventGridConsumerClient(
            server.url, credential, namespace_topic=self.topic, subscription=self.name
        )

    def publish(self, count: int) -> list[str]:
        ids = [str(uuid.uuid4()) for _ in range(count)]
        self.publisher.send([CloudEvent(source="/tests", type="Test.Pulled", data={"n": i}, id=event_id)
                             for i, event_id in enumerate(ids)])
        return ids


@pytest.fixture(scope="module")
def expiring_lock(sqlite_server: ServerProcess) -> Iterator[tuple[Queue, str, float]]:
    """Receive one event and leave its 60-second lock to expire while the other tests of the
    module run on both backends (on a server of its own, so the minute is waited once)."""
    with sqlite_server.client() as admin:
        queue = Queue(sqlite_server, admin, receiveLockDurationInSeconds=60)
        [event_id] = queue.publish(1)
        [received] = queue.consumer.receive(max_events=1, max_wait_time=10)
        assert received.event.id == event_id
        assert received.broker_properties.delivery_count == 1
        yield queue, event_id, time.monotonic()


@pytest.fixture(scope="module")
def last_lock(sqlite_server: ServerProcess) -> Iterator[tuple[Queue, str]]:
    """An event received under its last allowed delivery (maxDeliveryCount 1) and never
    settled: when the lock runs out nobody may receive it again."""
    with sqlite_server.client() as admin:
        queue = Queue(sqlite_server, admin, maxDeliveryCount=1,
                      subscription_properties={"deadLetterDestination": DEAD_LETTER})
        [event_id] = queue.publish(1)
        [received] = queue.consumer.receive(max_events=1, max_wait_time=10)
        assert received.event.id == event_id
        yield queue, event_id


def test_lock_expiry_starts(expiring_lock: tuple[Queue, str, float], last_lock: tuple[Queue, str]) -> None:
    queue, _, _ = expiring_lock
    # While the lock is held nobody else gets the event.
    assert queue.consumer.receive(max_events=5, max_wait_time=0) == []


def test_receive_acknowledge_release_reject_renew_with_the_sdk(
    server: ServerProcess, client: httpx.Client
) -> None:
    queue = Queue(server, client, subscription_properties={"deadLetterDestination": DEAD_LETTER})
    ids = queue.publish(4)
    received = queue.consumer.receive(max_events=10, max_wait_time=10)
    assert sorted(r.event.id for r in received) == sorted(ids)
    assert all(r.broker_properties.delivery_count == 1 for r in received)
    assert all(r.event.type == "Test.Pulled" and r.event.source == "/tests" for r in received)
    by_id = {r.event.id: r.broker_properties.lock_token for r in received}
    acked, released, rejected, renewed = (by_id[i] for i in ids)

    result = queue.consumer.acknowledge(lock_tokens=[acked, "no-such-token"])
    assert result.succeeded_lock_tokens == [acked]
    assert [f.lock_token for f in result.failed_lock_tokens] == ["no-such-token"]
    assert result.failed_lock_tokens[0].error.code

    renewal = queue.consumer.renew_locks(lock_tokens=[renewed])
    assert renewal.succeeded_lock_tokens == [renewed]
    assert queue.consumer.acknowledge(lock_tokens=[renewed]).succeeded_lock_tokens == [renewed]

    rejection = queue.consumer.reject(lock_tokens=[rejected])
    assert rejection.succeeded_lock_tokens == [rejected]

    release = queue.consumer.release(lock_tokens=[released])
    assert release.succeeded_lock_tokens == [released]
    [again] = queue.consumer.receive(max_events=10, max_wait_time=10)
    assert again.event.id == ids[1]
    assert again.broker_properties.delivery_count == 2
    assert queue.consumer.acknowledge(lock_tokens=[again.broker_properties.lock_token]).succeeded_lock_tokens

    # An acknowledged token cannot be settled again.
    assert queue.consumer.acknowledge(lock_tokens=[acked]).failed_lock_tokens

    rows = {d["eventId"]: d for d in wait_final(client, queue.topic, queue.name, 4)}
    assert rows[ids[0]]["state"] == "delivered"
    assert rows[ids[1]]["state"] == "delivered" and rows[ids[1]]["deliveryAttempts"] == 2
    assert rows[ids[2]]["state"] == "deadLettered"
    assert rows[ids[2]]["reason"] == "UndeliverableDueToClientError"
    assert rows[ids[3]]["state"] == "delivered"
    [letter] = dead_letters(client, queue.topic, queue.name)
    assert letter["eventId"] == ids[2]
    assert letter["record"]["lastdeliveryoutcome"] == "Rejected"


def test_max_delivery_count_dead_letters(server: ServerProcess, client: httpx.Client) -> None:
    queue = Queue(server, client, maxDeliveryCount=2,
                  subscription_properties={"deadLetterDestination": DEAD_LETTER})
    [event_id] = queue.publish(1)
    for count in (1, 2):
        [received] = queue.consumer.receive(max_events=1, max_wait_time=10)
        assert received.broker_properties.delivery_count == count
        queue.consumer.release(lock_tokens=[received.broker_properties.lock_token])
    assert queue.consumer.receive(max_events=1, max_wait_time=0) == []
    [row] = wait_final(client, queue.topic, queue.name, 1)
    assert row["state"] == "deadLettered"
    assert row["reason"] == "MaxDeliveryAttemptsExceeded"
    [letter] = dead_letters(client, queue.topic, queue.name)
    assert letter["eventId"] == event_id
    assert letter["record"]["deliveryattempts"] == 2


def test_release_with_a_delay_hides_the_event_until_then(server: ServerProcess, client: httpx.Client) -> None:
    queue = Queue(server, client)
    queue.publish(1)
    [received] = queue.consumer.receive(max_events=1, max_wait_time=10)
    queue.consumer.release(lock_tokens=[received.broker_properties.lock_token], release_delay=10)
    assert queue.consumer.receive(max_events=1, max_wait_time=0) == []
    [row] = deliveries(client, queue.topic, queue.name, "pending")
    assert row["nextAttemptTime"] > row["lastDeliveryAttemptTime"]
    bad = httpx.post(f"{server.url}/topics/{queue.topic}/eventsubscriptions/{queue.name}:release",
                     params={"releaseDelayInSeconds": "5"}, headers={"aeg-sas-key": queue.key},
                     json={"lockTokens": ["x"]})
    assert bad.status_code == 400
    assert "releaseDelayInSeconds" in bad.json()["error"]["message"]


def test_long_poll_answers_when_an_event_arrives(server: ServerProcess, client: httpx.Client) -> None:
    queue = Queue(server, client)
    got: list[Any] = []
    waiter = threading.Thread(
        target=lambda: got.extend(queue.consumer.receive(max_events=5, max_wait_time=30))
    )
    waiter.start()
    time.sleep(0.5)
    [event_id] = queue.publish(1)
    waiter.join(35)
    assert [r.event.id for r in got] == [event_id]


def test_a_long_poll_whose_client_left_locks_nothing(server: ServerProcess, client: httpx.Client) -> None:
    """A receiver that gives up on its long poll (closes the connection) must not have the next
    event locked to it: that event would be invisible to every other receiver until the lock
    ran out, and would come back with an inflated deliveryCount."""
    queue = Queue(server, client)
    path = f"/topics/{queue.topic}/eventsubscriptions/{queue.name}:receive?maxEvents=1&maxWaitTime=30"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as gone:
        gone.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\naeg-sas-key: {queue.key}\r\n"
            "Content-Length: 0\r\n\r\n".encode()
        )
        time.sleep(0.5)  # the poll is waiting
    time.sleep(0.3)
    [event_id] = queue.publish(1)
    received = queue.consumer.receive(max_events=1, max_wait_time=5)
    assert [(r.event.id, r.broker_properties.delivery_count) for r in received] == [(event_id, 1)]


def test_event_grid_schema_queue_and_raw_routes(server: ServerProcess, client: httpx.Client) -> None:
    topic, key = make_topic(client)
    name = subscribe(client, topic, {"endpointType": "Queue", "properties": {}},
                     eventDeliverySchema="EventGridSchema")
    event = {"id": "raw-1", "eventType": "Test.Raw", "subject": "s", "eventTime": "2026-01-01T00:00:00Z",
             "data": {"x": 1}, "dataVersion": "1"}
    assert client.post(f"/topics/{topic}/api/events", json=[event]).status_code == 200
    # The camel-case spelling is accepted too; api-version is ignored.
    response = httpx.post(f"{server.url}/topics/{topic}/eventSubscriptions/{name}:receive",
                          params={"maxEvents": 3, "maxWaitTime": 5, "api-version": "2024-06-01"},
                          headers={"Authorization": f"SharedAccessKey {key}"})
    assert response.status_code == 200, response.text
    [item] = response.json()["value"]
    assert item["event"]["eventType"] == "Test.Raw" and item["event"]["id"] == "raw-1"
    assert item["brokerProperties"]["deliveryCount"] == 1
    for params in ({"maxEvents": 0}, {"maxEvents": 101}, {"maxWaitTime": 121}, {"maxEvents": "x"}):
        bad = httpx.post(f"{server.url}/topics/{topic}/eventsubscriptions/{name}:receive", params=params,
                         headers={"aeg-sas-key": key})
        assert bad.status_code == 400, params
        assert next(iter(params)) in bad.json()["error"]["message"]
    no_tokens = httpx.post(f"{server.url}/topics/{topic}/eventsubscriptions/{name}:acknowledge",
                           headers={"aeg-sas-key": key}, json={"lockTokens": []})
    assert no_tokens.status_code == 400 and "lockTokens" in no_tokens.json()["error"]["message"]


def test_credentials(server: ServerProcess, client: httpx.Client) -> None:
    queue = Queue(server, client)
    url = f"{server.url}/topics/{queue.topic}/eventsubscriptions/{queue.name}:receive"
    assert httpx.post(url, params={"maxWaitTime": 0}).status_code == 401
    assert httpx.post(url, params={"maxWaitTime": 0}, headers={"aeg-sas-key": "wrong"}).status_code == 401
    with pytest.raises(ClientAuthenticationError):
        EventGridConsumerClient(server.url, AzureKeyCredential("d3Jvbmc="), namespace_topic=queue.topic,
                                subscription=queue.name).receive(max_wait_time=0)

    from datetime import UTC, datetime, timedelta

    # The SDK's consumer client takes keys only; a SAS token works over plain HTTP.
    expiry = datetime.now(UTC) + timedelta(hours=1)
    sas = generate_sas(f"{server.url}/topics/{queue.topic}", queue.key, expiry)
    with_sas = httpx.post(url, params={"maxWaitTime": 0}, headers={"aeg-sas-token": sas})
    assert with_sas.status_code == 200, with_sas.text
    as_header = httpx.post(url, params={"maxWaitTime": 0},
                           headers={"Authorization": f"SharedAccessSignature {sas}"})
    assert as_header.status_code == 200, as_header.text

    receiver_name, sender_name = new_name("rcv"), new_name("snd")
    receiver_token = client.put(f"/principals/{receiver_name}").json()["token"]
    sender_token = client.put(f"/principals/{sender_name}").json()["token"]
    assert client.put(f"/topics/{queue.topic}/roleAssignments/{receiver_name}",
                      json={"role": "DataReceiver"}).status_code in (200, 201)
    assert client.put(f"/topics/{queue.topic}/roleAssignments/{sender_name}",
                      json={"role": "DataSender"}).status_code in (200, 201)
    ok = httpx.post(url, params={"maxWaitTime": 0}, headers={"Authorization": f"Bearer {receiver_token}"})
    assert ok.status_code == 200, ok.text
    denied = httpx.post(url, params={"maxWaitTime": 0}, headers={"Authorization": f"Bearer {sender_token}"})
    assert denied.status_code == 403


def test_push_subscriptions_cannot_be_received_from(server: ServerProcess, client: httpx.Client) -> None:
    from tests.support.receiver import Receiver

    topic, key = make_topic(client)
    with Receiver() as receiver:
        name = subscribe(client, topic, {"endpointType": "WebHook",
                                         "properties": {"endpointUrl": receiver.endpoint("/x")}})
        response = httpx.post(f"{server.url}/topics/{topic}/eventsubscriptions/{name}:receive",
                              params={"maxWaitTime": 0}, headers={"aeg-sas-key": key})
    assert response.status_code == 400
    missing = httpx.post(f"{server.url}/topics/{topic}/eventsubscriptions/nope-nope:receive",
                         params={"maxWaitTime": 0}, headers={"aeg-sas-key": key})
    assert missing.status_code == 404


def test_consumer_helper_iteration_acks_or_releases(server: ServerProcess, client: httpx.Client) -> None:
    queue = Queue(server, client)
    ids = queue.publish(3)
    seen: list[tuple[str, int]] = []
    with PullConsumer(server.url, queue.topic, queue.name, key=queue.key, max_wait_time=5) as consumer:
        with pytest.raises(RuntimeError):
            for event in consumer:
                seen.append((event["id"], event.delivery_count))
                if len(seen) == 2:
                    raise RuntimeError("handler failed on the second event")
        for event in consumer:
            seen.append((event["id"], event.delivery_count))
            if len(seen) == 4:
                consumer.stop()
    rows = {d["eventId"]: d for d in deliveries(client, queue.topic, queue.name)}
    assert sum(r["state"] == "delivered" for r in rows.values()) == 3, rows
    assert seen[0][1] == 1
    failed_id = seen[1][0]
    assert (failed_id, 2) in seen[2:]  # released, then received again
    assert sorted({i for i, _ in seen}) == sorted(ids)


def test_consumer_helper_run_acks_rejects_and_releases(server: ServerProcess, client: httpx.Client) -> None:
    queue = Queue(server, client, maxDeliveryCount=2,
                  subscription_properties={"deadLetterDestination": DEAD_LETTER})
    good, bad, flaky = queue.publish(3)
    attempts: dict[str, int] = {}

    def handler(event: Any) -> None:
        attempts[event["id"]] = attempts.get(event["id"], 0) + 1
        if event["id"] == bad:
            raise RejectEvent("malformed")
        if event["id"] == flaky and attempts[flaky] == 1:
            raise ValueError("transient")

    consumer = PullConsumer(server.url, queue.topic, queue.name, key=queue.key, max_wait_time=1)
    try:
        handled = consumer.run(handler, stop_when_idle=True)
    finally:
        consumer.close()
    assert handled == 4
    assert attempts == {good: 1, bad: 1, flaky: 2}
    rows = {d["eventId"]: d for d in wait_final(client, queue.topic, queue.name, 3)}
    assert rows[good]["state"] == "delivered"
    assert rows[flaky]["state"] == "delivered" and rows[flaky]["deliveryAttempts"] == 2
    assert rows[bad]["state"] == "deadLettered"


def test_workspace_alias_routes(server: ServerProcess, client: httpx.Client) -> None:
    workspace = new_name("ws")
    created = client.put(f"/workspaces/{workspace}", json={"properties": {}})
    if created.status_code not in (200, 201):
        pytest.skip(f"workspace API unavailable: {created.status_code}")
    keys = client.post(f"/systemTopics/{workspace}/listKeys")
    name = subscribe(client, workspace, {"endpointType": "Queue", "properties": {}}, parent="workspaces")
    for parent in ("workspaces", "systemTopics"):
        response = client.post(f"/{parent}/{workspace}/eventsubscriptions/{name}:receive",
                               params={"maxWaitTime": 0})
        assert response.status_code == 200, response.text
        assert response.json() == {"value": []}
        listed = client.get(f"/{parent}/{workspace}/eventSubscriptions/{name}/deliveries")
        assert listed.status_code == 200
    if keys.status_code == 200:
        with_key = httpx.post(f"{server.url}/systemTopics/{workspace}/eventsubscriptions/{name}:receive",
                              params={"maxWaitTime": 0}, headers={"aeg-sas-key": keys.json()["key1"]})
        assert with_key.status_code == 200


def test_lock_expiry_brings_the_event_back_with_the_next_delivery_count(
    expiring_lock: tuple[Queue, str, float], sqlite_server: ServerProcess
) -> None:
    queue, event_id, locked_at = expiring_lock
    remaining = 60.5 - (time.monotonic() - locked_at)
    if remaining > 0:
        time.sleep(remaining)
    [again] = queue.consumer.receive(max_events=1, max_wait_time=30)
    assert again.event.id == event_id
    assert again.broker_properties.delivery_count == 2
    queue.consumer.acknowledge(lock_tokens=[again.broker_properties.lock_token])
    with sqlite_server.client() as admin:
        [row] = wait_final(admin, queue.topic, queue.name, 1)
    assert row["state"] == "delivered" and row["deliveryAttempts"] == 2


def test_an_expired_lock_on_the_last_delivery_dead_letters_without_a_receive(
    expiring_lock: tuple[Queue, str, float], last_lock: tuple[Queue, str], sqlite_server: ServerProcess
) -> None:
    queue, event_id = last_lock
    with sqlite_server.client() as admin:
        [row] = wait_final(admin, queue.topic, queue.name, 1, timeout=30)
        assert row["state"] == "deadLettered"
        assert row["reason"] == "MaxDeliveryAttemptsExceeded"
        [letter] = dead_letters(admin, queue.topic, queue.name)
    assert letter["eventId"] == event_id
    assert letter["record"]["lastdeliveryoutcome"] == "LockExpired"
