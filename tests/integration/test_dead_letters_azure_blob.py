"""Dead letters in Azure Blob Storage (Azurite): a consumer written with ``azure-storage-blob``
for Azure Event Grid's dead-letter containers reads mlgrid's unchanged.

The subscription names its container the Azure way (``deadLetterDestination`` ``StorageBlob``
with ``resourceId`` and ``blobContainerName``); the server, run with ``MLGRID_BLOB_URL`` set
to Azurite, creates the container and writes ``<SUBSCRIPTION>/<Y>/<M>/<D>/<H>/<uuid>.json``
blobs holding a JSON array of records, as Azure does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from azure.storage.blob import ContainerClient
from tests.support.azurite import Azurite
from tests.support.delivery import (
    dead_letters,
    event,
    make_topic,
    new_name,
    publish,
    subscribe,
    wait_final,
    webhook,
)
from tests.support.fixtures import receiver_fixture  # noqa: F401 (pytest fixture)
from tests.support.receiver import Receiver, Reply
from tests.support.server import ServerProcess

STORAGE_ACCOUNT_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
    "Microsoft.Storage/storageAccounts/devstoreaccount1"
)


@pytest.fixture(scope="module")
def azure_server(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(
        data_dir=tmp_path_factory.mktemp("server-dead-letters-azure"),
        extra_args=["--retry-schedule", "0.2,0.4,0.8"],
        env={"MLGRID_BLOB_URL": azurite.connection_string},
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _consume(azurite: Azurite, container: str, subscription: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """What an Azure dead-letter consumer does: list the subscription's blobs, read each."""
    client = ContainerClient.from_connection_string(azurite.connection_string, container_name=container)
    with client:
        return [
            (blob.name, json.loads(client.download_blob(blob.name).readall()))
            for blob in client.list_blobs(name_starts_with=subscription.upper() + "/")
        ]


@pytest.mark.parametrize("schema", ["EventGridSchema", "CloudEventSchemaV1_0"])
def test_dead_letters_land_in_the_named_container_in_azures_layout(
    azure_server: ServerProcess, azurite: Azurite, receiver: Receiver, schema: str
) -> None:
    container = "dl-" + new_name("c")
    with azure_server.client() as client:
        topic, _ = make_topic(client)
        path = "/" + new_name("p")
        receiver.configure(path, default=Reply(400))  # not retried: dead-lettered at once
        sub = subscribe(
            client,
            topic,
            webhook(receiver.endpoint(path)),
            eventDeliverySchema=schema,
            deadLetterDestination={
                "endpointType": "StorageBlob",
                "properties": {"resourceId": STORAGE_ACCOUNT_ID, "blobContainerName": container},
            },
        )
        shown = client.get(f"/topics/{topic}/eventSubscriptions/{sub}").json()
        assert shown["properties"]["deadLetterDestination"]["properties"]["blobContainerName"] == container
        event_id = new_name("ev")
        publish(client, topic, [event(event_id)])
        [row] = wait_final(client, topic, sub, 1)
        assert row["state"] == "deadLettered"
        [letter] = dead_letters(client, topic, sub)

    [(name, records)] = _consume(azurite, container, sub)
    assert letter["blobPath"] == f"{container}/{name}"
    parts = name.split("/")
    assert parts[0] == sub.upper() and len(parts) == 6 and parts[-1].endswith(".json")
    year, month, day, hour = parts[1:5]
    assert len(year) == 4 and all(p == "0" or not p.startswith("0") for p in (month, day, hour))
    [record] = records
    assert record == letter["record"]
    if schema == "EventGridSchema":
        assert record["id"] == event_id
        assert record["deadLetterReason"] == "UndeliverableDueToClientError"
        assert record["deliveryAttempts"] == 1
        assert record["lastHttpStatusCode"] == 400
        assert record["publishTime"].endswith("Z")
    else:
        assert record["id"] == event_id and record["specversion"] == "1.0"
        assert record["deadletterreason"] == "UndeliverableDueToClientError"
        assert record["deliveryattempts"] == 1
        assert record["lasthttpstatuscode"] == 400


def test_nothing_is_written_to_the_data_directory(azure_server: ServerProcess) -> None:
    """With a blob URL the data directory keeps no dead letters (they are all in Azure)."""
    blobs = azure_server.data_dir / "blobs"
    assert not blobs.exists() or not any(p.is_file() for p in blobs.rglob("*"))


def test_a_bad_container_name_is_a_400_naming_the_field(
    azure_server: ServerProcess, receiver: Receiver
) -> None:
    with azure_server.client() as client:
        topic, _ = make_topic(client)
        body = {
            "properties": {
                "destination": webhook(receiver.endpoint("/x")),
                "deadLetterDestination": {
                    "endpointType": "StorageBlob",
                    "properties": {"blobContainerName": "Bad_Name"},
                },
            }
        }
        response = client.put(f"/topics/{topic}/eventSubscriptions/{new_name('sub')}", json=body)
    assert response.status_code == 400, response.text
    assert "blobContainerName" in response.text


