"""Azure credentials against mlgrid over https: azure-identity's ``ClientSecretCredential``
gets an mlgrid bearer token from the OAuth endpoint, the SDK's ``MlgridTokenCredential`` is a
ready ``TokenCredential``, and the real ``azure-eventgrid`` clients publish and receive with
both (sync and async). Bad credentials raise what they raise against Azure."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import pytest
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridConsumerClient, EventGridEvent, EventGridPublisherClient
from azure.eventgrid.aio import EventGridConsumerClient as AsyncConsumer
from azure.eventgrid.aio import EventGridPublisherClient as AsyncPublisher
from azure.identity import ClientSecretCredential
from tests.support.server import ServerProcess

from mlgrid.client.azure_credential import AsyncMlgridTokenCredential, MlgridTokenCredential

EVENTGRID_SCOPE = "https://eventgrid.azure.net/.default"


@pytest.fixture(scope="module")
def https_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(data_dir=tmp_path_factory.mktemp("azcred"), tls_self_signed=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def trust_server(https_server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """Azure's SDKs read the CA bundle from the environment (requests and aiohttp/ssl)."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(https_server.ca_bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(https_server.ca_bundle))


@pytest.fixture(scope="module")
def world(https_server: ServerProcess) -> dict[str, str]:
    """An Event Grid topic and a CloudEvents topic with a Queue subscription, and a principal
    that may publish to both and receive from the second."""
    name = "azcred-" + uuid.uuid4().hex[:6]
    with https_server.client() as admin:
        assert admin.put(f"/topics/{name}-eg", json={}).status_code in (200, 201)
        assert admin.put(f"/topics/{name}-ce", json={"properties": {"inputSchema": "CloudEventSchemaV1_0"}}
                         ).status_code in (200, 201)
        queue = {"properties": {"destination": {"endpointType": "Queue", "properties": {}}}}
        assert admin.put(f"/topics/{name}-ce/eventSubscriptions/pull", json=queue).status_code in (200, 201)
        token = admin.put(f"/principals/{name}-app").json()["token"]
        # One role per principal and topic: Contributor both publishes and receives.
        for topic, role in ((f"{name}-eg", "DataSender"), (f"{name}-ce", "Contributor")):
            assigned = admin.put(f"/topics/{topic}/roleAssignments/{name}-app", json={"role": role})
            assert assigned.status_code in (200, 201), assigned.text
        tenant = str(uuid.uuid4())  # any tenant: mlgrid has one
    return {"name": name, "principal": f"{name}-app", "token": token, "tenant": tenant}


def _identity(
    server: ServerProcess, world: dict[str, str], secret: str | None = None
) -> ClientSecretCredential:
    return ClientSecretCredential(
        world["tenant"], world["principal"], secret or world["token"],
        authority=server.url.removeprefix("https://"), disable_instance_discovery=True,
    )


def _stored(server: ServerProcess, topic: str) -> list[dict[str, object]]:
    with server.client() as admin:
        listed = admin.get(f"/topics/{topic}/events")
        assert listed.status_code == 200, listed.text
        return list(listed.json()["value"])


def test_discovery_and_token_endpoint_speak_oauth(https_server: ServerProcess, world: dict[str, str]) -> None:
    with httpx.Client(base_url=https_server.url, verify=https_server.verify) as anonymous:
        config = anonymous.get(f"/{world['tenant']}/v2.0/.well-known/openid-configuration").json()
        assert config["token_endpoint"] == f"{https_server.url}/{world['tenant']}/oauth2/v2.0/token"
        form = {"grant_type": "client_credentials", "client_id": world["principal"],
                "client_secret": world["token"], "scope": "https://management.azure.com/.default"}
        granted = anonymous.post(config["token_endpoint"], data=form)
        assert granted.status_code == 200 and granted.headers["cache-control"] == "no-store"
        assert granted.json()["token_type"] == "Bearer" and granted.json()["access_token"] == world["token"]
        for change, status, error in (
            ({"client_secret": "mlg_wrong"}, 401, "invalid_client"),
            ({"client_id": "someone-else"}, 401, "invalid_client"),
            ({"scope": "https://vault.azure.net/.default"}, 400, "invalid_scope"),
            ({"grant_type": "password"}, 400, "unsupported_grant_type"),
        ):
            refused = anonymous.post(config["token_endpoint"], data={**form, **change})
            assert refused.status_code == status and refused.json()["error"] == error, refused.text
            assert refused.json()["error_description"]


def test_client_secret_credential_gets_an_mlgrid_token_and_publishes(
    https_server: ServerProcess, world: dict[str, str]
) -> None:
    credential = _identity(https_server, world)
    assert credential.get_token(EVENTGRID_SCOPE).token == world["token"]
    topic = f"{world['name']}-eg"
    client = EventGridPublisherClient(f"{https_server.url}/topics/{topic}/api/events", credential)
    event = EventGridEvent(subject="s", data={"n": 1}, event_type="Test.Event", data_version="1")
    client.send(event)
    assert [e["id"] for e in _stored(https_server, topic)] == [str(event.id)]


def test_wrong_secret_raises_client_authentication_error(
    https_server: ServerProcess, world: dict[str, str]
) -> None:
    with pytest.raises(ClientAuthenticationError, match="client_secret is not the token of principal"):
        _identity(https_server, world, secret="mlg_not-the-token").get_token(EVENTGRID_SCOPE)


def test_token_credential_publishes_and_receives_sync(
    https_server: ServerProcess, world: dict[str, str]
) -> None:
    credential = MlgridTokenCredential(world["token"])
    topic = f"{world['name']}-ce"
    publisher = EventGridPublisherClient(https_server.url, credential, namespace_topic=topic)
    consumer = EventGridConsumerClient(https_server.url, credential, namespace_topic=topic,
                                       subscription="pull")
    sent = CloudEvent(source="/tests", type="Test.Sync", data={"n": 2})
    publisher.send(sent)
    received = consumer.receive(max_events=1, max_wait_time=10)
    assert [d.event.id for d in received] == [sent.id]
    ack = consumer.acknowledge(lock_tokens=[received[0].broker_properties.lock_token])
    assert ack.succeeded_lock_tokens == [received[0].broker_properties.lock_token]
    # A revoked or foreign token: the same exception type as against Azure.
    stranger = EventGridPublisherClient(https_server.url, MlgridTokenCredential("mlg_unknown"),
                                        namespace_topic=topic)
    with pytest.raises(ClientAuthenticationError):
        stranger.send(CloudEvent(source="/tests", type="Test.Sync", data={}))


def test_token_credential_publishes_and_receives_async(
    https_server: ServerProcess, world: dict[str, str]
) -> None:
    async def run() -> None:
        credential = AsyncMlgridTokenCredential(world["token"])
        topic = f"{world['name']}-ce"
        # aiohttp builds its default SSL context once per process, so SSL_CERT_FILE set by a
        # fixture may come too late: name the CA bundle to azure-core's transport directly.
        trust = {"connection_verify": str(https_server.ca_bundle)}
        publisher = AsyncPublisher(https_server.url, credential, namespace_topic=topic, **trust)
        consumer = AsyncConsumer(https_server.url, credential, namespace_topic=topic, subscription="pull",
                                 **trust)
        async with publisher, consumer:
            sent = CloudEvent(source="/tests", type="Test.Async", data={"n": 3})
            await publisher.send(sent)
            received = await consumer.receive(max_events=1, max_wait_time=10)
            assert [d.event.id for d in received] == [sent.id]
            await consumer.acknowledge(lock_tokens=[received[0].broker_properties.lock_token])

    asyncio.run(run())


def test_azure_sdks_refuse_bearer_tokens_over_plain_http(world: dict[str, str]) -> None:
    """Why TLS is needed at all: azure-core will not send a bearer token over http."""
    client = EventGridPublisherClient("http://127.0.0.1:9/topics/t/api/events",
                                      MlgridTokenCredential(world["token"]))
    with pytest.raises(ServiceRequestError, match="non-TLS"):
        client.send(EventGridEvent(subject="s", data={}, event_type="T", data_version="1"))
