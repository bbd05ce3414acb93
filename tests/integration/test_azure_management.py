"""``azure-mgmt-eventgrid`` manages mlgrid unchanged, end to end over https.

The real ``EventGridManagementClient`` (its ARM paths, LRO pollers, models) with a credential
from azure-identity's ``ClientSecretCredential`` against mlgrid's token endpoint: topics and
subscriptions on a custom topic and on a workspace's system topic (with the seed's
``data.ModelTags.key1 StringIn value1`` filter), keys, full URL, list calls — then events flow
through the subscriptions it made. Wrong subscription id, resource group, credentials and
api-version raise the exception types they raise against Azure.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.eventgrid import EventGridEvent, EventGridPublisherClient
from azure.identity import ClientSecretCredential
from azure.mgmt.eventgrid import EventGridManagementClient
from azure.mgmt.eventgrid import models as m
from tests.support.receiver import Receiver
from tests.support.server import ServerProcess

from mlgrid.client import Client
from mlgrid.client.azure_credential import MlgridTokenCredential

SUBSCRIPTION_ID = str(uuid.uuid4())
GROUP = "ml-rg"
MODEL_REGISTERED = "Microsoft.MachineLearningServices.ModelRegistered"


@pytest.fixture(scope="module")
def https_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(data_dir=tmp_path_factory.mktemp("armtls"), tls_self_signed=True,
                           extra_args=["--subscription-id", SUBSCRIPTION_ID])
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def trust_server(https_server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(https_server.ca_bundle))


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture(scope="module")
def operator(https_server: ServerProcess) -> dict[str, str]:
    """A principal who is Contributor of the workspace (created by the admin) and creates topics."""
    name = "arm-ops-" + uuid.uuid4().hex[:6]
    with https_server.client() as admin:
        token = admin.put(f"/principals/{name}").json()["token"]
    return {"name": name, "token": token}


def mgmt(server: ServerProcess, credential: Any, subscription_id: str = SUBSCRIPTION_ID,
         **kwargs: Any) -> EventGridManagementClient:
    return EventGridManagementClient(credential, subscription_id, base_url=server.url,
                                     polling_interval=0.05, **kwargs)


def admin_identity(server: ServerProcess) -> ClientSecretCredential:
    """The admin principal, through azure-identity and mlgrid's token endpoint."""
    return ClientSecretCredential("mlgrid", "admin", server.admin_token,
                                  authority=server.url.removeprefix("https://"),
                                  disable_instance_discovery=True)


def test_custom_topic_lifecycle_keys_subscriptions_and_events(
    https_server: ServerProcess, receiver: Receiver
) -> None:
    client = mgmt(https_server, admin_identity(https_server))
    name = "arm-topic-" + uuid.uuid4().hex[:6]
    topic = client.topics.begin_create_or_update(GROUP, name, m.Topic(location="westus")).result()
    assert topic.provisioning_state == "Succeeded"
    group_id = f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{GROUP}"
    assert topic.id == f"{group_id}/providers/Microsoft.EventGrid/topics/{name}"
    assert topic.endpoint == f"{https_server.url}/topics/{name}/api/events"
    assert client.topics.get(GROUP, name).name == name
    assert name in [t.name for t in client.topics.list_by_resource_group(GROUP)]
    assert name in [t.name for t in client.topics.list_by_subscription()]
    updated = client.topics.begin_update(GROUP, name, m.TopicUpdateParameters(tags={"team": "ml"})).result()
    assert updated.name == name

    keys = client.topics.list_shared_access_keys(GROUP, name)
    regenerated = client.topics.begin_regenerate_key(
        GROUP, name, m.TopicRegenerateKeyRequest(key_name="key2")).result()
    assert regenerated.key1 == keys.key1 and regenerated.key2 != keys.key2

    hook = receiver.endpoint("/arm-topic", code="s3cret")
    created = client.event_subscriptions.begin_create_or_update(topic.id, "orders", m.EventSubscription(
        destination=m.WebHookEventSubscriptionDestination(endpoint_url=hook),
        filter=m.EventSubscriptionFilter(included_event_types=["Shop.Order"]),
    )).result()
    assert created.provisioning_state == "Succeeded"
    assert created.id == f"{topic.id}/providers/Microsoft.EventGrid/eventSubscriptions/orders"
    assert isinstance(created.destination, m.WebHookEventSubscriptionDestination)
    assert created.destination.endpoint_base_url == hook.split("?")[0]
    assert client.event_subscriptions.get_full_url(topic.id, "orders").endpoint_url == hook
    listed = client.event_subscriptions.list_by_resource(GROUP, "Microsoft.EventGrid", "topics", name)
    assert [s.name for s in listed] == ["orders"]
    assert [s.name for s in client.topic_event_subscriptions.list(GROUP, name)] == ["orders"]

    publisher = EventGridPublisherClient(topic.endpoint, AzureKeyCredential(keys.key1))
    publisher.send([EventGridEvent(subject="a", data={"n": 1}, event_type="Shop.Order", data_version="1"),
                    EventGridEvent(subject="b", data={"n": 2}, event_type="Shop.Other", data_version="1")])
    delivered = receiver.wait_for_events(1, path="/arm-topic")
    assert [e["eventType"] for e in delivered] == ["Shop.Order"]

    changed = client.event_subscriptions.begin_update(
        topic.id, "orders", m.EventSubscriptionUpdateParameters(labels=["team-a"])).result()
    assert changed.labels == ["team-a"] and changed.filter.included_event_types == ["Shop.Order"]
    client.event_subscriptions.begin_delete(topic.id, "orders").result()
    with pytest.raises(ResourceNotFoundError):
        client.event_subscriptions.get(topic.id, "orders")
    client.topics.begin_delete(GROUP, name).result()
    with pytest.raises(ResourceNotFoundError) as caught:
        client.topics.get(GROUP, name)
    # The group held only this topic; mlgrid's resource groups exist while they hold something.
    assert caught.value.error is not None and caught.value.error.code == "ResourceGroupNotFound"


def test_custom_schema_topic_as_azures_tests_create_it(https_server: ServerProcess) -> None:
    client = mgmt(https_server, admin_identity(https_server))
    mapping = m.JsonInputSchemaMapping(
        id=m.JsonField(source_field="customId"),
        event_time=m.JsonField(source_field="customEventTime"),
        event_type=m.JsonFieldWithDefault(source_field="customEventType", default_value=""),
        subject=m.JsonFieldWithDefault(source_field="customSubject", default_value=""),
        data_version=m.JsonFieldWithDefault(source_field="customDataVersion", default_value=""),
    )
    name = "arm-custom-" + uuid.uuid4().hex[:6]
    topic = client.topics.begin_create_or_update(GROUP, name, m.Topic(
        location="westus", input_schema="CustomEventSchema", input_schema_mapping=mapping)).result()
    assert isinstance(topic.input_schema_mapping, m.JsonInputSchemaMapping)
    assert topic.input_schema_mapping.event_type.source_field == "customEventType"
    client.topics.begin_delete(GROUP, name).result()


def test_workspace_system_topic_subscription_with_the_seed_filter(
    https_server: ServerProcess, receiver: Receiver, operator: dict[str, str], tmp_path: Path
) -> None:
    workspace = "arm-ws-" + uuid.uuid4().hex[:6]
    with Client(https_server.url, https_server.admin_token, ca_bundle=str(https_server.ca_bundle)) as admin:
        ws = admin.workspaces.create(workspace, resource_group=GROUP)
        with https_server.client() as raw:
            role = raw.put(f"/workspaces/{workspace}/roleAssignments/{operator['name']}",
                           json={"role": "Contributor"})
            assert role.status_code in (200, 201), role.text
        client = mgmt(https_server, MlgridTokenCredential(operator["token"]))
        scope = (f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{GROUP}"
                 f"/providers/Microsoft.MachineLearningServices/workspaces/{workspace}")
        hook = receiver.endpoint("/arm-ws")
        seed_filter = m.EventSubscriptionFilter(
            included_event_types=[MODEL_REGISTERED],
            advanced_filters=[m.StringInAdvancedFilter(key="data.ModelTags.key1", values=["value1"])],
        )
        info = m.EventSubscription(destination=m.WebHookEventSubscriptionDestination(endpoint_url=hook),
                                   filter=seed_filter)
        created = client.event_subscriptions.begin_create_or_update(scope, "tagged-models", info).result()
        assert created.id == f"{scope}/providers/Microsoft.EventGrid/eventSubscriptions/tagged-models"
        assert created.filter.advanced_filters[0].values == ["value1"]
        system_topic = client.system_topics.get(GROUP, workspace)
        assert system_topic.source == scope
        assert [t.name for t in client.system_topics.list_by_resource_group(GROUP)] == [workspace]
        via_topic = client.system_topic_event_subscriptions.get(GROUP, workspace, "tagged-models")
        assert via_topic.type == "Microsoft.EventGrid/systemTopics/eventSubscriptions"
        on_topic = client.system_topic_event_subscriptions.list_by_system_topic(GROUP, workspace)
        assert [s.name for s in on_topic] == ["tagged-models"]
        assert [s.name for s in client.event_subscriptions.list_by_resource(
            GROUP, "Microsoft.MachineLearningServices", "workspaces", workspace)] == ["tagged-models"]

        model = tmp_path / "model.pkl"
        model.write_bytes(b"not really a model")
        ws.register_model("plain", path=model, tags={"key1": "other"})
        ws.register_model("tagged", path=model, tags={"key1": "value1"})
        delivered = receiver.wait_for_events(1, path="/arm-ws")
        assert [(e["eventType"], e["data"]["ModelName"]) for e in delivered] == [(MODEL_REGISTERED, "tagged")]

        client.system_topic_event_subscriptions.begin_delete(GROUP, workspace, "tagged-models").result()
        assert list(client.event_subscriptions.list_by_resource(
            GROUP, "Microsoft.MachineLearningServices", "workspaces", workspace)) == []


def test_azure_errors_raise_azures_exception_types(https_server: ServerProcess) -> None:
    admin = admin_identity(https_server)
    with https_server.client() as raw:
        kept = raw.put("/topics/arm-kept", json={"properties": {"resourceGroup": "kept-rg"}})
        assert kept.status_code in (200, 201), kept.text
    with pytest.raises(ResourceNotFoundError) as missing:
        mgmt(https_server, admin).topics.get("kept-rg", "no-such-topic")
    assert missing.value.error.code == "ResourceNotFound"
    with pytest.raises(ResourceNotFoundError):  # the topic exists, in another group
        mgmt(https_server, admin).topics.get(GROUP, "arm-kept")
    with pytest.raises(ResourceNotFoundError) as wrong_subscription:
        mgmt(https_server, admin, subscription_id=str(uuid.uuid4())).topics.get(GROUP, "x-topic")
    assert wrong_subscription.value.error.code == "SubscriptionNotFound"
    with pytest.raises(ResourceNotFoundError) as wrong_group:
        mgmt(https_server, admin).topics.get("no-such-group", "x-topic")
    assert wrong_group.value.error.code == "ResourceGroupNotFound"
    with pytest.raises(ClientAuthenticationError):
        mgmt(https_server, MlgridTokenCredential("mlg_not-a-token")).topics.get(GROUP, "x-topic")
    with pytest.raises(HttpResponseError) as old_version:
        mgmt(https_server, admin, api_version="1999-01-01").topics.get(GROUP, "x-topic")
    assert old_version.value.status_code == 400 and not isinstance(old_version.value, ResourceNotFoundError)
    assert old_version.value.error.code == "NoRegisteredProviderFound"


def test_arm_discovery_routes_az_reads(https_server: ServerProcess) -> None:
    """What ``az cloud register`` and ``az login`` read (az itself is measured by hand:
    docs/azure-compatibility.md)."""
    with httpx.Client(base_url=https_server.url, verify=https_server.verify) as anonymous:
        metadata = anonymous.get("/metadata/endpoints", params={"api-version": "2022-09-01"}).json()
        assert metadata["resourceManager"] == https_server.url + "/"
        assert metadata["authentication"]["loginEndpoint"] == https_server.url
        assert anonymous.get("/subscriptions").status_code == 401
    with https_server.client() as admin:
        [subscription] = admin.get("/subscriptions", params={"api-version": "2022-12-01"}).json()["value"]
        assert subscription["subscriptionId"] == SUBSCRIPTION_ID and subscription["state"] == "Enabled"
        one = admin.get(f"/subscriptions/{SUBSCRIPTION_ID}", params={"api-version": "2022-12-01"})
        assert one.status_code == 200 and one.json()["id"] == f"/subscriptions/{SUBSCRIPTION_ID}"
        other = admin.get(f"/subscriptions/{uuid.uuid4()}", params={"api-version": "2022-12-01"})
        assert other.status_code == 404 and other.json()["error"]["code"] == "SubscriptionNotFound"
        assert admin.get("/tenants").json()["value"][0]["tenantId"] == subscription["tenantId"]
