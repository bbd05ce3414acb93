"""Publishing with the official ``azure-eventgrid`` SDK and every credential form (SPEC §3).

A real server on loopback, on SQLite and PostgreSQL. The SDK's own request bodies are captured
with a ``raw_request_hook`` so the events read back with ``GET /topics/{t}/events`` can be
compared field by field with what the SDK actually sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from azure.core.credentials import AzureKeyCredential, AzureSasCredential
from azure.core.messaging import CloudEvent
from azure.core.pipeline import PipelineRequest
from azure.eventgrid import EventGridEvent, EventGridPublisherClient, generate_sas
from tests.support.publishing import (
    assert_error,
    create_topic,
    eg_event,
    event_ids,
    list_events,
    new_name,
    sign_sas,
    topic_keys,
)
from tests.support.server import ServerProcess

from mlgrid.auth.sas import generate_sas as mlgrid_generate_sas


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


class Recorder:
    """Keeps the JSON bodies the SDK sent (passed to ``send`` as ``raw_request_hook``)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], Any]] = []

    def __call__(self, request: PipelineRequest[Any]) -> None:
        http = request.http_request
        body = http.body if isinstance(http.body, str | bytes) else None
        self.requests.append((http.url, dict(http.headers), json.loads(body) if body else None))

    def sent_events(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for _, _, body in self.requests:
            events.extend(body if isinstance(body, list) else [body])
        return events


def by_id(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for e in events}


# --- the SDK -------------------------------------------------------------------------------


def test_sdk_key_credential_event_grid_events(server: ServerProcess, admin: httpx.Client) -> None:
    topic = create_topic(admin)
    key1, _ = topic_keys(admin, topic["name"])
    recorder = Recorder()
    client = EventGridPublisherClient(topic["properties"]["endpoint"], AzureKeyCredential(key1))
    sent = [
        EventGridEvent(
            subject="models/m1:1",
            event_type="Contoso.ModelReady",
            data={"score": 0.125, "tags": ["a", "b"], "nested": {"x": None}},
            data_version="2.0",
        ),
        EventGridEvent(subject="", event_type="Contoso.Empty", data="plain string", data_version=""),
        EventGridEvent(subject="s/3", event_type="Contoso.Number", data=42, data_version="1"),
    ]
    client.send(sent, raw_request_hook=recorder)
    single = EventGridEvent(subject="single", event_type="Contoso.Single", data={"one": 1}, data_version="1")
    client.send(single, raw_request_hook=recorder)

    assert [h["aeg-sas-key"] for _, h, _ in recorder.requests] == [key1, key1]
    stored = by_id(list_events(admin, topic["name"]))
    wire = recorder.sent_events()
    assert len(stored) == len(wire) == 4
    for event in wire:
        assert stored[event["id"]] == {**event, "topic": topic["id"], "metadataVersion": "1"}
    first = stored[str(sent[0].id)]
    assert first["eventType"] == "Contoso.ModelReady" and first["subject"] == "models/m1:1"
    assert first["data"] == {"score": 0.125, "tags": ["a", "b"], "nested": {"x": None}}
    assert first["dataVersion"] == "2.0"
    assert datetime.fromisoformat(first["eventTime"]) == datetime.fromisoformat(str(sent[0].event_time))


def test_sdk_sas_credential(server: ServerProcess, admin: httpx.Client) -> None:
    topic = create_topic(admin)
    _, key2 = topic_keys(admin, topic["name"])
    endpoint = topic["properties"]["endpoint"]
    # The SDK's generate_sas writes the expiry as str(datetime): "2026-11-22 10:00:00.250000+00:00".
    token = generate_sas(endpoint, key2, datetime.now(UTC) + timedelta(hours=1))
    recorder = Recorder()
    client = EventGridPublisherClient(endpoint, AzureSasCredential(token))
    event = EventGridEvent(subject="sas/1", event_type="Contoso.Sas", data={"ok": True}, data_version="1.0")
    client.send([event], raw_request_hook=recorder)

    assert recorder.requests[0][1]["aeg-sas-token"] == token
    [stored] = list_events(admin, topic["name"])
    assert stored == {**recorder.sent_events()[0], "topic": topic["id"], "metadataVersion": "1"}


def test_sdk_cloud_events_on_cloud_events_topic(server: ServerProcess, admin: httpx.Client) -> None:
    topic = create_topic(admin, schema="CloudEventSchemaV1_0")
    key1, _ = topic_keys(admin, topic["name"])
    recorder = Recorder()
    client = EventGridPublisherClient(topic["properties"]["endpoint"], AzureKeyCredential(key1))
    sent = [
        CloudEvent(
            source="/contoso/models",
            type="Contoso.ModelReady",
            subject="models/m1",
            data={"score": 0.5, "list": [1, 2, 3]},
            dataschema="https://contoso.example/schema",
            extensions={"team": "ml", "priority": 3},
        ),
        CloudEvent(
            source="/contoso/blobs",
            type="Contoso.Bytes",
            data=b"\x00\x01binary",
            datacontenttype="application/octet-stream",
        ),
        CloudEvent(source="/contoso/none", type="Contoso.NoData", data=None),
    ]
    client.send(sent, raw_request_hook=recorder)

    assert recorder.requests[0][1]["Content-Type"].startswith("application/cloudevents-batch+json")
    stored = by_id(list_events(admin, topic["name"]))
    wire = recorder.sent_events()
    assert len(stored) == len(wire) == 3
    for event in wire:
        assert stored[event["id"]] == {k: v for k, v in event.items() if v is not None}
    first = stored[str(sent[0].id)]
    assert first["specversion"] == "1.0" and first["source"] == "/contoso/models"
    assert first["type"] == "Contoso.ModelReady" and first["subject"] == "models/m1"
    assert first["team"] == "ml" and first["priority"] == 3
    assert first["dataschema"] == "https://contoso.example/schema"
    assert stored[str(sent[1].id)]["data_base64"] == "AAFiaW5hcnk="
    assert "data" not in stored[str(sent[2].id)]


def test_sdk_namespace_topic_on_cloud_events_topic(server: ServerProcess, admin: httpx.Client) -> None:
    topic = create_topic(admin, schema="CloudEventSchemaV1_0")
    key1, _ = topic_keys(admin, topic["name"])
    recorder = Recorder()
    # The namespace client builds "{endpoint}/topics/{name}:publish": the endpoint is the server.
    client = EventGridPublisherClient(server.url, AzureKeyCredential(key1), namespace_topic=topic["name"])
    batch = [
        CloudEvent(source="/ns/src", type="Contoso.Ns", data={"i": i}, subject=f"ns/{i}") for i in range(3)
    ]
    client.send(batch, raw_request_hook=recorder)
    single = CloudEvent(source="/ns/src", type="Contoso.NsSingle", data={"single": True})
    client.send(single, raw_request_hook=recorder)

    url, headers, _ = recorder.requests[0]
    assert url.startswith(f"{server.url}/topics/{topic['name']}:publish")
    assert headers["Authorization"] == f"SharedAccessKey {key1}"
    stored = by_id(list_events(admin, topic["name"]))
    wire = recorder.sent_events()
    assert len(stored) == len(wire) == 4
    for event in wire:
        assert stored[event["id"]] == event


def test_sdk_namespace_topic_on_event_grid_topic_converts(server: ServerProcess, admin: httpx.Client) -> None:
    topic = create_topic(admin)
    key1, _ = topic_keys(admin, topic["name"])
    recorder = Recorder()
    client = EventGridPublisherClient(server.url, AzureKeyCredential(key1), namespace_topic=topic["name"])
    client.send(
        [
            CloudEvent(
                source="/ns/src",
                type="Contoso.WithSubject",
                subject="orders/7",
                data={"n": 7},
                dataschema="#3.0",
            ),
            CloudEvent(source="/ns/src", type="Contoso.NoSubject", data=[1, 2]),
        ],
        raw_request_hook=recorder,
    )

    stored = by_id(list_events(admin, topic["name"]))
    wire = by_id(recorder.sent_events())
    assert set(stored) == set(wire)
    for event_id, ce in wire.items():
        assert stored[event_id] == {
            "id": event_id,
            "topic": topic["id"],
            "subject": ce.get("subject") or ce["source"],
            "eventType": ce["type"],
            "eventTime": ce["time"],
            "data": ce["data"],
            "dataVersion": "3.0" if ce.get("dataschema") == "#3.0" else "",
            "metadataVersion": "1",
        }


# --- every other credential form, over raw HTTP ----------------------------------------------


@pytest.fixture(scope="module")
def target(admin: httpx.Client) -> dict[str, Any]:
    """One Event Grid topic with its keys, shared by the credential tests."""
    topic = create_topic(admin)
    key1, key2 = topic_keys(admin, topic["name"])
    return {"name": topic["name"], "endpoint": topic["properties"]["endpoint"], "key1": key1, "key2": key2}


def _publish(
    server: ServerProcess,
    target: dict[str, Any],
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> tuple[httpx.Response, str]:
    event = eg_event()
    response = httpx.post(target["endpoint"], json=[event], headers=headers or {}, params=params, timeout=30)
    return response, event["id"]


def _accepted(admin: httpx.Client, target: dict[str, Any], response: httpx.Response, event_id: str) -> None:
    assert response.status_code == 200, response.text
    assert response.content == b""
    assert event_id in event_ids(admin, target["name"])


def _en_us(moment: datetime) -> str:
    """``M/d/yyyy h:mm:ss tt`` as .NET's en-US culture writes it."""
    hour = moment.hour % 12 or 12
    half = "AM" if moment.hour < 12 else "PM"
    return f"{moment.month}/{moment.day}/{moment.year} {hour}:{moment.minute:02d}:{moment.second:02d} {half}"


def test_sas_iso_8601_expiry(server: ServerProcess, admin: httpx.Client, target: dict[str, Any]) -> None:
    later = datetime.now(UTC) + timedelta(minutes=30)
    for token in (
        mlgrid_generate_sas(target["endpoint"], target["key1"], later),
        sign_sas(target["endpoint"], later.strftime("%Y-%m-%dT%H:%M:%SZ"), target["key2"]),
        # An offset other than UTC: 12:00+02:00 is 10:00Z.
        sign_sas(
            target["endpoint"], later.astimezone(timezone(timedelta(hours=2))).isoformat(), target["key1"]
        ),
    ):
        response, event_id = _publish(server, target, headers={"aeg-sas-token": token})
        _accepted(admin, target, response, event_id)


def test_sas_en_us_expiry(server: ServerProcess, admin: httpx.Client, target: dict[str, Any]) -> None:
    later = datetime.now(UTC) + timedelta(minutes=30)
    token = sign_sas(target["endpoint"], _en_us(later), target["key1"])
    assert "%2F" in token.split("&")[1]  # the slashes of M/d/yyyy travel encoded
    response, event_id = _publish(server, target, headers={"aeg-sas-token": token})
    _accepted(admin, target, response, event_id)


def test_sas_in_authorization_header_and_query(
    server: ServerProcess, admin: httpx.Client, target: dict[str, Any]
) -> None:
    token = sign_sas(target["endpoint"], _en_us(datetime.now(UTC) + timedelta(minutes=5)), target["key2"])
    response, event_id = _publish(server, target, headers={"Authorization": f"SharedAccessSignature {token}"})
    _accepted(admin, target, response, event_id)
    response, event_id = _publish(server, target, params={"aeg-sas-token": token})
    _accepted(admin, target, response, event_id)


def test_key_as_query_parameter_and_shared_access_key(
    server: ServerProcess, admin: httpx.Client, target: dict[str, Any]
) -> None:
    response, event_id = _publish(server, target, params={"aeg-sas-key": target["key2"]})
    _accepted(admin, target, response, event_id)
    shared_access_key = {"Authorization": f"SharedAccessKey {target['key1']}"}
    response, event_id = _publish(server, target, headers=shared_access_key)
    _accepted(admin, target, response, event_id)


def test_bearer_with_data_sender(server: ServerProcess, admin: httpx.Client, target: dict[str, Any]) -> None:
    principal = new_name("sender")
    created = admin.put(f"/principals/{principal}")
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    role = admin.put(f"/topics/{target['name']}/roleAssignments/{principal}", json={"role": "DataSender"})
    assert role.status_code in (200, 201), role.text
    response, event_id = _publish(server, target, headers={"Authorization": f"Bearer {token}"})
    _accepted(admin, target, response, event_id)
    # DataSender publishes but does not manage: reading the topic is a 403.
    read = httpx.get(f"{server.url}/topics/{target['name']}", headers={"Authorization": f"Bearer {token}"})
    assert_error(read, 403, principal)


def test_bearer_without_role_is_forbidden(
    server: ServerProcess, admin: httpx.Client, target: dict[str, Any]
) -> None:
    principal = new_name("norole")
    token = admin.put(f"/principals/{principal}").json()["token"]
    before = event_ids(admin, target["name"])
    response, _ = _publish(server, target, headers={"Authorization": f"Bearer {token}"})
    assert_error(response, 403, principal, "publish", code="Forbidden")
    # A Reader may read the topic but not publish to it.
    admin.put(f"/topics/{target['name']}/roleAssignments/{principal}", json={"role": "Reader"})
    response, _ = _publish(server, target, headers={"Authorization": f"Bearer {token}"})
    assert_error(response, 403, "Reader", code="Forbidden")
    assert event_ids(admin, target["name"]) == before


@pytest.mark.parametrize(
    ("label", "headers", "fragments"),
    [
        ("no credential", {}, ("no credentials",)),
        ("bad key", {"aeg-sas-key": "bm90IGEga2V5"}, ("aeg-sas-key",)),
        ("bad bearer", {"Authorization": "Bearer mlg_not-a-token"}, ("bearer",)),
        ("unknown scheme", {"Authorization": "Basic dXNlcjpwYXNz"}, ("Basic",)),
        ("malformed SAS", {"aeg-sas-token": "r=x&e=y"}, ("SAS token is malformed",)),
    ],
)
def test_unauthenticated_is_401(
    server: ServerProcess,
    admin: httpx.Client,
    target: dict[str, Any],
    label: str,
    headers: dict[str, str],
    fragments: tuple[str, ...],
) -> None:
    before = event_ids(admin, target["name"])
    response, _ = _publish(server, target, headers=headers)
    assert_error(response, 401, *fragments, code="Unauthorized")
    assert event_ids(admin, target["name"]) == before


def test_sas_rejections_are_401(server: ServerProcess, admin: httpx.Client, target: dict[str, Any]) -> None:
    now = datetime.now(UTC)
    other = create_topic(admin)
    other_key, _ = topic_keys(admin, other["name"])
    cases = [
        (sign_sas(target["endpoint"], _en_us(now - timedelta(minutes=5)), target["key1"]), "expired"),
        (sign_sas(target["endpoint"], _en_us(now + timedelta(minutes=5)), other_key), "signature"),
        (
            sign_sas(other["properties"]["endpoint"], _en_us(now + timedelta(minutes=5)), target["key1"]),
            other["name"],
        ),
        (sign_sas(target["endpoint"], "next tuesday", target["key1"]), "expiry"),
    ]
    before = event_ids(admin, target["name"])
    for token, fragment in cases:
        response, _ = _publish(server, target, headers={"aeg-sas-token": token})
        assert_error(response, 401, fragment, code="Unauthorized")
    assert event_ids(admin, target["name"]) == before


def test_regenerated_key_stops_working(server: ServerProcess, admin: httpx.Client) -> None:
    topic = create_topic(admin)
    key1, key2 = topic_keys(admin, topic["name"])
    regenerated = admin.post(f"/topics/{topic['name']}/regenerateKey", json={"keyName": "key1"})
    assert regenerated.status_code == 200, regenerated.text
    assert regenerated.json()["key2"] == key2 and regenerated.json()["key1"] != key1
    endpoint = topic["properties"]["endpoint"]
    assert_error(httpx.post(endpoint, json=[eg_event()], headers={"aeg-sas-key": key1}), 401)
    ok = httpx.post(endpoint, json=[eg_event()], headers={"aeg-sas-key": regenerated.json()["key1"]})
    assert ok.status_code == 200, ok.text
