"""Every attempt of a delivery is kept (``GET .../deliveries/{id}``'s ``attemptHistory``), and
an operator can end a pending delivery at once (``POST .../deliveries/{id}:deadLetter``), with
the server's shrunk retry schedule ``0.2,0.4,0.8`` and a real receiver."""

from __future__ import annotations

import httpx
from tests.support.delivery import (
    deliveries,
    event,
    make_topic,
    new_name,
    publish,
    subscribe,
    wait_until,
    webhook,
)
from tests.support.fixtures import http_client_fixture, receiver_fixture  # noqa: F401 (pytest fixtures)
from tests.support.receiver import Receiver, Reply

DEAD_LETTER = {"endpointType": "StorageBlob", "properties": {"blobContainerName": "dead-letters"}}


def _one_event(client: httpx.Client, receiver: Receiver, replies: list[Reply], default: Reply | None,
               **properties: object) -> tuple[str, str, str]:
    topic, _ = make_topic(client)
    path = "/" + new_name("p")
    if default is not None:
        receiver.configure(path, default=default)
    receiver.enqueue(path, *replies)
    sub = subscribe(client, topic, webhook(receiver.endpoint(path)), **properties)
    publish(client, topic, [event(new_name("ev"))])
    return topic, sub, path


def test_every_attempt_is_in_the_history(client: httpx.Client, receiver: Receiver) -> None:
    replies = [
        Reply(503, body={"why": "warming up"}, headers={"Retry-After": "0"}),
        Reply(500, body="boom"),
        Reply(502, body="bad gateway"),
    ]
    topic, sub, _ = _one_event(client, receiver, replies, default=Reply(200))
    base = f"/topics/{topic}/eventSubscriptions/{sub}/deliveries"
    [row] = wait_until(
        lambda: [r for r in deliveries(client, topic, sub) if r["state"] == "delivered"] or None,
        what="the delivery to succeed after three failures",
    )
    body = client.get(f"{base}/{row['id']}").json()
    history = body["attemptHistory"]
    assert [a["attempt"] for a in history] == [1, 2, 3, 4]
    assert [a["httpStatusCode"] for a in history] == [503, 500, 502, 200]
    assert history[1]["response"]["body"] == "boom"
    assert all(a["durationMs"] is not None and a["time"] for a in history)
    assert body["deliveryAttempts"] == 4 and body["state"] == "delivered"

    assert client.get(f"{base}/999999999").status_code == 404
    bad = client.get(f"{base}/abc")
    assert bad.status_code == 400 and bad.json()["error"]["details"][0]["target"] == "deliveryId"


def test_an_operator_dead_letters_a_pending_delivery_now(client: httpx.Client, receiver: Receiver) -> None:
    topic, sub, path = _one_event(client, receiver, [], default=Reply(500, body="down"),
                            deadLetterDestination=DEAD_LETTER)
    base = f"/topics/{topic}/eventSubscriptions/{sub}"
    [row] = wait_until(
        lambda: [r for r in deliveries(client, topic, sub) if r["deliveryAttempts"] >= 2] or None,
        what="two failed attempts",
    )
    assert row["state"] == "pending"

    reader = new_name("reader")
    token = client.put(f"/principals/{reader}").json()["token"]
    assigned = client.put(f"/topics/{topic}/roleAssignments/{reader}", json={"role": "Reader"})
    assert assigned.status_code in (200, 201)
    as_reader = httpx.post(f"{client.base_url}{base}/deliveries/{row['id']}:deadLetter",
                           headers={"Authorization": f"Bearer {token}"})
    assert as_reader.status_code == 403
    assert httpx.get(f"{client.base_url}{base}/deliveries/{row['id']}",
                     headers={"Authorization": f"Bearer {token}"}).status_code == 200

    ended = client.post(f"{base}/deliveries/{row['id']}:deadLetter")
    assert ended.status_code == 200, ended.text
    body = ended.json()
    assert (body["state"], body["reason"]) == ("deadLettered", "DeadLetteredByOperator")
    assert len(body["attemptHistory"]) == body["deliveryAttempts"] >= 2
    [letter] = client.get(f"{base}/deadLetters").json()["value"]
    assert letter["deadLetterReason"] == "DeadLetteredByOperator" and letter["deliveryId"] == row["id"]

    again = client.post(f"{base}/deliveries/{row['id']}:deadLetter")
    assert again.status_code == 409 and again.json()["error"]["code"] == "DeliveryNotPending"
    # It is not attempted again. Its next retry was due within 0.8 s; a second event on the same
    # subscription, failing on the same schedule, serves as the clock: by its third attempt the
    # first would have had another one.
    first_id = body["eventId"]
    sent_before = sum(1 for e in receiver.events(path) if e["id"] == first_id)
    publish(client, topic, [event(new_name("ev"))])
    wait_until(lambda: [r for r in deliveries(client, topic, sub) if r["id"] != row["id"]
                        and r["deliveryAttempts"] >= 3] or None, what="three attempts of a second event")
    assert sum(1 for e in receiver.events(path) if e["id"] == first_id) == sent_before
    assert client.get(f"{base}/deliveries/{row['id']}").json()["deliveryAttempts"] == body["deliveryAttempts"]


def test_without_a_dead_letter_destination_it_is_dropped(client: httpx.Client, receiver: Receiver) -> None:
    topic, sub, _ = _one_event(client, receiver, [], default=Reply(500))
    base = f"/topics/{topic}/eventSubscriptions/{sub}"
    [row] = wait_until(lambda: deliveries(client, topic, sub) or None, what="the delivery")
    ended = client.post(f"{base}/deliveries/{row['id']}:deadLetter").json()
    assert (ended["state"], ended["reason"]) == ("dropped", "DeadLetteredByOperator")
