"""``mlgrid topic ...`` and ``mlgrid events ...`` against a real server, including error exits."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from tests.support.cli_runner import Cli, plain
from tests.support.server import ServerProcess


@pytest.fixture
def topic(cli: Cli) -> Iterator[str]:
    name = "t" + uuid.uuid4().hex[:10]
    cli.run("topic", "create", "--name", name)
    yield name
    cli.run("topic", "delete", "--name", name, expect=None)


def test_topic_lifecycle(cli: Cli) -> None:
    name = "t" + uuid.uuid4().hex[:10]
    created = cli.json("topic", "create", "--name", name, "--retention-in-days", "2", "-g", "rg-cli")
    assert created["name"] == name
    assert created["properties"]["retentionInDays"] == 2
    assert created["properties"]["resourceGroup"] == "rg-cli"
    assert created["id"].endswith(f"/resourceGroups/rg-cli/providers/Microsoft.EventGrid/topics/{name}")

    shown = cli.json("topic", "show", "-n", name)
    assert shown["properties"]["endpoint"].endswith(f"/topics/{name}/api/events")
    assert name in [t["name"] for t in cli.json("topic", "list")]
    table = cli.run("topic", "list", "-o", "table").stdout
    assert name in table and "inputSchema" in table

    keys = cli.json("topic", "keys", "--name", name)
    assert set(keys) == {"key1", "key2"}
    regenerated = cli.json("topic", "keys", "--name", name, "--regenerate", "key2")
    assert regenerated["key1"] == keys["key1"] and regenerated["key2"] != keys["key2"]

    deleted = cli.run("topic", "delete", "--name", name)
    assert deleted.stdout == ""
    missing = cli.run("topic", "show", "--name", name, expect=1)
    assert f"error: NotFound: topic '{name}' does not exist" in missing.stderr
    assert missing.stdout == ""


def test_global_options_before_the_group(cli: Cli, topic: str) -> None:
    result = cli.run("-o", "table", "topic", "show", "--name", topic, connect=False,
                     env={"MLGRID_URL": cli.server.url, "MLGRID_TOKEN": cli.server.admin_token})
    assert "properties.inputSchema" in result.stdout
    result = cli.run("--url", cli.server.url, "--token", cli.server.admin_token, "topic", "show", "-n", topic,
                     connect=False)
    assert json.loads(result.stdout)["name"] == topic


def test_custom_schema_topic_with_az_mapping_flags(cli: Cli) -> None:
    name = "t" + uuid.uuid4().hex[:10]
    created = cli.json(
        "topic", "create", "--name", name, "--input-schema", "CustomEventSchema",
        "--input-mapping-fields", "eventtype=kind", "subject=path",
        "--input-mapping-default-values", "dataversion=2",
    )
    assert created["properties"]["inputSchema"] == "CustomEventSchema"
    assert created["properties"]["inputSchemaMapping"]["properties"]["eventType"] == {"sourceField": "kind"}
    cli.run("events", "publish", "--topic", name, "--data", '{"kind": "Legacy.Thing", "path": "things/1"}')
    (event,) = cli.json("events", "list", "--topic", name)
    assert (event["eventType"], event["subject"], event["dataVersion"]) == ("Legacy.Thing", "things/1", "2")
    cli.run("topic", "delete", "--name", name)


def test_topic_errors(cli: Cli, tmp_path: Path) -> None:
    bad_name = cli.run("topic", "create", "--name", "a", expect=1)
    assert "topicName" in plain(bad_name.stderr)
    name = "t" + uuid.uuid4().hex[:10]
    out_of_range = cli.run("topic", "create", "--name", name, "--retention-in-days", "99", expect=1)
    assert "properties.retentionInDays" in out_of_range.stderr
    bad_mapping = cli.run("topic", "create", "--name", "tmapping", "--input-schema", "customeventschema",
                          "--input-mapping-fields", "colour=x", expect=2)
    assert "mapped field" in plain(bad_mapping.output)
    bad_choice = cli.run("topic", "create", "--name", "tchoice", "--input-schema", "xml", expect=2)
    assert "--input-schema" in plain(bad_choice.output)


def test_missing_and_bad_tokens_exit_1_with_the_server_message(cli: Cli, tmp_path: Path) -> None:
    empty_data_dir = {"MLGRID_TOKEN": "", "MLGRID_DATA_DIR": str(tmp_path)}
    missing = cli.run("topic", "list", "--url", cli.server.url, connect=False, env=empty_data_dir, expect=1)
    assert missing.stderr.startswith("error: Unauthorized: ")
    assert "hint: no token was found" in missing.stderr
    wrong = cli.run("topic", "list", token="not-a-token", expect=1)
    assert wrong.stderr.startswith("error: Unauthorized: ")
    assert "hint" not in wrong.stderr


def test_token_from_the_data_dir(cli: Cli) -> None:
    env = {"MLGRID_TOKEN": "", "MLGRID_DATA_DIR": str(cli.server.data_dir), "MLGRID_URL": cli.server.url}
    result = cli.run("topic", "list", connect=False, env=env)
    assert isinstance(json.loads(result.stdout), list)


def test_publish_from_data_file_and_stdin_then_list(cli: Cli, topic: str, tmp_path: Path) -> None:
    published = cli.json("events", "publish", "--topic", topic, "--data",
                         '{"eventType": "Shop.OrderPlaced", "subject": "orders/1", '
                         '"data": {"total": 0.30000000000000001}}')
    assert published == {"topic": topic, "published": 1}

    file = tmp_path / "events.json"
    file.write_text(json.dumps([{"id": "fixed-1", "eventType": "Shop.OrderShipped", "subject": "orders/2",
                                 "eventTime": "2030-01-01T00:00:00Z", "dataVersion": "1", "data": {}}]))
    cli.run("events", "publish", "--topic", f"/topics/{topic}", "--file", str(file))
    paid = '[{"eventType": "Shop.OrderPaid", "subject": "orders/3"}]'
    cli.run("events", "publish", "--topic", topic, input=paid)
    other = '{"eventType": "Shop.X", "subject": "x"}'
    cli.run("events", "publish", "--topic", topic, "--file", "-", input=other)

    events = cli.json("events", "list", "--topic", topic)
    types = [e["eventType"] for e in events]
    assert types == ["Shop.OrderPlaced", "Shop.OrderShipped", "Shop.OrderPaid", "Shop.X"]
    raw = cli.run("events", "list", "--topic", topic, "-o", "json").stdout
    assert '"total": 0.30000000000000001' in raw  # digit for digit, never through a float
    exact = cli.run("events", "list", "--topic", topic).stdout
    assert json.loads(exact, parse_float=Decimal)[0]["data"]["total"] == Decimal("0.30000000000000001")
    assert events[1]["id"] == "fixed-1" and events[1]["dataVersion"] == "1"
    assert all(e["id"] and e["eventTime"] for e in events)

    only = cli.json("events", "list", "--topic", topic, "--event-type", "shop.orderpaid")
    assert [e["subject"] for e in only] == ["orders/3"]
    table = cli.run("events", "list", "--topic", topic, "-o", "table").stdout
    assert "Shop.OrderShipped" in table and "orders/2" in table


def test_publish_with_a_topic_key_and_cloud_events(cli: Cli) -> None:
    name = "t" + uuid.uuid4().hex[:10]
    cli.run("topic", "create", "--name", name, "--input-schema", "cloudeventschemav1_0")
    key = cli.json("topic", "keys", "--name", name)["key1"]
    event = json.dumps({"specversion": "1.0", "type": "Shop.OrderPlaced", "source": "/s", "subject": "o/1"})
    # The key authenticates the publish: an invalid bearer token beside it does not matter, a bad key does.
    cli.run("events", "publish", "--topic", name, "--key", key, "--data", event, token="invalid")
    wrong = "bm90LWEta2V5"
    bad_key = cli.run("events", "publish", "--topic", name, "--key", wrong, "--data", event, expect=1)
    assert bad_key.stderr.startswith("error: Unauthorized")
    (stored,) = cli.json("events", "list", "--topic", name)
    assert stored["type"] == "Shop.OrderPlaced" and stored["specversion"] == "1.0" and stored["time"]
    assert "Shop.OrderPlaced" in cli.run("events", "list", "--topic", name, "-o", "table").stdout
    cli.run("topic", "delete", "--name", name)


def test_publish_errors(cli: Cli, topic: str) -> None:
    invalid = cli.run("events", "publish", "--topic", topic, "--data", '{"subject": "no type"}', expect=1)
    assert "eventType" in invalid.stderr and invalid.stderr.startswith("error: ")
    unknown = cli.run("events", "publish", "--topic", "nosuchtopic", "--data", '{"eventType": "A"}', expect=1)
    assert "error: NotFound" in unknown.stderr
    nothing = cli.run("events", "publish", "--topic", topic, input="", expect=2)
    assert "not valid JSON" in plain(nothing.output)
    both = cli.run("events", "publish", "--topic", topic, "--data", "{}", "--file", "x.json", expect=2)
    assert "not both" in plain(both.output)
    system = cli.run("events", "publish", "--topic", "/workspaces/ws1", "--data", "{}", expect=2)
    assert "only custom topics" in plain(system.output)


def _publish_until(server: ServerProcess, topic: str, stop: threading.Event, published: list[str]) -> None:
    """Publish a matching and a non-matching event every 0.1 s until the tail is done (bounded)."""
    with server.client() as http:
        for index in range(300):
            if stop.is_set():
                return
            batch = [
                {"id": f"m{index}", "eventType": "Shop.OrderPlaced", "subject": f"orders/eu/{index}",
                 "eventTime": "2030-01-01T00:00:00Z", "data": {}},
                {"id": f"n{index}", "eventType": "Shop.Other", "subject": f"orders/eu/{index}",
                 "eventTime": "2030-01-01T00:00:00Z", "data": {}},
                {"id": f"s{index}", "eventType": "Shop.OrderPlaced", "subject": f"orders/us/{index}",
                 "eventTime": "2030-01-01T00:00:00Z", "data": {}},
            ]
            published.append(f"m{index}")
            response = http.post(f"/topics/{topic}/api/events", json=batch)
            assert response.status_code == 200, response.text
            stop.wait(0.1)


def test_tail_follows_new_events_with_filters(cli: Cli, topic: str) -> None:
    # Events published before the tail starts are not shown (it starts at the server's "now").
    before = '{"id": "before", "eventType": "Shop.OrderPlaced", "subject": "orders/eu/0"}'
    cli.run("events", "publish", "--topic", topic, "--data", before)
    stop = threading.Event()
    published: list[str] = []
    worker = threading.Thread(target=_publish_until, args=(cli.server, topic, stop, published), daemon=True)
    worker.start()
    try:
        result = cli.run("events", "tail", "--topic", topic, "--event-type", "shop.orderplaced",
                         "--subject-begins-with", "Orders/EU/", "--count", "3", "--timeout", "60",
                         "--poll-interval", "0.1")
    finally:
        stop.set()
        worker.join(30)
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    events = [json.loads(line) for line in lines]
    ids = [e["id"] for e in events]
    assert len(set(ids)) == 3 and "before" not in ids
    assert all(e["eventType"] == "Shop.OrderPlaced" and e["subject"].startswith("orders/eu/") for e in events)
    assert ids == sorted(ids, key=published.index)  # in publish order, none skipped between them
    first = published.index(ids[0])
    assert ids == published[first:first + 3]


def test_tail_with_since_shows_retained_events_and_stops_at_the_timeout(cli: Cli, topic: str) -> None:
    for index in range(3):
        cli.run("events", "publish", "--topic", topic, "--data",
                json.dumps({"id": f"old{index}", "eventType": "Shop.Old", "subject": f"s/{index}"}))
    result = cli.run("events", "tail", "--topic", topic, "--since", "2000-01-01T00:00:00Z",
                     "--timeout", "1", "--poll-interval", "0.2", "-o", "table")
    lines = result.stdout.splitlines()
    assert [line.split()[-1] for line in lines] == ["old0", "old1", "old2"]
    quiet = cli.run("events", "tail", "--topic", topic, "--timeout", "0.5", "--poll-interval", "0.1")
    assert quiet.stdout == ""


def test_tail_of_an_unknown_topic_exits_1(cli: Cli) -> None:
    result = cli.run("events", "tail", "--topic", "nosuchtopic", "--timeout", "1", expect=1)
    assert "error: NotFound" in result.stderr


def test_events_of_a_workspace_system_topic(cli: Cli) -> None:
    workspace = "w" + uuid.uuid4().hex[:10]
    with cli.server.client() as http:
        response = http.put(f"/workspaces/{workspace}", json={"properties": {}})
        if response.status_code == 404:
            pytest.skip("the workspace API is not served by this build")
        assert response.status_code in (200, 201), response.text
        resource_id = response.json()["id"]
        try:
            assert cli.json("events", "list", "--topic", f"/workspaces/{workspace}") == []
            assert cli.json("events", "list", "--topic", resource_id) == []
            assert cli.json("events", "list", "--source-resource-id", f"/systemTopics/{workspace}") == []
        finally:
            http.delete(f"/workspaces/{workspace}")
