"""Topic management, principals, RBAC, retained-event listing and the operational routes
(SPEC §1, §3, §8, §10, §12) on SQLite and PostgreSQL.

Every 4xx asserts the status, the error envelope and the field the message names, and that
the rejected request changed nothing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from tests.support.publishing import (
    assert_error,
    create_topic,
    eg_event,
    event_ids,
    list_events,
    new_name,
    topic_keys,
)
from tests.support.server import ServerProcess

from mlgrid.config import Settings
from mlgrid.server import create_app


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def bearer(server: ServerProcess, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def new_principal(admin: httpx.Client, prefix: str = "p") -> tuple[str, str]:
    name = new_name(prefix)
    response = admin.put(f"/principals/{name}")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == name
    return name, body["token"]


def publish(server: ServerProcess, topic: str, key: str, events: list[dict[str, Any]]) -> None:
    response = httpx.post(
        f"{server.url}/topics/{topic}/api/events", json=events, headers={"aeg-sas-key": key}
    )
    assert response.status_code == 200, response.text


# --- create, read, replace, delete --------------------------------------------------------------


def test_topic_lifecycle(server: ServerProcess, admin: httpx.Client) -> None:
    name = new_name("Life")
    created = admin.put(
        f"/topics/{name}", json={"properties": {"resourceGroup": "rg-1", "retentionInDays": 3}}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    subscription_id = body["id"].split("/")[2]
    assert body["id"] == (
        f"/subscriptions/{subscription_id}/resourceGroups/rg-1/providers/Microsoft.EventGrid/topics/{name}"
    )
    assert body["name"] == name and body["type"] == "Microsoft.EventGrid/topics"
    assert body["properties"]["endpoint"] == f"{server.url}/topics/{name}/api/events"
    assert body["properties"]["inputSchema"] == "EventGridSchema"
    assert body["properties"]["retentionInDays"] == 3
    assert body["properties"]["provisioningState"] == "Succeeded"
    assert body["etag"]

    # Names are case-insensitive: the other spelling reads and replaces the same topic.
    read = admin.get(f"/topics/{name.upper()}")
    assert read.status_code == 200 and read.json()["id"] == body["id"]
    replaced = admin.put(f"/topics/{name.lower()}", json={"properties": {"resourceGroup": "rg-1"}})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["properties"]["retentionInDays"] == 1
    assert replaced.json()["etag"] != body["etag"]
    assert name in [t["name"] for t in admin.get("/topics").json()["value"]]

    key1, _ = topic_keys(admin, name)
    publish(server, name, key1, [eg_event()])
    deleted = admin.delete(f"/topics/{name}")
    assert deleted.status_code == 204, deleted.text
    assert_error(admin.get(f"/topics/{name}"), 404, name, code="NotFound")
    assert_error(admin.delete(f"/topics/{name}"), 404, name, code="NotFound")
    assert_error(admin.get(f"/topics/{name}/events"), 404, name)
    response = httpx.post(
        f"{server.url}/topics/{name}/api/events", json=[eg_event()], headers={"aeg-sas-key": key1}
    )
    assert_error(response, 404, name)
    # A topic created again under the name starts empty, with new keys.
    admin.put(f"/topics/{name}", json={})
    assert list_events(admin, name) == []
    assert topic_keys(admin, name)[0] != key1


def test_get_round_trip_is_accepted(admin: httpx.Client) -> None:
    """A body copied from a GET (read-only fields included) can be PUT back unchanged."""
    topic = create_topic(admin, schema="CloudEventSchemaV1_0", retentionInDays=5)
    again = admin.put(f"/topics/{topic['name']}", json=topic)
    assert again.status_code == 200, again.text
    assert again.json()["properties"] == topic["properties"]
    azure_extras = {
        "properties": {
            "inputSchema": "CloudEventSchemaV1_0",
            "publicNetworkAccess": "Enabled",
            "disableLocalAuth": False,
            "inboundIpRules": [],
        },
        "location": "westeurope",
        "tags": {"team": "ml"},
        "sku": {"name": "Basic"},
    }
    assert admin.put(f"/topics/{topic['name']}", json=azure_extras).status_code == 200


@pytest.mark.parametrize(
    "name",
    ["ab", "x" * 65, "has.dot", "has!bang", "has%20space", "caf%C3%A9", "semi;colon"],
)
def test_bad_topic_names_are_400(admin: httpx.Client, name: str) -> None:
    assert_error(admin.put(f"/topics/{name}", json={}), 400, "topicName", code="InvalidRequest")


def test_name_limits_are_accepted(admin: httpx.Client) -> None:
    for name in ("a-_", "Z" + "9" * 63):
        response = admin.put(f"/topics/{name}", json={})
        assert response.status_code in (200, 201), response.text
        assert admin.delete(f"/topics/{name}").status_code == 204


BAD_BODIES: list[tuple[str, Any, tuple[str, ...]]] = [
    ("array body", [], ("body",)),
    ("unknown top-level field", {"properties": {}, "color": "red"}, ("color", "unknown field")),
    (
        "unknown property",
        {"properties": {"inputschema": "EventGridSchema"}},
        ("properties.inputschema", "unknown"),
    ),
    ("properties not an object", {"properties": "EventGridSchema"}, ("properties",)),
    ("unknown input schema", {"properties": {"inputSchema": "AvroSchema"}}, ("properties.inputSchema",)),
    ("input schema a number", {"properties": {"inputSchema": 1}}, ("properties.inputSchema",)),
    ("retention 0", {"properties": {"retentionInDays": 0}}, ("properties.retentionInDays", "1 to 30")),
    ("retention 31", {"properties": {"retentionInDays": 31}}, ("properties.retentionInDays",)),
    ("retention a string", {"properties": {"retentionInDays": "2"}}, ("properties.retentionInDays",)),
    ("retention a fraction", {"properties": {"retentionInDays": 1.5}}, ("properties.retentionInDays",)),
    ("retention a boolean", {"properties": {"retentionInDays": True}}, ("properties.retentionInDays",)),
    ("bad resource group", {"properties": {"resourceGroup": "a/b"}}, ("properties.resourceGroup",)),
    ("empty resource group", {"properties": {"resourceGroup": ""}}, ("properties.resourceGroup",)),
    (
        "custom without mapping",
        {"properties": {"inputSchema": "CustomEventSchema"}},
        ("properties.inputSchemaMapping", "required"),
    ),
    (
        "mapping on event grid topic",
        {"properties": {"inputSchemaMapping": {"mappingType": "Json"}}},
        ("properties.inputSchemaMapping", "only allowed"),
    ),
    (
        "mapping type not Json",
        {"properties": {"inputSchema": "CustomEventSchema", "inputSchemaMapping": {"mappingType": "Xml"}}},
        ("properties.inputSchemaMapping.mappingType",),
    ),
    (
        "mapping without event type",
        {
            "properties": {
                "inputSchema": "CustomEventSchema",
                "inputSchemaMapping": {"mappingType": "Json", "properties": {"id": {"sourceField": "x"}}},
            }
        },
        ("properties.inputSchemaMapping.properties.eventType",),
    ),
    (
        "mapping of an unknown field",
        {
            "properties": {
                "inputSchema": "CustomEventSchema",
                "inputSchemaMapping": {
                    "mappingType": "Json",
                    "properties": {"eventType": {"defaultValue": "T"}, "color": {"sourceField": "c"}},
                },
            }
        },
        ("properties.inputSchemaMapping.properties.color",),
    ),
    (
        "default value for id",
        {
            "properties": {
                "inputSchema": "CustomEventSchema",
                "inputSchemaMapping": {
                    "mappingType": "Json",
                    "properties": {"eventType": {"defaultValue": "T"}, "id": {"defaultValue": "1"}},
                },
            }
        },
        ("properties.inputSchemaMapping.properties.id.defaultValue",),
    ),
    (
        "empty source field",
        {
            "properties": {
                "inputSchema": "CustomEventSchema",
                "inputSchemaMapping": {
                    "mappingType": "Json",
                    "properties": {"eventType": {"sourceField": "a..b"}},
                },
            }
        },
        ("properties.inputSchemaMapping.properties.eventType.sourceField",),
    ),
    (
        "unknown mapping key",
        {
            "properties": {
                "inputSchema": "CustomEventSchema",
                "inputSchemaMapping": {
                    "mappingType": "Json",
                    "properties": {"eventType": {"defaultValue": "T", "source": "x"}},
                },
            }
        },
        ("properties.inputSchemaMapping.properties.eventType.source",),
    ),
]


@pytest.mark.parametrize(("label", "body", "fragments"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_bad_topic_bodies_are_400_and_change_nothing(
    admin: httpx.Client, label: str, body: Any, fragments: tuple[str, ...]
) -> None:
    name = new_name()
    assert_error(admin.put(f"/topics/{name}", json=body), 400, *fragments)
    assert_error(admin.get(f"/topics/{name}"), 404)
    # The same body on an existing topic leaves it as it was.
    existing = create_topic(admin, retentionInDays=4)
    assert_error(admin.put(f"/topics/{existing['name']}", json=body), 400, *fragments)
    assert admin.get(f"/topics/{existing['name']}").json() == existing


def test_bad_json_and_content_type(admin: httpx.Client) -> None:
    name = new_name()
    response = admin.put(f"/topics/{name}", content=b"{nope", headers={"Content-Type": "application/json"})
    assert_error(response, 400, "not valid JSON")
    response = admin.put(f"/topics/{name}", content=b"<topic/>", headers={"Content-Type": "application/xml"})
    assert_error(response, 415, "application/xml")
    assert_error(admin.get(f"/topics/{name}"), 404)


def test_custom_schema_topic_returns_its_mapping(admin: httpx.Client) -> None:
    mapping = {
        "mappingType": "Json",
        "properties": {"id": {"sourceField": "orderId"}, "eventType": {"defaultValue": "Shop.Order"}},
    }
    topic = create_topic(admin, schema="CustomEventSchema", inputSchemaMapping=mapping)
    assert topic["properties"]["inputSchemaMapping"] == mapping
    # The mapping may change; the schema may not.
    mapping["properties"]["subject"] = {"sourceField": "path"}
    changed = admin.put(
        f"/topics/{topic['name']}",
        json={"properties": {"inputSchema": "CustomEventSchema", "inputSchemaMapping": mapping}},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["properties"]["inputSchemaMapping"] == mapping


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("EventGridSchema", "CloudEventSchemaV1_0"),
        ("CloudEventSchemaV1_0", "EventGridSchema"),
        ("CloudEventSchemaV1_0", None),
    ],
)
def test_input_schema_cannot_change(admin: httpx.Client, old: str, new: str | None) -> None:
    topic = create_topic(admin, schema=old)
    body: dict[str, Any] = {"properties": {} if new is None else {"inputSchema": new}}
    assert_error(admin.put(f"/topics/{topic['name']}", json=body), 400, "properties.inputSchema", old)
    assert admin.get(f"/topics/{topic['name']}").json() == topic


def test_if_match(admin: httpx.Client) -> None:
    topic = create_topic(admin)
    name = topic["name"]
    stale = admin.put(
        f"/topics/{name}", json={"properties": {"retentionInDays": 2}}, headers={"If-Match": '"not-the-etag"'}
    )
    assert_error(stale, 412, "If-Match", code="PreconditionFailed")
    assert admin.get(f"/topics/{name}").json() == topic
    fresh = admin.put(
        f"/topics/{name}",
        json={"properties": {"retentionInDays": 2}},
        headers={"If-Match": f'"{topic["etag"]}"'},
    )
    assert fresh.status_code == 200, fresh.text
    reused = admin.put(f"/topics/{name}", json={}, headers={"If-Match": topic["etag"]})
    assert_error(reused, 412, code="PreconditionFailed")
    assert admin.put(f"/topics/{name}", json={}, headers={"If-Match": "*"}).status_code == 200
    missing = new_name()
    assert_error(admin.put(f"/topics/{missing}", json={}, headers={"If-Match": '"x"'}), 412)
    assert_error(admin.get(f"/topics/{missing}"), 404)


def test_keys(admin: httpx.Client) -> None:
    topic = create_topic(admin)
    name = topic["name"]
    key1, key2 = topic_keys(admin, name)
    assert key1 != key2 and len(key1) >= 40
    for bad in ({"keyName": "key3"}, {"keyName": "KEY1"}, {"keyName": None}, {}, {"name": "key1"}):
        assert_error(admin.post(f"/topics/{name}/regenerateKey", json=bad), 400, "keyName")
    assert_error(admin.post(f"/topics/{name}/regenerateKey", json=["key1"]), 400, "keyName")
    assert_error(admin.post(f"/topics/{name}/regenerateKey"), 400, "body")
    assert topic_keys(admin, name) == (key1, key2)
    regenerated = admin.post(f"/topics/{name}/regenerateKey", json={"keyName": "key2"})
    assert regenerated.status_code == 200, regenerated.text
    assert regenerated.json()["key1"] == key1 and regenerated.json()["key2"] != key2
    assert topic_keys(admin, name) == (key1, regenerated.json()["key2"])
    missing = new_name()
    assert_error(admin.post(f"/topics/{missing}/listKeys"), 404, missing)
    assert_error(admin.post(f"/topics/{missing}/regenerateKey", json={"keyName": "key1"}), 404, missing)


# --- RBAC and principals ---------------------------------------------------------------------------


def test_reader_reads_but_does_not_change(server: ServerProcess, admin: httpx.Client) -> None:
    topic = create_topic(admin)
    name = topic["name"]
    hidden = create_topic(admin)
    principal, token = new_principal(admin, "reader")
    assert (
        admin.put(f"/topics/{name}/roleAssignments/{principal}", json={"role": "Reader"}).status_code == 201
    )
    keys = topic_keys(admin, name)
    with bearer(server, token) as reader:
        assert reader.get(f"/topics/{name}").json() == topic
        listed = [t["name"] for t in reader.get("/topics").json()["value"]]
        assert name in listed and hidden["name"] not in listed
        assert reader.get(f"/topics/{name}/events").status_code == 200
        assert reader.get(f"/topics/{name}/roleAssignments").status_code == 200
        for response in (
            reader.put(f"/topics/{name}", json={"properties": {"retentionInDays": 9}}),
            reader.delete(f"/topics/{name}"),
            reader.post(f"/topics/{name}/listKeys"),
            reader.post(f"/topics/{name}/regenerateKey", json={"keyName": "key1"}),
            reader.put(f"/topics/{name}/roleAssignments/{principal}", json={"role": "Owner"}),
            reader.put(f"/topics/{new_name()}", json={}),
            reader.get(f"/topics/{hidden['name']}"),
            reader.put(f"/principals/{new_name()}"),
            reader.get("/principals"),
        ):
            assert_error(response, 403, principal, code="Forbidden")
    assert admin.get(f"/topics/{name}").json() == topic
    assert topic_keys(admin, name) == keys


def test_contributor_and_owner(server: ServerProcess, admin: httpx.Client) -> None:
    topic = create_topic(admin)
    name = topic["name"]
    contributor, contributor_token = new_principal(admin, "contrib")
    owner, owner_token = new_principal(admin, "owner")
    other, _ = new_principal(admin, "other")
    admin.put(f"/topics/{name}/roleAssignments/{contributor}", json={"role": "Contributor"})
    admin.put(f"/topics/{name}/roleAssignments/{owner}", json={"role": "Owner"})
    with bearer(server, contributor_token) as client:
        assert client.put(f"/topics/{name}", json={"properties": {"retentionInDays": 2}}).status_code == 200
        assert client.post(f"/topics/{name}/listKeys").status_code == 200
        assert_error(
            client.put(f"/topics/{name}/roleAssignments/{other}", json={"role": "Reader"}), 403, contributor
        )
    with bearer(server, owner_token) as client:
        assert (
            client.put(f"/topics/{name}/roleAssignments/{other}", json={"role": "Reader"}).status_code == 201
        )
        assert (
            client.put(f"/topics/{name}/roleAssignments/{other}", json={"role": "DataSender"}).status_code
            == 200
        )
        roles = {
            r["principal"]: r["role"] for r in client.get(f"/topics/{name}/roleAssignments").json()["value"]
        }
        assert roles == {contributor: "Contributor", owner: "Owner", other: "DataSender"}
        assert client.delete(f"/topics/{name}/roleAssignments/{other}").status_code == 204
        assert_error(client.delete(f"/topics/{name}/roleAssignments/{other}"), 404, other)
        assert client.delete(f"/topics/{name}").status_code == 204


def test_role_assignment_errors(admin: httpx.Client) -> None:
    topic = create_topic(admin)
    name = topic["name"]
    principal, _ = new_principal(admin)
    for body, fragment in (({"role": "King"}, "role"), ({"role": 3}, "role"), ({}, "role"), ([], "body")):
        assert_error(admin.put(f"/topics/{name}/roleAssignments/{principal}", json=body), 400, fragment)
    ghost = new_name("ghost")
    assert_error(admin.put(f"/topics/{name}/roleAssignments/{ghost}", json={"role": "Reader"}), 404, ghost)
    missing = new_name()
    assert_error(
        admin.put(f"/topics/{missing}/roleAssignments/{principal}", json={"role": "Reader"}), 404, missing
    )
    assert admin.get(f"/topics/{name}/roleAssignments").json()["value"] == []
    # Azure's built-in role names are accepted.
    azure = admin.put(f"/topics/{name}/roleAssignments/{principal}", json={"role": "EventGrid Data Sender"})
    assert azure.status_code == 201 and azure.json()["role"] == "DataSender"



def test_role_assignment_bodies_are_closed(admin: httpx.Client) -> None:
    """Issue 16: unknown members (at the top level or under ARM's ``properties``) and a
    ``properties`` that is not an object are 400s naming the field, and nothing is assigned;
    ARM's shape and a read echoed back still work."""
    name = create_topic(admin)["name"]
    principal, _ = new_principal(admin)
    route = f"/topics/{name}/roleAssignments/{principal}"
    for body, field, reason in (
        ({"role": "Reader", "roel": "Owner"}, "roel", "unknown field"),
        ({"properties": {"role": "Reader", "principalId": "x"}}, "properties.principalId", "unknown field"),
        ({"properties": [None, None], "role": "Owner"}, "properties", "must be a JSON object"),
        ({"role": "Reader", "properties": {"role": "King"}}, "properties.role", "is not a role"),
    ):
        reply = admin.put(route, json=body)
        assert reply.status_code == 400, reply.text
        error = reply.json()["error"]
        assert error["details"][0]["target"] == field and reason in error["message"], error
    assert admin.get(f"/topics/{name}/roleAssignments").json()["value"] == []
    arm = admin.put(route, json={"properties": {"role": "Contributor"}})
    assert arm.status_code == 201 and arm.json()["role"] == "Contributor", arm.text
    echoed = admin.put(route, json={**arm.json(), "role": "Reader"})
    assert echoed.status_code == 200 and echoed.json()["role"] == "Reader", echoed.text


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer mlg_not-a-real-token",
        "Bearer",
        "Basic YWRtaW46YWRtaW4=",
        "SharedAccessKey abc",
        "mlg_x",
    ],
)
def test_management_without_valid_token_is_401(
    server: ServerProcess, admin: httpx.Client, authorization: str | None
) -> None:
    topic = create_topic(admin)
    headers = {} if authorization is None else {"Authorization": authorization}
    name = topic["name"]
    key1, _ = topic_keys(admin, name)
    for method, path in (
        ("GET", f"/topics/{name}"),
        ("PUT", f"/topics/{name}"),
        ("DELETE", f"/topics/{name}"),
        ("GET", "/topics"),
        ("POST", f"/topics/{name}/listKeys"),
        ("PUT", "/principals/x-y-z"),
        ("GET", f"/topics/{name}/events"),
    ):
        response = httpx.request(method, server.url + path, headers=headers, json={}, timeout=30)
        error = assert_error(response, 401, code="Unauthorized")
        assert response.headers.get("www-authenticate", "").lower().startswith("bearer"), error
    # A topic key is not a management credential.
    assert_error(httpx.get(f"{server.url}/topics/{name}", headers={"aeg-sas-key": key1}), 401)
    assert admin.get(f"/topics/{name}").json() == topic


def test_principals(server: ServerProcess, admin: httpx.Client) -> None:
    name, token = new_principal(admin, "Alice")
    assert token.startswith("mlg_")
    listed = admin.get("/principals").json()["value"]
    entry = next(p for p in listed if p["name"] == name)
    assert entry["isAdmin"] is False and datetime.fromisoformat(entry["createdAt"]).tzinfo is not None
    assert all("token" not in p for p in listed)
    assert {p["name"] for p in listed} >= {"admin", name}

    topic = create_topic(admin)
    admin.put(f"/topics/{topic['name']}/roleAssignments/{name.lower()}", json={"role": "Reader"})
    with bearer(server, token) as client:
        assert client.get(f"/topics/{topic['name']}").status_code == 200
        assert_error(client.put(f"/principals/{new_name()}"), 403, name)

    rotated = admin.put(f"/principals/{name.upper()}")
    assert rotated.status_code == 200, rotated.text
    new_token = rotated.json()["token"]
    assert new_token != token
    assert_error(
        httpx.get(f"{server.url}/topics/{topic['name']}", headers={"Authorization": f"Bearer {token}"}),
        401,
        code="Unauthorized",
    )
    with bearer(server, new_token) as client:
        assert client.get(f"/topics/{topic['name']}").status_code == 200  # roles survive rotation

    for bad in ("ab", "x" * 65, "bad.name"):
        assert_error(admin.put(f"/principals/{bad}"), 400, "principalName")
    assert_error(admin.delete("/principals/admin"), 403, "admin")
    assert_error(admin.delete(f"/principals/{new_name()}"), 404)
    assert admin.delete(f"/principals/{name}").status_code == 204
    assert_error(
        httpx.get(f"{server.url}/topics/{topic['name']}", headers={"Authorization": f"Bearer {new_token}"}),
        401,
    )
    assignments = admin.get(f"/topics/{topic['name']}/roleAssignments").json()["value"]
    assert name not in {r["principal"] for r in assignments}


def test_admin_token_file(server: ServerProcess) -> None:
    path = server.data_dir / "admin.token"
    assert path.stat().st_mode & 0o777 == 0o600
    assert server.admin_token.startswith("mlg_")


# --- retained events ---------------------------------------------------------------------------


def test_events_paging_and_filters(server: ServerProcess, admin: httpx.Client) -> None:
    topic = create_topic(admin, schema="EventGridSchema")
    name = topic["name"]
    key1, _ = topic_keys(admin, name)
    first = [
        eg_event(f"a{i}", eventType="Shop.OrderPlaced" if i % 2 else "Shop.OrderShipped") for i in range(5)
    ]
    publish(server, name, key1, first)
    time.sleep(0.02)  # the cut point must lie strictly between the two publishes' commit times
    cut = datetime.now(UTC)
    time.sleep(0.02)
    second = [eg_event(f"b{i}", eventType="Shop.OrderPlaced") for i in range(3)]
    publish(server, name, key1, second)

    pages: list[list[str]] = []
    response = admin.get(f"/topics/{name}/events", params={"top": 3})
    for _ in range(10):
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append([e["id"] for e in page["value"]])
        if "nextLink" not in page:
            break
        assert page["nextLink"].startswith(server.url)
        response = admin.get(page["nextLink"])
    assert pages == [["a0", "a1", "a2"], ["a3", "a4", "b0"], ["b1", "b2"]]

    ids = [e["id"] for e in list_events(admin, name, since=cut.isoformat())]
    assert ids == ["b0", "b1", "b2"]
    ids = [e["id"] for e in list_events(admin, name, until=cut.isoformat().replace("+00:00", "Z"))]
    assert ids == ["a0", "a1", "a2", "a3", "a4"]
    ids = [e["id"] for e in list_events(admin, name, eventType="shop.orderplaced", top=2)]
    assert ids == ["a1", "a3", "b0", "b1", "b2"]
    ids = [e["id"] for e in list_events(admin, name, eventType="Shop.OrderShipped", until=cut.isoformat())]
    assert ids == ["a0", "a2", "a4"]
    assert list_events(admin, name, eventType="Nothing.Like.This") == []
    exact = admin.get(f"/topics/{name}/events", params={"top": 8})
    assert "nextLink" not in exact.json() and len(exact.json()["value"]) == 8


@pytest.mark.parametrize(
    ("params", "fragments"),
    [
        ({"since": "yesterday"}, ("since", "ISO 8601")),
        ({"until": "2024-13-45"}, ("until",)),
        ({"since": "2024-05-02T00:00:00Z", "until": "2024-05-01T00:00:00Z"}, ("until", "since")),
        ({"top": "0"}, ("top",)),
        ({"top": "1001"}, ("top",)),
        ({"top": "many"}, ("top",)),
        ({"skipToken": "!!!"}, ("skipToken",)),
    ],
)
def test_events_listing_bad_parameters(
    admin: httpx.Client, params: dict[str, str], fragments: tuple[str, ...]
) -> None:
    topic = create_topic(admin)
    assert_error(admin.get(f"/topics/{topic['name']}/events", params=params), 400, *fragments)


def test_events_listing_of_cloud_events_topic_keeps_input_schema(
    server: ServerProcess, admin: httpx.Client
) -> None:
    topic = create_topic(admin, schema="CloudEventSchemaV1_0")
    key1, _ = topic_keys(admin, topic["name"])
    event = {"specversion": "1.0", "id": "ce-1", "source": "/s", "type": "T", "data": {"x": [1, 2]}}
    response = httpx.post(
        f"{server.url}/topics/{topic['name']}/api/events",
        json=event,
        headers={"aeg-sas-key": key1, "Content-Type": "application/cloudevents+json"},
    )
    assert response.status_code == 200, response.text
    assert list_events(admin, topic["name"]) == [event]
    assert event_ids(admin, topic["name"]) == ["ce-1"]


# --- routes, errors and operations ---------------------------------------------------------------


def test_unknown_route_and_wrong_method(server: ServerProcess, admin: httpx.Client) -> None:
    assert_error(admin.get("/no/such/route"), 404, code="NotFound")
    assert_error(httpx.get(f"{server.url}/nothing-here"), 404)
    assert_error(admin.delete("/topics"), 405, code="MethodNotAllowed")
    assert_error(admin.get(f"/topics/{new_name()}/api/events"), 405, code="MethodNotAllowed")
    assert_error(admin.patch("/healthz"), 405)


def test_health_readiness_and_metrics(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200 and ready.json()["database"] == "reachable"
    metrics = httpx.get(f"{server.url}/metrics")
    assert metrics.status_code == 200 and "mlgrid_published_events" in metrics.text


def _served_routes(routes: list[Any], prefix: str = "") -> set[tuple[str, str]]:
    """(path, method) of every API route of the app, walking included routers (FastAPI keeps
    them as ``_IncludedRouter`` entries in recent versions, as plain routes in older ones)."""
    served: set[tuple[str, str]] = set()
    for route in routes:
        original = getattr(route, "original_router", None)
        if original is not None:
            context = getattr(route, "include_context", None)
            if getattr(context, "include_in_schema", True):
                served |= _served_routes(original.routes, prefix + getattr(context, "prefix", ""))
            continue
        if getattr(route, "include_in_schema", False):
            methods = getattr(route, "methods", None) or set()
            path = re.sub(r"\{(\w+):\w+\}", r"{\1}", prefix + route.path)  # OpenAPI drops converters
            served |= {(path, m) for m in methods if m != "HEAD"}
    return served


def test_openapi_lists_every_route(server: ServerProcess) -> None:
    document = httpx.get(f"{server.url}/openapi.json").json()
    documented = {(path, method.upper()) for path, ops in document["paths"].items() for method in ops}
    served = _served_routes(create_app(Settings()).routes)
    assert len(served) > 15, served
    assert served <= documented, sorted(served - documented)
    for must in [
        ("/topics/{topic}", "PUT"),
        ("/topics/{topic}", "GET"),
        ("/topics/{topic}", "DELETE"),
        ("/topics", "GET"),
        ("/topics/{topic}/listKeys", "POST"),
        ("/topics/{topic}/regenerateKey", "POST"),
        ("/topics/{topic}/api/events", "POST"),
        ("/topics/{topic}:publish", "POST"),
        ("/topics/{topic}/events", "GET"),
        ("/systemTopics/{workspace}/events", "GET"),
        ("/principals/{name}", "PUT"),
        ("/topics/{topic}/roleAssignments/{principal}", "PUT"),
        ("/healthz", "GET"),
        ("/readyz", "GET"),
        ("/metrics", "GET"),
    ]:
        assert must in served and must in documented, must
