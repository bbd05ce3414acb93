"""``mlgrid eventgrid event-subscription ...`` and ``mlgrid deadletters ...`` against a real server.

The az flags go through the CLI, the JSON they produce through the server's validation, and
the filters through real matching: which events a subscription matched is read from its
deliveries (recorded in the publish transaction) and from a real webhook receiver.
"""

from __future__ import annotations

import json
import time
import uuid
from decimal import Decimal
from typing import Any

import pytest
from tests.support.cli_runner import Cli, plain
from tests.support.receiver import Receiver, Reply

from mlgrid.events.jsoncodec import dumps

ES = ("eventgrid", "event-subscription")


@pytest.fixture
def topic(cli: Cli) -> str:
    """A fresh topic, kept until the module's server stops (deleting topics is tested elsewhere)."""
    name = "t" + uuid.uuid4().hex[:10]
    cli.run("topic", "create", "--name", name)
    return name


def unique(prefix: str = "s") -> str:
    return prefix + uuid.uuid4().hex[:10]


def publish(cli: Cli, topic: str, events: list[dict[str, Any]]) -> None:
    cli.run("events", "publish", "--topic", topic, "--data", dumps(events).decode())


def matched_ids(cli: Cli, source: str, name: str) -> set[str]:
    with cli.server.client() as http:
        response = http.get(f"{source}/eventSubscriptions/{name}/deliveries")
        assert response.status_code == 200, response.text
        return {d["eventId"] for d in response.json()["value"]}


def test_create_with_az_flags_then_show_list_update_delete(cli: Cli, receiver: Receiver, topic: str) -> None:
    name = unique()
    url = receiver.endpoint("/hooks/full", code="s3cret")
    created = cli.json(
        *ES, "create", "--name", name, "--source-resource-id", topic, "--endpoint", url,
        "--endpoint-type", "WebHook",
        "--included-event-types", "Shop.OrderPlaced", "Shop.OrderPaid",
        "--subject-begins-with", "orders/", "--subject-ends-with", "/eu",
        "--subject-case-sensitive", "true",
        "--advanced-filter", "data.total", "NumberInRange", "-10,-1", "5,10",
        "--advanced-filter", "data.tag", "StringIn", "('a', 'b c')",
        "--advanced-filter", "data.gone", "IsNullOrUndefined",
        "--enable-advanced-filtering-on-arrays",
        "--event-delivery-schema", "cloudeventschemav1_0",
        "--max-delivery-attempts", "5", "--event-ttl", "60",
        "--deadletter-endpoint",
        "/subscriptions/x/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/a"
        "/blobServices/default/containers/dead-letters",
        "--delivery-attribute-mapping", "X-Team", "static", "ml",
        "--delivery-attribute-mapping", "X-Key", "static", "hidden", "true",
        "--delivery-attribute-mapping", "X-Model", "dynamic", "data.model",
        "--labels", "team-a", "prod",
        "--expiration-date", "2099-12-31",
        "--max-events-per-batch", "10", "--preferred-batch-size-in-kilobytes", "128",
    )
    props = created["properties"]
    assert created["name"] == name and props["provisioningState"] == "Succeeded"
    destination = props["destination"]["properties"]
    assert destination["endpointBaseUrl"] == receiver.endpoint("/hooks/full")
    assert "endpointUrl" not in destination and "s3cret" not in json.dumps(created)
    assert destination["maxEventsPerBatch"] == 10 and destination["preferredBatchSizeInKilobytes"] == 128
    assert destination["deliveryAttributeMappings"] == [
        {"name": "X-Team", "type": "Static", "properties": {"value": "ml", "isSecret": False}},
        {"name": "X-Key", "type": "Static", "properties": {"isSecret": True}},
        {"name": "X-Model", "type": "Dynamic", "properties": {"sourceField": "data.model"}},
    ]
    assert props["filter"] == {
        "includedEventTypes": ["Shop.OrderPlaced", "Shop.OrderPaid"],
        "subjectBeginsWith": "orders/",
        "subjectEndsWith": "/eu",
        "isSubjectCaseSensitive": True,
        "enableAdvancedFilteringOnArrays": True,
        "advancedFilters": [
            {"operatorType": "NumberInRange", "key": "data.total", "values": [[-10, -1], [5, 10]]},
            {"operatorType": "StringIn", "key": "data.tag", "values": ["a", "b c"]},
            {"operatorType": "IsNullOrUndefined", "key": "data.gone"},
        ],
    }
    assert props["eventDeliverySchema"] == "CloudEventSchemaV1_0"
    assert props["retryPolicy"] == {"maxDeliveryAttempts": 5, "eventTimeToLiveInMinutes": 60}
    assert props["deadLetterDestination"]["properties"]["blobContainerName"] == "dead-letters"
    assert props["labels"] == ["team-a", "prod"]
    assert props["expirationTimeUtc"].startswith("2099-12-31T00:00:00")

    assert cli.json(*ES, "show", "-n", name, "--source-resource-id", f"/topics/{topic}") == created
    full = cli.json(*ES, "show", "-n", name, "--source-resource-id", topic, "--include-full-endpoint-url")
    assert full["properties"]["endpointUrl"] == url

    listed = cli.json(*ES, "list", "--source-resource-id", topic)
    assert [s["name"] for s in listed] == [name]
    table = plain(cli.run(*ES, "list", "--source-resource-id", topic, "-o", "table").stdout)
    assert name in table and "data.total NumberInRange -10,-1 5,10" in table

    updated = cli.json(*ES, "update", "-n", name, "--source-resource-id", topic,
                       "--subject-ends-with", "/us", "--max-delivery-attempts", "3", "--labels", "b")
    props = updated["properties"]
    assert props["filter"]["subjectEndsWith"] == "/us"
    assert props["filter"]["subjectBeginsWith"] == "orders/"  # the rest of the filter is kept
    assert len(props["filter"]["advancedFilters"]) == 3
    assert props["retryPolicy"] == {"maxDeliveryAttempts": 3, "eventTimeToLiveInMinutes": 60}
    assert props["labels"] == ["b"]
    assert props["destination"]["properties"]["maxEventsPerBatch"] == 10
    assert cli.json(*ES, "show", "-n", name, "--source-resource-id", topic,
                    "--include-full-endpoint-url")["properties"]["endpointUrl"] == url  # secret URL kept

    batching = cli.json(*ES, "update", "-n", name, "--source-resource-id", topic,
                        "--max-events-per-batch", "2",
                        "--advanced-filter", "data.total", "NumberGreaterThan", "0")
    kept = batching["properties"]["destination"]["properties"]
    assert kept["maxEventsPerBatch"] == 2
    assert [m["name"] for m in kept["deliveryAttributeMappings"]] == ["X-Team", "X-Key", "X-Model"]
    assert batching["properties"]["filter"]["advancedFilters"] == [
        {"operatorType": "NumberGreaterThan", "key": "data.total", "value": 0}
    ]

    assert cli.run(*ES, "delete", "-n", name, "--source-resource-id", topic).stdout == ""
    gone = cli.run(*ES, "show", "-n", name, "--source-resource-id", topic, expect=1)
    assert gone.stderr.startswith("error: NotFound: ")


def test_az_filter_syntax_matches_the_right_events(cli: Cli, receiver: Receiver, topic: str) -> None:
    name = unique()
    cli.run(
        *ES, "create", "--name", name, "--source-resource-id", topic,
        "--endpoint", receiver.endpoint("/hooks/filters"),
        "--included-event-types", "shop.orderplaced",
        "--subject-begins-with", "ORDERS/",
        "--advanced-filter", "data.total", "NumberInRange", "-10,-1", "5,10",
        "--advanced-filter", "data.tag", "StringIn", "('a', 'b c')",
        "--advanced-filter", "data.exact", "NumberLessThan", "0.30000000000000001",
        "--advanced-filter", "data.gone", "IsNullOrUndefined",
    )

    def event(event_id: str, event_type: str = "Shop.OrderPlaced", subject: str = "orders/1",
              **data: Any) -> dict[str, Any]:
        return {"id": event_id, "eventType": event_type, "subject": subject, "data": data}

    base = {"total": 7, "tag": "b c", "exact": Decimal("0.3")}
    publish(cli, topic, [
        event("hit-1", **base),
        event("hit-2", **{**base, "total": -1, "tag": "A"}),
        event("miss-type", "Shop.Other", **base),
        event("miss-subject", subject="invoices/1", **base),
        event("miss-range", **{**base, "total": 0}),
        event("miss-tag", **{**base, "tag": "b"}),
        event("miss-exact", **{**base, "exact": Decimal("0.30000000000000001")}),
        event("miss-present", **{**base, "gone": 1}),
    ])
    assert matched_ids(cli, f"/topics/{topic}", name) == {"hit-1", "hit-2"}
    delivered = receiver.wait_for_events(2, path="/hooks/filters")
    assert {e["id"] for e in delivered} == {"hit-1", "hit-2"}


def test_workspace_sources_by_path_and_resource_id(cli: Cli, receiver: Receiver) -> None:
    workspace = unique("w")
    with cli.server.client() as http:
        response = http.put(f"/workspaces/{workspace}", json={"properties": {}})
        if response.status_code == 404:
            pytest.skip("the workspace API is not served by this build")
        assert response.status_code in (200, 201), response.text
        resource_id = response.json()["id"]
    try:
        name = unique()
        created = cli.json(
            *ES, "create", "--name", name, "--source-resource-id", resource_id,
            "--endpoint", receiver.endpoint("/hooks/ws"),
            "--included-event-types", "Microsoft.MachineLearningServices.ModelRegistered",
            "--advanced-filter", "data.ModelTags.key1", "StringIn", "('value1')",
        )
        assert created["properties"]["topic"] == resource_id
        for source in (f"/workspaces/{workspace}", f"/systemTopics/{workspace}", resource_id):
            assert [s["name"] for s in cli.json(*ES, "list", "--source-resource-id", source)] == [name]
        arm_system_topic = resource_id.replace(
            "Microsoft.MachineLearningServices/workspaces", "Microsoft.EventGrid/systemTopics"
        )
        assert cli.json(*ES, "show", "-n", name, "--source-resource-id", arm_system_topic)["name"] == name
        cli.run(*ES, "delete", "-n", name, "--source-resource-id", f"/workspaces/{workspace}")
        missing = cli.run(*ES, "list", "--source-resource-id", "/workspaces/nosuchworkspace", expect=1)
        assert missing.stderr.startswith("error: NotFound: ")
    finally:
        with cli.server.client() as http:
            http.delete(f"/workspaces/{workspace}")


def test_server_side_errors_exit_1_with_the_field(cli: Cli, receiver: Receiver, topic: str) -> None:
    out_of_range = cli.run(*ES, "create", "-n", unique(), "--source-resource-id", topic,
                           "--endpoint", receiver.endpoint("/hooks/x"), "--max-delivery-attempts", "31",
                           expect=1)
    assert "properties.retryPolicy.maxDeliveryAttempts" in out_of_range.stderr
    no_endpoint = cli.run(*ES, "create", "-n", unique(), "--source-resource-id", topic, expect=1)
    assert "properties.destination" in no_endpoint.stderr
    unknown_key = cli.run(*ES, "create", "-n", unique(), "--source-resource-id", topic,
                          "--endpoint", receiver.endpoint("/hooks/x"),
                          "--advanced-filter", "nosuchkey", "StringIn", "a", expect=1)
    assert unknown_key.stderr.startswith("error: ")
    receiver.configure("/hooks/refuses", validation=Reply(500))
    refused = cli.run(*ES, "create", "-n", unique(), "--source-resource-id", topic,
                      "--endpoint", receiver.endpoint("/hooks/refuses"), expect=1)
    assert "WebhookValidationFailed" in refused.stderr
    unknown_topic = cli.run(*ES, "create", "-n", unique(), "--source-resource-id", "nosuchtopic",
                            "--endpoint-type", "queue", expect=1)
    assert unknown_topic.stderr.startswith("error: NotFound: ")


def wait_for_dead_letters(cli: Cli, source: str, name: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while True:
        letters = cli.json("deadletters", "list", "--name", name, "--source-resource-id", source)
        if len(letters) >= count or time.monotonic() > deadline:
            return list(letters)
        time.sleep(0.2)


def test_dead_letters_list_and_redeliver(cli: Cli, receiver: Receiver, topic: str) -> None:
    name = unique()
    path = "/hooks/dead"
    receiver.configure(path, default=Reply(400))
    cli.run(*ES, "create", "--name", name, "--source-resource-id", topic,
            "--endpoint", receiver.endpoint(path), "--deadletter-endpoint", "deadletters",
            "--max-delivery-attempts", "1")
    publish(cli, topic, [{"id": "dl-1", "eventType": "Shop.A", "subject": "a"},
                         {"id": "dl-2", "eventType": "Shop.A", "subject": "b"}])
    letters = wait_for_dead_letters(cli, topic, name, 2)
    assert sorted(letter["eventId"] for letter in letters) == ["dl-1", "dl-2"]
    assert {letter["deadLetterReason"] for letter in letters} == {"UndeliverableDueToClientError"}
    assert all(letter["record"]["lastHttpStatusCode"] == 400 for letter in letters)
    table = cli.run("deadletters", "list", "-n", name, "--source-resource-id", topic, "-o", "table").stdout
    assert "UndeliverableDueToClientError" in plain(table) and "dl-1" in table

    receiver.configure(path, default=Reply(200))
    first = next(letter for letter in letters if letter["eventId"] == "dl-1")
    one = cli.json("deadletters", "redeliver", "--name", name, "--source-resource-id", f"/topics/{topic}",
                   "--ids", first["id"], "no-such-id")
    assert [item["id"] for item in one["value"]] == [first["id"]]
    assert one["unknownIds"] == ["no-such-id"]
    receiver.wait_for(lambda _: any(e["id"] == "dl-1" for e in receiver.events(path)), path=path, timeout=30)

    rest = cli.json("deadletters", "redeliver", "--name", name, "--source-resource-id", topic)
    assert len(rest["value"]) == 1
    receiver.wait_for(lambda _: any(e["id"] == "dl-2" for e in receiver.events(path)), path=path, timeout=30)
    missing = cli.run("deadletters", "list", "--name", "nosuchsub", "--source-resource-id", topic, expect=1)
    assert missing.stderr.startswith("error: NotFound: ")
