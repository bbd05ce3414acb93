"""What each answer of an endpoint leads to (SPEC §6.2–§6.5), with the shrunk retry schedule
``0.2,0.4,0.8`` of the test servers: success codes, codes that are not retried, retried codes,
``Retry-After``, redirects, ``maxDeliveryAttempts``, time to live, dead letters (database,
API and blob) and drops.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from tests.support.delivery import (
    dead_letters,
    deliveries,
    event,
    make_topic,
    new_name,
    notifications,
    publish,
    subscribe,
    wait_final,
    webhook,
)
from tests.support.fixtures import http_client_fixture, receiver_fixture  # noqa: F401 (pytest fixtures)
from tests.support.receiver import Receiver, Reply
from tests.support.server import ServerProcess

DEAD_LETTER = {"endpointType": "StorageBlob", "properties": {"blobContainerName": "dead-letters"}}


def one_event_subscription(
    client: httpx.Client, receiver: Receiver, replies: list[Reply], default: Reply | None = None,
    **properties: object,
) -> tuple[str, str, str, str]:
    """A topic with one subscription whose endpoint answers ``replies`` then ``default``, and
    one published event; returns (topic, subscription, path, event id)."""
    topic, _ = make_topic(client)
    path = "/" + new_name("p")
    if default is not None:
        receiver.configure(path, default=default)
    receiver.enqueue(path, *replies)
    sub = subscribe(client, topic, webhook(receiver.endpoint(path)), **properties)
    event_id = new_name("ev")
    publish(client, topic, [event(event_id)])
    return topic, sub, path, event_id


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_success_codes_deliver(client: httpx.Client, receiver: Receiver, status: int) -> None:
    topic, sub, path, _ = one_event_subscription(client, receiver, [Reply(status)])
    [row] = wait_final(client, topic, sub, 1)
    assert row["state"] == "delivered"
    assert row["deliveryAttempts"] == 1
    assert row["lastHttpStatusCode"] == status
    assert len(receiver.notifications(path)) == 1


@pytest.mark.parametrize(("status", "outcome"), [
    (400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (410, "Gone"), (413, "PayloadTooLarge"),
])
def test_client_errors_are_not_retried(
    client: httpx.Client, receiver: Receiver, status: int, outcome: str
) -> None:
    topic, sub, path, _ = one_event_subscription(client, receiver, [], default=Reply(status))
    [row] = wait_final(client, topic, sub, 1)
    assert row["state"] == "dropped"
    assert row["reason"] == "UndeliverableDueToClientError"
    assert row["lastDeliveryOutcome"] == outcome
    assert row["lastHttpStatusCode"] == status
    assert row["deliveryAttempts"] == 1
    assert len(receiver.notifications(path)) == 1


@pytest.mark.parametrize("status", [500, 502, 404, 408, 503])
def test_retried_codes_follow_the_schedule_until_success(
    client: httpx.Client, receiver: Receiver, status: int
) -> None:
    # A custom schedule replaces the per-status minimum delays (404 >= 5 min etc.).
    topic, sub, path, event_id = one_event_subscription(client, receiver, [Reply(status), Reply(status)])
    [row] = wait_final(client, topic, sub, 1)
    assert row["state"] == "delivered"
    assert row["deliveryAttempts"] == 3
    requests = receiver.notifications(path)
    assert [r.header("aeg-delivery-count") for r in requests] == ["0", "1", "2"]
    assert {r.events()[0]["id"] for r in requests} == {event_id}


def test_429_waits_for_retry_after(client: httpx.Client, receiver: Receiver) -> None:
    topic, sub, path, _ = one_event_subscription(
        client, receiver, [Reply(429, headers={"Retry-After": "2"})])
    wait_final(client, topic, sub, 1)
    first, second = receiver.notifications(path)
    assert second.received_at - first.received_at >= 1.9


def test_redirects_are_failures_and_not_followed(client: httpx.Client, receiver: Receiver) -> None:
    elsewhere = "/" + new_name("elsewhere")
    topic, sub, path, _ = one_event_subscription(
        client, receiver, [], default=Reply(307, headers={"Location": receiver.endpoint(elsewhere)}),
        retryPolicy={"maxDeliveryAttempts": 2, "eventTimeToLiveInMinutes": 1440},
    )
    [row] = wait_final(client, topic, sub, 1)
    assert row["state"] == "dropped"
    assert row["reason"] == "MaxDeliveryAttemptsExceeded"
    assert row["lastHttpStatusCode"] == 307
    assert len(receiver.notifications(path)) == 2
    assert receiver.requests(elsewhere) == []


def test_max_delivery_attempts_dead_letters_with_a_blob(
    server: ServerProcess, client: httpx.Client, receiver: Receiver
) -> None:
    topic, sub, path, event_id = one_event_subscription(
        client, receiver, [], default=Reply(500),
        retryPolicy={"maxDeliveryAttempts": 3, "eventTimeToLiveInMinutes": 1440},
        deadLetterDestination=DEAD_LETTER,
    )
    [row] = wait_final(client, topic, sub, 1)
    assert row["state"] == "deadLettered"
    assert row["reason"] == "MaxDeliveryAttemptsExceeded"
    assert row["deliveryAttempts"] == 3
    assert len(receiver.notifications(path)) == 3

    [letter] = dead_letters(client, topic, sub)
    assert letter["eventId"] == event_id
    assert letter["deadLetterReason"] == "MaxDeliveryAttemptsExceeded"
    record = letter["record"]
    assert record["id"] == event_id
    assert record["deadLetterReason"] == "MaxDeliveryAttemptsExceeded"
    assert record["deliveryAttempts"] == 3
    assert record["lastDeliveryOutcome"] == "GenericError"
    assert record["lastHttpStatusCode"] == 500
    assert record["publishTime"].endswith("Z")
    assert record["lastDeliveryAttemptTime"].endswith("Z")

    # <container>/<SUBSCRIPTION-NAME-UPPER>/<YYYY>/<M>/<D>/<H>/<uuid>.json, no zero padding.
    blob = Path(letter["blobPath"])
    parts = blob.parts
    assert parts[0] == "dead-letters" and parts[1] == sub.upper()
    year, month, day, hour = parts[2:6]
    assert len(year) == 4 and all(not p.startswith("0") or p == "0" for p in (month, day, hour))
    assert blob.suffix == ".json"
    content = json.loads((server.data_dir / "blobs" / blob).read_text())
    assert isinstance(content, list)
    assert [r["id"] for r in content] == [event_id]
    assert content[0] == record


def test_cloudevents_dead_letter_fields_are_lower_case(client: httpx.Client, receiver: Receiver) -> None:
    topic, sub, _, _ = one_event_subscription(
        client, receiver, [], default=Reply(400),
        eventDeliverySchema="CloudEventSchemaV1_0", deadLetterDestination=DEAD_LETTER,
    )
    wait_final(client, topic, sub, 1)
    [letter] = dead_letters(client, topic, sub)
    record = letter["record"]
    assert record["specversion"] == "1.0"
    assert record["deadletterreason"] == "UndeliverableDueToClientError"
    assert record["lastdeliveryoutcome"] == "BadRequest"
    assert record["lasthttpstatuscode"] == 400


def test_time_to_live_ends_retries(client: httpx.Client, receiver: Receiver) -> None:
    # The endpoint asks for a wait longer than the event's 1-minute time to live.
    topic, sub, path, _ = one_event_subscription(
        client, receiver, [], default=Reply(429, headers={"Retry-After": "120"}),
        retryPolicy={"maxDeliveryAttempts": 30, "eventTimeToLiveInMinutes": 1},
    )
    [row] = wait_final(client, topic, sub, 1)
    assert row["state"] == "dropped"
    assert row["reason"] == "TimeToLiveExceeded"
    assert row["lastDeliveryOutcome"] == "Busy"
    assert len(receiver.notifications(path)) == 1


def test_connection_failures_are_retried(client: httpx.Client) -> None:
    topic, _ = make_topic(client)
    # Nothing listens on this port: the handshake cannot run, so create without it is not
    # possible; use a receiver that goes away after validating.
    with Receiver() as gone:
        url = gone.endpoint("/gone")
        sub = subscribe(client, topic, webhook(url),
                        retryPolicy={"maxDeliveryAttempts": 2, "eventTimeToLiveInMinutes": 1440})
    publish(client, topic, [event()])
    [row] = wait_final(client, topic, sub, 1)
    assert row["state"] == "dropped"
    assert row["reason"] == "MaxDeliveryAttemptsExceeded"
    assert row["lastDeliveryOutcome"] == "SocketError"
    assert row["lastHttpStatusCode"] is None
    assert row["deliveryAttempts"] == 2


def test_deliveries_api_lists_each_state(client: httpx.Client, receiver: Receiver) -> None:
    topic, _ = make_topic(client)
    ok, slow, bad = ("/" + new_name(p) for p in ("ok", "slow", "bad"))
    receiver.configure(slow, default=Reply(200, delay=2.0))
    receiver.configure(bad, default=Reply(400))
    subs = {
        "ok": subscribe(client, topic, webhook(receiver.endpoint(ok))),
        "slow": subscribe(client, topic, webhook(receiver.endpoint(slow))),
        "bad": subscribe(client, topic, webhook(receiver.endpoint(bad)), deadLetterDestination=DEAD_LETTER),
    }
    event_id = new_name("ev")
    publish(client, topic, [event(event_id, event_type="Test.Listed")])
    notifications(receiver, slow)
    [pending] = deliveries(client, topic, subs["slow"], "pending")
    assert pending["eventId"] == event_id and pending["eventType"] == "Test.Listed"
    assert pending["nextAttemptTime"] is not None and pending["finishedTime"] is None
    [done] = wait_final(client, topic, subs["ok"], 1)
    assert done["state"] == "delivered" and done["finishedTime"] is not None
    assert deliveries(client, topic, subs["ok"], "delivered") == [done]
    assert deliveries(client, topic, subs["ok"], "pending") == []
    wait_final(client, topic, subs["bad"], 1)
    [lettered] = deliveries(client, topic, subs["bad"], "deadLettered")
    assert lettered["reason"] == "UndeliverableDueToClientError"
    wait_final(client, topic, subs["slow"], 1, timeout=10)
    bad_state = client.get(f"/topics/{topic}/eventSubscriptions/{subs['ok']}/deliveries",
                           params={"state": "nope"})
    assert bad_state.status_code == 400
    assert "state" in bad_state.json()["error"]["message"]


def test_deliveries_are_paged(client: httpx.Client, receiver: Receiver) -> None:
    topic, _ = make_topic(client)
    path = "/" + new_name("page")
    sub = subscribe(client, topic, webhook(receiver.endpoint(path), maxEventsPerBatch=50))
    publish(client, topic, [event(f"page-{i}") for i in range(7)])
    wait_final(client, topic, sub, 7)
    first = client.get(f"/topics/{topic}/eventSubscriptions/{sub}/deliveries", params={"top": 5}).json()
    assert len(first["value"]) == 5
    second = client.get(first["nextLink"]).json()
    assert len(second["value"]) == 2 and "nextLink" not in second
    ids = [d["eventId"] for d in first["value"] + second["value"]]
    assert sorted(ids) == sorted(f"page-{i}" for i in range(7))


def test_redeliver_queues_dead_letters_again(client: httpx.Client, receiver: Receiver) -> None:
    topic, _ = make_topic(client)
    path = "/" + new_name("redeliver")
    receiver.configure(path, default=Reply(403))
    sub = subscribe(client, topic, webhook(receiver.endpoint(path)), deadLetterDestination=DEAD_LETTER)
    ids = [new_name("ev") for _ in range(3)]
    publish(client, topic, [event(i) for i in ids])
    wait_final(client, topic, sub, 3)
    letters = dead_letters(client, topic, sub)
    assert sorted(d["eventId"] for d in letters) == sorted(ids)

    receiver.configure(path, default=Reply(200))
    one = letters[0]
    response = client.post(f"/topics/{topic}/eventSubscriptions/{sub}/deadLetters/redeliver",
                           json={"ids": [one["id"], "not-a-dead-letter"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [v["id"] for v in body["value"]] == [one["id"]]
    assert body["unknownIds"] == ["not-a-dead-letter"]
    wait_final(client, topic, sub, 4)
    delivered = [e["id"] for r in receiver.notifications(path) if r.json() for e in r.events()]
    assert delivered.count(one["eventId"]) == 2

    # By event id, as well as by dead-letter id.
    by_event = client.post(f"/topics/{topic}/eventSubscriptions/{sub}/deadLetters/redeliver",
                           json={"ids": [letters[1]["eventId"]]})
    [queued] = by_event.json()["value"]
    assert (queued["id"], queued["eventId"]) == (letters[1]["id"], letters[1]["eventId"])
    rest = client.post(f"/topics/{topic}/eventSubscriptions/{sub}/deadLetters/redeliver")
    assert rest.status_code == 200, rest.text
    assert [v["id"] for v in rest.json()["value"]] == [letters[2]["id"]]
    rows = wait_final(client, topic, sub, 6)
    assert sum(r["state"] == "delivered" for r in rows) == 3
    assert all(d["redeliveredTime"] for d in dead_letters(client, topic, sub))
    again = client.post(f"/topics/{topic}/eventSubscriptions/{sub}/deadLetters/redeliver", json={})
    assert again.json()["value"] == []


def test_replay_redelivers_retained_events_that_match_the_filter(
    client: httpx.Client, receiver: Receiver
) -> None:
    topic, _ = make_topic(client)
    path = "/" + new_name("replay")
    sub = subscribe(client, topic, webhook(receiver.endpoint(path)),
                    filter={"includedEventTypes": ["Test.Wanted"]})
    wanted = [new_name("w") for _ in range(3)]
    publish(client, topic, [event(i, event_type="Test.Wanted") for i in wanted]
            + [event(new_name("u"), event_type="Test.Other")])
    wait_final(client, topic, sub, 3)

    response = client.post(f"/topics/{topic}/eventSubscriptions/{sub}/replay",
                           json={"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"})
    assert response.status_code == 200, response.text
    assert response.json()["examinedEvents"] == 4
    assert response.json()["replayedEvents"] == 3
    wait_final(client, topic, sub, 6)
    delivered = sorted(e["id"] for e in receiver.events(path))
    assert delivered == sorted(wanted * 2)

    empty = client.post(f"/topics/{topic}/eventSubscriptions/{sub}/replay",
                        json={"from": "2000-01-01T00:00:00Z", "to": "2000-01-02T00:00:00Z"})
    assert empty.json()["replayedEvents"] == 0
    bad = client.post(f"/topics/{topic}/eventSubscriptions/{sub}/replay", json={"from": "yesterday"})
    assert bad.status_code == 400 and "from" in bad.json()["error"]["message"]
    backwards = client.post(f"/topics/{topic}/eventSubscriptions/{sub}/replay",
                            json={"from": "2001-01-01T00:00:00Z", "to": "2000-01-01T00:00:00Z"})
    assert backwards.status_code == 400


def test_deleting_a_subscription_dead_letters_its_pending_deliveries(
    server: ServerProcess, client: httpx.Client, receiver: Receiver
) -> None:
    topic, _ = make_topic(client)
    path = "/" + new_name("deleted")
    receiver.configure(path, default=Reply(503))
    name = new_name("sub")
    subscribe(client, topic, webhook(receiver.endpoint(path)), name=name, deadLetterDestination=DEAD_LETTER)
    event_id = new_name("ev")
    publish(client, topic, [event(event_id)])
    notifications(receiver, path)
    assert client.delete(f"/topics/{topic}/eventSubscriptions/{name}").status_code == 204

    folder = server.data_dir / "blobs" / "dead-letters" / name.upper()

    def records() -> list[dict[str, object]]:
        found = []
        for blob in folder.rglob("*.json") if folder.exists() else []:
            found.extend(json.loads(blob.read_text()))
        return [r for r in found if r["deadLetterReason"] == "SubscriptionDeleted"]

    from tests.support.delivery import wait_until

    [record] = wait_until(records, timeout=10, what="a SubscriptionDeleted dead letter")
    assert record["id"] == event_id
    assert record["deliveryAttempts"] >= 1


def test_delivery_metrics_are_exported(client: httpx.Client, receiver: Receiver) -> None:
    topic, sub, _, _ = one_event_subscription(client, receiver, [Reply(500)])
    wait_final(client, topic, sub, 1)
    text = client.get("/metrics").text
    assert "mlgrid_delivery_success_events_total" in text
    assert "mlgrid_delivery_attempt_failed_events_total" in text
    assert "mlgrid_destination_processing_duration_seconds" in text


def test_an_unhealthy_endpoint_holds_new_events_back_but_drops_nothing(
    client: httpx.Client, receiver: Receiver
) -> None:
    topic, _ = make_topic(client)
    path = "/" + new_name("unhealthy")
    receiver.configure(path, default=Reply(500))
    sub = subscribe(client, topic, webhook(receiver.endpoint(path)),
                    retryPolicy={"maxDeliveryAttempts": 2, "eventTimeToLiveInMinutes": 1440})
    publish(client, topic, [event(f"cb-{i}") for i in range(15)])
    rows = wait_final(client, topic, sub, 15, timeout=30)
    # Every event still got its two attempts: the circuit only delays first attempts.
    assert all(r["state"] == "dropped" and r["reason"] == "MaxDeliveryAttemptsExceeded" for r in rows)
    assert all(r["deliveryAttempts"] == 2 for r in rows)
    assert len(receiver.notifications(path)) == 30


def test_delivery_routes_check_roles(client: httpx.Client, receiver: Receiver) -> None:
    topic, sub, _, _ = one_event_subscription(client, receiver, [])
    wait_final(client, topic, sub, 1)
    base = f"/topics/{topic}/eventSubscriptions/{sub}"
    tokens = {}
    for role in ("Reader", "DataSender"):
        name = new_name(role.lower())
        tokens[role] = client.put(f"/principals/{name}").json()["token"]
        assigned = client.put(f"/topics/{topic}/roleAssignments/{name}", json={"role": role})
        assert assigned.status_code in (200, 201)

    def call(role: str | None, method: str, path: str, body: object = None) -> int:
        headers = {"Authorization": f"Bearer {tokens[role]}"} if role else {}
        response = httpx.request(method, str(client.base_url) + path, headers=headers, json=body)
        return response.status_code

    replay = {"from": "2000-01-01T00:00:00Z"}
    assert call("Reader", "GET", f"{base}/deliveries") == 200
    assert call("Reader", "GET", f"{base}/deadLetters") == 200
    assert call("Reader", "POST", f"{base}/replay", replay) == 403
    assert call("Reader", "POST", f"{base}/deadLetters/redeliver", {}) == 403
    assert call("DataSender", "GET", f"{base}/deliveries") == 403
    assert call(None, "GET", f"{base}/deliveries") == 401
    assert client.post(f"{base}/replay", json=replay).status_code == 200
