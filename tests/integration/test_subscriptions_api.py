"""Event subscription resources over HTTP (SPEC §4, §12) on a real server, both databases.

Create/replace/update/read/list/delete on custom topics and system topics, the workspace
alias, write-only values, If-Match, delivery schemas per topic schema, and RBAC.
"""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import httpx
from standardwebhooks import Webhook
from tests.support.broker_db import assign_role, create_system_topic
from tests.support.fixtures import http_client_fixture, receiver_fixture  # noqa: F401 (pytest fixtures)
from tests.support.receiver import VALIDATION_EVENT_TYPE, Receiver
from tests.support.server import ServerProcess

SIGNING_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SECRET_VALUE = "hush-hush-header-value"

# SPEC §4's example body, as Azure's docs write it (the seed's ModelTags filter included).
SEED_BODY: dict[str, Any] = {
    "properties": {
        "destination": {
            "endpointType": "WebHook",
            "properties": {
                "endpointUrl": "REPLACED",
                "maxEventsPerBatch": 1,
                "preferredBatchSizeInKilobytes": 64,
                "deliveryAttributeMappings": [
                    {"name": "X-Team", "type": "Static", "properties": {"value": "ml", "isSecret": False}},
                    {"name": "X-Model", "type": "Dynamic", "properties": {"sourceField": "data.ModelName"}},
                ],
            },
        },
        "filter": {
            "includedEventTypes": ["Microsoft.MachineLearningServices.ModelRegistered"],
            "subjectBeginsWith": "models/",
            "subjectEndsWith": "",
            "isSubjectCaseSensitive": False,
            "enableAdvancedFilteringOnArrays": False,
            "advancedFilters": [
                {"operatorType": "StringIn", "key": "data.ModelTags.key1", "values": ["value1"]}
            ],
        },
        "eventDeliverySchema": "EventGridSchema",
        "retryPolicy": {"maxDeliveryAttempts": 30, "eventTimeToLiveInMinutes": 1440},
        "deadLetterDestination": {
            "endpointType": "StorageBlob",
            "properties": {"blobContainerName": "deadletters"},
        },
        "expirationTimeUtc": None,
        "labels": ["team-a"],
    }
}


def new_name(prefix: str = "s") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def make_topic(client: httpx.Client, schema: str = "EventGridSchema", **extra: Any) -> str:
    name = new_name("t")
    props: dict[str, Any] = {"inputSchema": schema, **extra}
    response = client.put(f"/topics/{name}", json={"properties": props})
    assert response.status_code == 201, response.text
    return name


def webhook(url: str, **destination: Any) -> dict[str, Any]:
    """A minimal WebHook body; ``destination`` adds destination properties."""
    return {
        "properties": {
            "destination": {"endpointType": "WebHook", "properties": {"endpointUrl": url, **destination}}
        }
    }


def path_for(topic: str, sub: str = "", parent: str = "topics") -> str:
    base = f"/{parent}/{topic}/eventSubscriptions"
    return f"{base}/{sub}" if sub else base


def put_ok(client: httpx.Client, path: str, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    response = client.put(path, json=body)
    assert response.status_code == status, response.text
    result: dict[str, Any] = response.json()
    return result


# --- create, read, replace, update, delete ------------------------------------------------


def test_create_returns_the_arm_resource_with_defaults(client: httpx.Client, receiver: Receiver) -> None:
    topic = make_topic(client)
    sub = new_name()
    hook = f"/{sub}"
    response = client.put(path_for(topic, sub), json=webhook(receiver.endpoint(hook, code="abc")))
    assert response.status_code == 201, response.text
    body = response.json()
    topic_id = client.get(f"/topics/{topic}").json()["id"]
    assert body["id"] == f"{topic_id}/providers/Microsoft.EventGrid/eventSubscriptions/{sub}"
    assert body["name"] == sub
    assert body["type"] == "Microsoft.EventGrid/eventSubscriptions"
    assert body["etag"] and response.headers["etag"].strip('"') == body["etag"]
    props = body["properties"]
    assert props["topic"] == topic_id
    assert props["provisioningState"] == "Succeeded"
    assert props["destination"] == {
        "endpointType": "WebHook",
        "properties": {
            "endpointBaseUrl": receiver.endpoint(hook),
            "maxEventsPerBatch": 1,
            "preferredBatchSizeInKilobytes": 64,
            "deliveryAttributeMappings": [],
        },
    }
    assert props["filter"] == {
        "includedEventTypes": None,
        "subjectBeginsWith": "",
        "subjectEndsWith": "",
        "isSubjectCaseSensitive": False,
        "enableAdvancedFilteringOnArrays": False,
        "advancedFilters": [],
    }
    assert props["eventDeliverySchema"] == "EventGridSchema"
    assert props["retryPolicy"] == {"maxDeliveryAttempts": 30, "eventTimeToLiveInMinutes": 1440}
    assert props["deadLetterDestination"] is None
    assert props["expirationTimeUtc"] is None
    assert props["labels"] == []
    assert len(receiver.validations(hook)) == 1


def test_the_seed_example_round_trips(client: httpx.Client, receiver: Receiver) -> None:
    topic = make_topic(client)
    sub = new_name()
    body = copy.deepcopy(SEED_BODY)
    body["properties"]["destination"]["properties"]["endpointUrl"] = receiver.endpoint(f"/{sub}", code="k")
    created = put_ok(client, path_for(topic, sub), body)
    expected = copy.deepcopy(SEED_BODY["properties"])
    expected["destination"]["properties"].pop("endpointUrl")
    expected["destination"]["properties"] = {
        "endpointBaseUrl": receiver.endpoint(f"/{sub}"),
        **expected["destination"]["properties"],
    }
    got = {k: v for k, v in created["properties"].items() if k not in ("topic", "provisioningState")}
    assert got == expected
    # A read sent back as it is replaces the subscription with itself, write-only URL kept.
    read = client.get(path_for(topic, sub)).json()
    replaced = put_ok(client, path_for(topic, sub), read, status=200)
    assert replaced["properties"] == read["properties"]
    assert replaced["etag"] != read["etag"]
    full = client.post(f"{path_for(topic, sub)}/getFullUrl").json()
    assert full == {"endpointUrl": receiver.endpoint(f"/{sub}", code="k")}
    assert len(receiver.validations(f"/{sub}")) == 1  # the endpoint did not change


def test_replace_is_200_and_only_a_new_endpoint_is_validated_again(
    client: httpx.Client, receiver: Receiver
) -> None:
    topic = make_topic(client)
    sub = new_name()
    first = put_ok(client, path_for(topic, sub), webhook(receiver.endpoint(f"/{sub}")))
    again = put_ok(
        client, path_for(topic, sub), webhook(receiver.endpoint(f"/{sub}"), maxEventsPerBatch=10), 200
    )
    assert again["id"] == first["id"]
    assert again["properties"]["destination"]["properties"]["maxEventsPerBatch"] == 10
    assert len(receiver.validations(f"/{sub}")) == 1
    put_ok(client, path_for(topic, sub), webhook(receiver.endpoint(f"/{sub}-b")), 200)
    assert len(receiver.validations(f"/{sub}-b")) == 1


def test_patch_replaces_only_the_given_top_level_properties(client: httpx.Client, receiver: Receiver) -> None:
    topic = make_topic(client)
    sub = new_name()
    body = copy.deepcopy(SEED_BODY)
    body["properties"]["destination"]["properties"]["endpointUrl"] = receiver.endpoint(f"/{sub}", code="q")
    created = put_ok(client, path_for(topic, sub), body)

    response = client.patch(path_for(topic, sub), json={"properties": {"labels": ["b", "c"]}})
    assert response.status_code == 200, response.text
    patched = response.json()
    assert patched["properties"]["labels"] == ["b", "c"]
    for unchanged in ("destination", "filter", "retryPolicy", "deadLetterDestination", "eventDeliverySchema"):
        assert patched["properties"][unchanged] == created["properties"][unchanged]
    assert patched["etag"] != created["etag"]

    response = client.patch(
        path_for(topic, sub), json={"properties": {"filter": {"subjectEndsWith": ".pkl"}}}
    )
    assert response.status_code == 200, response.text
    assert response.json()["properties"]["filter"]["advancedFilters"] == []
    assert response.json()["properties"]["filter"]["subjectEndsWith"] == ".pkl"
    assert response.json()["properties"]["destination"] == created["properties"]["destination"]

    response = client.patch(
        path_for(topic, sub), json={"properties": {"retryPolicy": {"maxDeliveryAttempts": 3}}}
    )
    assert response.json()["properties"]["retryPolicy"] == {
        "maxDeliveryAttempts": 3,
        "eventTimeToLiveInMinutes": 1440,
    }
    assert len(receiver.validations(f"/{sub}")) == 1
    assert client.post(f"{path_for(topic, sub)}/getFullUrl").json()["endpointUrl"].endswith("?code=q")

    response = client.patch(path_for(topic, sub), json=webhook(receiver.endpoint(f"/{sub}-new")))
    assert response.status_code == 200, response.text
    assert response.json()["properties"]["destination"]["properties"]["deliveryAttributeMappings"] == []
    assert len(receiver.validations(f"/{sub}-new")) == 1
    assert response.json()["properties"]["labels"] == ["b", "c"]


def test_patch_of_a_missing_subscription_is_404(client: httpx.Client) -> None:
    topic = make_topic(client)
    response = client.patch(path_for(topic, "nothere"), json={"properties": {"labels": []}})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NotFound"


def test_get_list_and_delete(client: httpx.Client, receiver: Receiver) -> None:
    topic = make_topic(client)
    names = sorted(new_name() for _ in range(3))
    for name in names:
        put_ok(client, path_for(topic, name), webhook(receiver.endpoint(f"/{name}")))
    listed = client.get(path_for(topic))
    assert listed.status_code == 200
    assert [item["name"] for item in listed.json()["value"]] == names
    one = client.get(path_for(topic, names[0].upper()))  # names are case-insensitive
    assert one.status_code == 200 and one.json()["name"] == names[0]
    lower = client.get(f"/topics/{topic}/eventsubscriptions/{names[1]}")
    assert lower.status_code == 200 and lower.json()["name"] == names[1]

    assert client.delete(path_for(topic, names[0])).status_code == 204
    assert client.get(path_for(topic, names[0])).status_code == 404
    assert client.delete(path_for(topic, names[0])).status_code == 404
    assert [item["name"] for item in client.get(path_for(topic)).json()["value"]] == names[1:]


def test_unknown_topic_is_404(client: httpx.Client) -> None:
    for method, path in (
        ("GET", path_for("nosuchtopic")),
        ("GET", path_for("nosuchtopic", "abc")),
        ("PUT", path_for("nosuchtopic", "abc")),
    ):
        response = client.request(method, path, json=webhook("http://127.0.0.1:9/x"))
        assert response.status_code == 404, response.text
        assert "nosuchtopic" in response.json()["error"]["message"]


def test_if_match(client: httpx.Client, receiver: Receiver) -> None:
    topic = make_topic(client)
    sub = new_name()
    created = put_ok(client, path_for(topic, sub), webhook(receiver.endpoint(f"/{sub}")))
    stale = {"If-Match": '"0000"'}
    body = webhook(receiver.endpoint(f"/{sub}"), maxEventsPerBatch=5)
    assert client.put(path_for(topic, sub), json=body, headers=stale).status_code == 412
    assert (
        client.patch(path_for(topic, sub), json={"properties": {"labels": ["x"]}}, headers=stale).status_code
        == 412
    )
    assert client.delete(path_for(topic, sub), headers=stale).status_code == 412
    assert client.put(path_for(topic, new_name()), json=body, headers=stale).status_code == 412
    assert client.get(path_for(topic, sub)).json()["etag"] == created["etag"]
    current = {"If-Match": f'"{created["etag"]}"'}
    assert client.put(path_for(topic, sub), json=body, headers=current).status_code == 200


# --- write-only values ----------------------------------------------------------------------


def test_endpoint_url_and_secrets_are_write_only(client: httpx.Client, receiver: Receiver) -> None:
    topic = make_topic(client)
    sub = new_name()
    url = receiver.endpoint(f"/{sub}", code="very-secret-code")
    body = webhook(
        url,
        signingSecret=SIGNING_SECRET,
        deliveryAttributeMappings=[
            {"name": "X-Api-Key", "type": "Static", "properties": {"value": SECRET_VALUE, "isSecret": True}},
            {"name": "X-Team", "type": "Static", "properties": {"value": "ml"}},
        ],
    )
    texts = [
        client.put(path_for(topic, sub), json=body).text,
        client.get(path_for(topic, sub)).text,
        client.get(path_for(topic)).text,
        client.patch(path_for(topic, sub), json={"properties": {"labels": ["l"]}}).text,
    ]
    for text in texts:
        assert "very-secret-code" not in text
        assert SECRET_VALUE not in text
        assert SIGNING_SECRET not in text
        assert "endpointUrl" not in text
    mappings = json.loads(texts[1])["properties"]["destination"]["properties"]["deliveryAttributeMappings"]
    assert mappings == [
        {"name": "X-Api-Key", "type": "Static", "properties": {"isSecret": True}},
        {"name": "X-Team", "type": "Static", "properties": {"value": "ml", "isSecret": False}},
    ]
    assert client.post(f"{path_for(topic, sub)}/getFullUrl").json() == {"endpointUrl": url}

    # The validation request carried the secret header and a Standard Webhooks signature.
    validation = receiver.validations(f"/{sub}")[0]
    assert validation.header("x-api-key") == SECRET_VALUE
    Webhook(SIGNING_SECRET).verify(validation.body, validation.headers)

    # A read echoed back with a new endpoint keeps the secret value and the signing secret...
    read = client.get(path_for(topic, sub)).json()
    read["properties"]["destination"]["properties"]["endpointUrl"] = receiver.endpoint(f"/{sub}-2")
    assert client.put(path_for(topic, sub), json=read).status_code == 200
    again = receiver.validations(f"/{sub}-2")[0]
    assert again.header("x-api-key") == SECRET_VALUE
    Webhook(SIGNING_SECRET).verify(again.body, again.headers)

    # ...and an explicit null removes the signing secret.
    read = client.get(path_for(topic, sub)).json()
    read["properties"]["destination"]["properties"]["endpointUrl"] = receiver.endpoint(f"/{sub}-3")
    read["properties"]["destination"]["properties"]["signingSecret"] = None
    assert client.put(path_for(topic, sub), json=read).status_code == 200
    assert receiver.validations(f"/{sub}-3")[0].header("webhook-signature") is None


def test_connection_urls_are_redacted_in_reads(client: httpx.Client) -> None:
    topic = make_topic(client)
    cases = {
        "RedisStream": {"url": "redis://:pw-redis@127.0.0.1:6379/0", "stream": "mlgrid-events"},
        "NatsJetStream": {"url": "nats://user:pw-nats@127.0.0.1:4222", "subject": "mlgrid.events"},
        "RabbitMQ": {
            "url": "amqp://guest:pw-rabbit@127.0.0.1:5672/",
            "exchange": "ml",
            "routingKey": "models",
        },
    }
    for endpoint_type, props in cases.items():
        sub = new_name()
        body = {"properties": {"destination": {"endpointType": endpoint_type, "properties": props}}}
        response = client.put(path_for(topic, sub), json=body)
        assert response.status_code == 201, response.text
        shown = response.json()["properties"]["destination"]["properties"]
        assert "pw-" not in json.dumps(shown)
        assert ":***@" in shown["url"]
        assert response.json()["properties"]["provisioningState"] == "Succeeded"
        assert client.post(f"{path_for(topic, sub)}/getFullUrl").json() == {"endpointUrl": props["url"]}
        # Echoing the read back keeps the password.
        assert client.put(path_for(topic, sub), json=response.json()).status_code == 200
        assert client.post(f"{path_for(topic, sub)}/getFullUrl").json() == {"endpointUrl": props["url"]}


def test_queue_destination(client: httpx.Client, receiver: Receiver) -> None:
    topic = make_topic(client)
    sub = new_name()
    before = len(receiver.requests())
    created = put_ok(client, path_for(topic, sub), {"properties": {"destination": {"endpointType": "Queue"}}})
    assert created["properties"]["provisioningState"] == "Succeeded"
    assert created["properties"]["destination"] == {
        "endpointType": "Queue",
        "properties": {"receiveLockDurationInSeconds": 60, "maxDeliveryCount": 10},
    }
    # Pull delivery hands out CloudEvents unless the subscription asks for Event Grid schema.
    assert created["properties"]["eventDeliverySchema"] == "CloudEventSchemaV1_0"
    assert len(receiver.requests()) == before
    response = client.post(f"{path_for(topic, sub)}/getFullUrl")
    assert response.status_code == 400
    explicit = {
        "properties": {
            "eventDeliverySchema": "EventGridSchema",
            "destination": {
                "endpointType": "queue",
                "properties": {"receiveLockDurationInSeconds": 300, "maxDeliveryCount": 1},
            },
        }
    }
    replaced = put_ok(client, path_for(topic, sub), explicit, 200)
    assert replaced["properties"]["eventDeliverySchema"] == "EventGridSchema"
    assert replaced["properties"]["destination"]["properties"] == {
        "receiveLockDurationInSeconds": 300,
        "maxDeliveryCount": 1,
    }


# --- delivery schema per topic schema ----------------------------------------------------


def test_cloud_events_topic_cannot_deliver_event_grid_schema(
    client: httpx.Client, receiver: Receiver
) -> None:
    topic = make_topic(client, "CloudEventSchemaV1_0")
    sub = new_name()
    for schema in ("EventGridSchema", "CustomInputSchema"):
        body = webhook(receiver.endpoint(f"/{sub}"))
        body["properties"]["eventDeliverySchema"] = schema
        response = client.put(path_for(topic, sub), json=body)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert "properties.eventDeliverySchema" in error["message"]
        assert error["details"][0]["target"] == "properties.eventDeliverySchema"
    assert client.get(path_for(topic, sub)).status_code == 404
    assert receiver.requests(f"/{sub}") == []
    created = put_ok(client, path_for(topic, sub), webhook(receiver.endpoint(f"/{sub}")))
    assert created["properties"]["eventDeliverySchema"] == "CloudEventSchemaV1_0"
    assert len(receiver.requests(f"/{sub}", method="OPTIONS")) == 1


def test_custom_schema_topic_delivery_schemas(client: httpx.Client, receiver: Receiver) -> None:
    mapping = {
        "mappingType": "Json",
        "properties": {
            "id": {"sourceField": "myId"},
            "eventType": {"sourceField": "kind", "defaultValue": "Contoso.Item"},
        },
    }
    topic = make_topic(client, "CustomEventSchema", inputSchemaMapping=mapping)
    sub = new_name()
    created = put_ok(client, path_for(topic, sub), webhook(receiver.endpoint(f"/{sub}")))
    assert created["properties"]["eventDeliverySchema"] == "EventGridSchema"
    for schema in ("CustomInputSchema", "CloudEventSchemaV1_0", "EventGridSchema"):
        body = webhook(receiver.endpoint(f"/{sub}"))
        body["properties"]["eventDeliverySchema"] = schema
        assert put_ok(client, path_for(topic, sub), body, 200)["properties"]["eventDeliverySchema"] == schema
    plain = make_topic(client)
    body = webhook(receiver.endpoint(f"/{sub}"))
    body["properties"]["eventDeliverySchema"] = "CustomInputSchema"
    response = client.put(path_for(plain, sub), json=body)
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["target"] == "properties.eventDeliverySchema"


# --- system topics and the workspace alias --------------------------------------------------


def test_system_topic_and_workspace_alias_are_404_without_the_workspace(client: httpx.Client) -> None:
    for parent in ("systemTopics", "workspaces"):
        for method, path in (
            ("GET", f"/{parent}/nows1/eventSubscriptions"),
            ("GET", f"/{parent}/nows1/eventSubscriptions/abc"),
            ("PUT", f"/{parent}/nows1/eventSubscriptions/abc"),
            ("DELETE", f"/{parent}/nows1/eventSubscriptions/abc"),
        ):
            response = client.request(method, path, json=webhook("http://127.0.0.1:9/x"))
            assert response.status_code == 404, (method, path, response.text)
            assert "nows1" in response.json()["error"]["message"]


def test_system_topic_subscriptions(server: ServerProcess, client: httpx.Client, receiver: Receiver) -> None:
    workspace = new_name("ws")
    create_system_topic(server, workspace)
    sub = new_name()
    created = put_ok(
        client, f"/systemTopics/{workspace}/eventSubscriptions/{sub}", webhook(receiver.endpoint(f"/{sub}"))
    )
    system_topic = client.get(f"/systemTopics/{workspace}").json()
    assert created["id"] == f"{system_topic['id']}/providers/Microsoft.EventGrid/eventSubscriptions/{sub}"
    assert created["properties"]["topic"] == system_topic["properties"]["source"]
    assert "/providers/Microsoft.MachineLearningServices/workspaces/" in created["properties"]["topic"]
    via_alias = client.get(f"/workspaces/{workspace}/eventSubscriptions/{sub}")
    assert via_alias.status_code == 200 and via_alias.json() == created
    second = new_name()
    put_ok(
        client, f"/workspaces/{workspace}/eventSubscriptions/{second}", webhook(receiver.endpoint(f"/{sub}"))
    )
    listed = client.get(f"/systemTopics/{workspace}/eventSubscriptions").json()["value"]
    assert sorted(item["name"] for item in listed) == sorted([sub, second])
    assert client.delete(f"/workspaces/{workspace}/eventSubscriptions/{second}").status_code == 204
    assert client.get(f"/systemTopics/{workspace}/eventSubscriptions/{second}").status_code == 404


# --- RBAC ---------------------------------------------------------------------------------


def _principal(client: httpx.Client, name: str) -> str:
    response = client.put(f"/principals/{name}")
    assert response.status_code in (200, 201), response.text
    token: str = response.json()["token"]
    return token


def test_rbac_on_custom_topics(server: ServerProcess, client: httpx.Client, receiver: Receiver) -> None:
    topic = make_topic(client)
    sub = new_name()
    put_ok(client, path_for(topic, sub), webhook(receiver.endpoint(f"/{sub}", code="c")))
    tokens = {}
    for role in ("Reader", "Contributor", "Owner", "DataSender"):
        name = new_name(role.lower())
        tokens[role] = _principal(client, name)
        assert client.put(f"/topics/{topic}/roleAssignments/{name}", json={"role": role}).status_code in (
            200,
            201,
        )
    outsider = _principal(client, new_name("nobody"))
    body = webhook(receiver.endpoint(f"/{sub}", code="c"))

    def call(token: str | None, method: str, path: str, **kwargs: Any) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as c:
            return c.request(method, path, **kwargs).status_code

    reader = tokens["Reader"]
    assert call(reader, "PUT", path_for(topic, new_name()), json=body) == 403
    assert call(reader, "PUT", path_for(topic, sub), json=body) == 403
    assert call(reader, "PATCH", path_for(topic, sub), json={"properties": {"labels": []}}) == 403
    assert call(reader, "DELETE", path_for(topic, sub)) == 403
    assert call(reader, "POST", f"{path_for(topic, sub)}/getFullUrl") == 403
    assert call(reader, "GET", path_for(topic, sub)) == 200
    assert call(reader, "GET", path_for(topic)) == 200

    for role in ("Contributor", "Owner"):
        created = new_name()
        assert call(tokens[role], "PUT", path_for(topic, created), json=body) == 201
        assert (
            call(tokens[role], "PATCH", path_for(topic, created), json={"properties": {"labels": []}}) == 200
        )
        assert call(tokens[role], "POST", f"{path_for(topic, created)}/getFullUrl") == 200
        assert call(tokens[role], "DELETE", path_for(topic, created)) == 204

    assert call(tokens["DataSender"], "PUT", path_for(topic, new_name()), json=body) == 403
    assert call(tokens["DataSender"], "GET", path_for(topic, sub)) == 403
    assert call(outsider, "GET", path_for(topic, sub)) == 403
    assert call(None, "GET", path_for(topic, sub)) == 401
    assert call(None, "PUT", path_for(topic, new_name()), json=body) == 401
    assert call("not-a-token", "PUT", path_for(topic, new_name()), json=body) == 401


def test_rbac_on_system_topics_uses_the_workspace_roles(
    server: ServerProcess, client: httpx.Client, receiver: Receiver
) -> None:
    workspace = new_name("ws")
    create_system_topic(server, workspace)
    reader, contributor = new_name("reader"), new_name("contrib")
    reader_token, contributor_token = _principal(client, reader), _principal(client, contributor)
    assign_role(server, "workspace", workspace, reader, "Reader")
    assign_role(server, "workspace", workspace, contributor, "Contributor")
    body = webhook(receiver.endpoint("/ws-hook"))
    for parent in ("systemTopics", "workspaces"):
        sub = new_name()
        path = f"/{parent}/{workspace}/eventSubscriptions/{sub}"
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {reader_token}"}) as c:
            assert c.put(path, json=body).status_code == 403
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {contributor_token}"}) as c:
            assert c.put(path, json=body).status_code == 201
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {reader_token}"}) as c:
            assert c.get(path).status_code == 200


def test_routes_and_body_schemas_are_in_openapi(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for parent in ("topics", "systemTopics", "workspaces"):
        item = paths[f"/{parent}/{{parent}}/eventSubscriptions/{{subscription}}"]
        assert {"put", "patch", "get", "delete"} <= set(item)
        schema = item["put"]["requestBody"]["content"]["application/json"]["schema"]
        assert "destination" in schema["properties"]["properties"]["properties"]
        assert "get" in paths[f"/{parent}/{{parent}}/eventSubscriptions"]
        assert "post" in paths[f"/{parent}/{{parent}}/eventSubscriptions/{{subscription}}/getFullUrl"]
    assert "get" in paths["/eventSubscriptions/validate"]


def test_validation_event_has_azure_shape(
    server: ServerProcess, client: httpx.Client, receiver: Receiver
) -> None:
    topic = make_topic(client)
    sub = new_name()
    put_ok(client, path_for(topic, sub), webhook(receiver.endpoint(f"/{sub}")))
    [request] = receiver.validations(f"/{sub}")
    assert request.header("aeg-event-type") == "SubscriptionValidation"
    assert request.header("aeg-subscription-name") == sub.upper()
    assert (request.header("content-type") or "").startswith("application/json")
    [event] = request.json()
    assert set(event) == {
        "id",
        "topic",
        "subject",
        "data",
        "eventType",
        "eventTime",
        "metadataVersion",
        "dataVersion",
    }
    assert event["eventType"] == VALIDATION_EVENT_TYPE
    assert event["topic"] == client.get(f"/topics/{topic}").json()["id"]
    assert set(event["data"]) == {"validationCode", "validationUrl"}
    assert event["data"]["validationUrl"].startswith(f"{server.url}/eventSubscriptions/validate?id=")
    assert event["metadataVersion"] == "1"
