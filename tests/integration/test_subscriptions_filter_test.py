"""The filter tester in the API (``POST .../eventSubscriptions/{s}:test``) and the CLI
(``mlgrid eventgrid event-subscription test``), against a real server: a matching and a
non-matching event, a filter being written, bad input, and who may ask."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.support.cli_runner import Cli
from tests.support.delivery import make_topic
from tests.support.server import ServerProcess

FILTER = {
    "includedEventTypes": ["Shop.OrderPlaced"],
    "advancedFilters": [{"operatorType": "NumberGreaterThan", "key": "data.total", "value": 10}],
}


def order(total: Any, event_type: str = "Shop.OrderPlaced") -> dict[str, Any]:
    return {"id": "o1", "eventType": event_type, "subject": "orders/1", "data": {"total": total},
            "dataVersion": "1", "eventTime": "2026-01-01T00:00:00Z"}


@pytest.fixture(scope="module")
def admin(sqlite_server: ServerProcess) -> Iterator[httpx.Client]:
    with sqlite_server.client() as client:
        yield client


@pytest.fixture(scope="module")
def subscription(admin: httpx.Client) -> tuple[str, str]:
    topic, _ = make_topic(admin)
    name = "big-orders"
    body = {"properties": {"destination": {"endpointType": "Queue", "properties": {}}, "filter": FILTER}}
    response = admin.put(f"/topics/{topic}/eventSubscriptions/{name}", json=body)
    assert response.status_code == 201, response.text
    return topic, name


def test_verdict_and_reasons(admin: httpx.Client, subscription: tuple[str, str]) -> None:
    topic, name = subscription
    path = f"/topics/{topic}/eventSubscriptions/{name}:test"
    yes = admin.post(path, json={"event": order(12.5)})
    assert yes.status_code == 200, yes.text
    assert yes.json()["matches"] is True and yes.json()["filterSource"] == "subscription"
    assert [c["matched"] for c in yes.json()["conditions"]] == [True, True]
    no = admin.post(path, json={"event": order(3)}).json()
    assert no["matches"] is False
    assert no["conditions"][1] == {
        "condition": "data.total NumberGreaterThan 10", "matched": False, "reason": "data.total is 3: fails",
        "key": "data.total", "operatorType": "NumberGreaterThan", "actual": 3,
    }
    # A filter being written is tried instead of the stored one; nothing is changed.
    tried = admin.post(path, json={"event": order(3), "filter": {"subjectBeginsWith": "orders/"}}).json()
    assert tried["matches"] is True and tried["filterSource"] == "request"
    stored = admin.get(f"/topics/{topic}/eventSubscriptions/{name}").json()["properties"]["filter"]
    assert stored["advancedFilters"][0]["key"] == "data.total"


def test_bad_input_is_a_400_naming_the_field(admin: httpx.Client, subscription: tuple[str, str]) -> None:
    topic, name = subscription
    path = f"/topics/{topic}/eventSubscriptions/{name}:test"
    missing = admin.post(path, json={"filter": {}})
    assert missing.status_code == 400 and "event" in missing.json()["error"]["message"]
    bad = admin.post(path, json={"event": order(1), "filter": {"advancedFilters": [{"operatorType": "Nope",
                                                                                    "key": "data.x"}]}})
    assert bad.status_code == 400, bad.text
    assert "filter.advancedFilters[0].operatorType" in bad.text
    unknown = admin.post(f"/topics/{topic}/eventSubscriptions/nosuch:test", json={"event": order(1)})
    assert unknown.status_code == 404


def test_a_reader_may_test_a_stranger_may_not(
    sqlite_server: ServerProcess, admin: httpx.Client, subscription: tuple[str, str]
) -> None:
    topic, name = subscription
    reader, stranger = ("p" + uuid.uuid4().hex[:8] for _ in range(2))
    tokens = {p: admin.put(f"/principals/{p}").json()["token"] for p in (reader, stranger)}
    admin.put(f"/topics/{topic}/roleAssignments/{reader}", json={"role": "Reader"})
    path = f"/topics/{topic}/eventSubscriptions/{name}:test"
    with sqlite_server.client(tokens[reader]) as client:
        assert client.post(path, json={"event": order(20)}).json()["matches"] is True
    with sqlite_server.client(tokens[stranger]) as client:
        assert client.post(path, json={"event": order(20)}).status_code == 403


def test_cli(sqlite_server: ServerProcess, subscription: tuple[str, str], tmp_path: Any) -> None:
    topic, name = subscription
    cli = Cli(sqlite_server)
    base = ("eventgrid", "event-subscription", "test", "--name", name, "--source-resource-id", topic)
    yes = cli.run(*base, "--event", json.dumps(order(12.5)), "-o", "table", env={"COLUMNS": "120"})
    assert yes.stdout.rstrip().endswith("matches")
    assert "data.total NumberGreaterThan 10" in yes.stdout
    event_file = tmp_path / "small.json"
    event_file.write_text(json.dumps(order(3)))
    no = cli.run(*base, "--event", f"@{event_file}", expect=1)
    assert json.loads(no.stdout)["matches"] is False
    bad = cli.run(*base, "--event", "[1]", expect=2)
    assert "must be a JSON object" in bad.output
