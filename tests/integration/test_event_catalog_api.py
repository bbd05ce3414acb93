"""``GET /eventCatalog`` and ``GET /asyncapi.json`` against a real server: the five ML events
always (a retained one as the sample once it exists), the types seen on a custom topic with
their real sample, the subscriptions that receive each, and only what the caller may read."""

from __future__ import annotations

import httpx
from tests.support.delivery import event, make_topic, new_name, publish, subscribe, webhook
from tests.support.fixtures import http_client_fixture, receiver_fixture  # noqa: F401 (pytest fixtures)
from tests.support.receiver import Receiver
from tests.support.server import ServerProcess

from mlgrid.events.ml import ML_EVENT_TYPES, MODEL_REGISTERED


def _by_type(entries: list[dict], event_type: str, topic: str | None = None) -> dict:
    [found] = [e for e in entries if e["eventType"] == event_type and (topic is None or topic in e["topics"])]
    return found


def test_the_catalog_lists_ml_and_custom_events(
    client: httpx.Client, receiver: Receiver, server: ServerProcess
) -> None:
    topic, _ = make_topic(client)
    sub = subscribe(client, topic, webhook(receiver.endpoint("/cat")),
                    filter={"includedEventTypes": ["Test.Delivery.Happened"]})
    other = subscribe(client, topic, webhook(receiver.endpoint("/cat2")),
                      filter={"includedEventTypes": ["Something.Else"]})
    publish(client, topic, [event(new_name("ev"), data={"total": 12.5, "items": ["a"]})])
    workspace = new_name("ws")
    assert client.put(f"/workspaces/{workspace}", json={}).status_code == 201
    ml_sub = subscribe(client, workspace, webhook(receiver.endpoint("/ml")), parent="systemTopics",
                       filter={"includedEventTypes": [MODEL_REGISTERED]})
    model = client.post(f"/workspaces/{workspace}/models/churn/versions",
                        files={"file": ("model.pkl", b"\x80\x04N.")})
    assert model.status_code == 201, model.text

    entries = client.get("/eventCatalog").json()["value"]
    assert [e["eventType"] for e in entries[:5]] == list(ML_EVENT_TYPES)
    registered = _by_type(entries, MODEL_REGISTERED)
    assert registered["sampleSource"] == "retained" and registered["sample"]["data"]["ModelName"] == "churn"
    assert {"topic": workspace, "topicKind": "system", "name": ml_sub, "endpointType": "WebHook"} in (
        registered["subscriptions"]
    )
    completed = _by_type(entries, ML_EVENT_TYPES[0])
    assert completed["sampleSource"] == "example" and completed["sample"]["eventType"] == ML_EVENT_TYPES[0]
    assert ml_sub not in [s["name"] for s in completed["subscriptions"]]

    custom = _by_type(entries, "Test.Delivery.Happened", topic)
    assert custom["kind"] == "custom" and custom["sampleSource"] == "retained"
    assert custom["schema"]["properties"]["data"]["properties"]["items"] == {"type": "array",
                                                                           "items": {"type": "string"}}
    assert [s["name"] for s in custom["subscriptions"]] == [sub]
    assert other not in [s["name"] for s in custom["subscriptions"]]

    document = client.get("/asyncapi.json").json()
    assert document["asyncapi"] == "3.0.0"
    assert f"topic-{topic}" in document["channels"]
    assert {m["name"] for m in document["components"]["messages"].values()} >= set(ML_EVENT_TYPES)

    # A principal with no role anywhere sees the ML event types, none of this server's topics.
    stranger = client.put(f"/principals/{new_name('p')}").json()["token"]
    as_stranger = {"Authorization": f"Bearer {stranger}"}
    seen = httpx.get(f"{server.url}/eventCatalog", headers=as_stranger).json()["value"]
    assert [e["eventType"] for e in seen[:5]] == list(ML_EVENT_TYPES)
    assert all(e["sampleSource"] == "example" and not e["subscriptions"] for e in seen)
    assert not [e for e in seen if e["kind"] == "custom"]
    assert httpx.get(f"{server.url}/asyncapi.json").status_code == 401
