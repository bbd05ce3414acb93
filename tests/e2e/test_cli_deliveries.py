"""``mlgrid deliveries list`` and ``mlgrid deliveries replay`` against a real server.

Events go through real matching to a real loopback webhook receiver; the deliveries the CLI
lists are the server's records of those attempts, and a replay is seen by the receiver as the
same events arriving again.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.support.cli_runner import Cli, plain
from tests.support.receiver import Receiver, Reply

from mlgrid.client import ApiError, Client
from mlgrid.events.jsoncodec import dumps

ES = ("eventgrid", "event-subscription")
MATCHED = "Shop.OrderPlaced"


def unique(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:10]


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def wait_for_deliveries(cli: Cli, topic: str, name: str, state: str, count: int) -> list[dict[str, Any]]:
    """``deliveries list --state`` until it shows ``count`` records (outcomes are written in batches)."""
    deadline = time.monotonic() + 15
    while True:
        found = cli.json("deliveries", "list", "-n", name, "--source-resource-id", topic, "--state", state)
        if len(found) >= count or time.monotonic() > deadline:
            return list(found)
        time.sleep(0.05)


def deliver_two_of_three(cli: Cli, receiver: Receiver) -> tuple[str, str, str]:
    """A new topic whose subscription matched and received two of three events: (topic, name, path)."""
    topic, name = unique("t"), unique("s")
    path = f"/hooks/{name}"
    cli.run("topic", "create", "--name", topic)
    cli.run(*ES, "create", "--name", name, "--source-resource-id", topic,
            "--endpoint", receiver.endpoint(path), "--included-event-types", MATCHED)
    events = [{"id": "ev-1", "eventType": MATCHED, "subject": "orders/1"},
              {"id": "ev-2", "eventType": MATCHED, "subject": "orders/2"},
              {"id": "ev-other", "eventType": "Shop.Other", "subject": "orders/3"}]
    cli.run("events", "publish", "--topic", topic, "--data", dumps(events).decode())
    receiver.wait_for_events(2, path=path)
    assert len(wait_for_deliveries(cli, topic, name, "delivered", 2)) == 2
    return topic, name, path


@pytest.fixture(scope="module")
def delivered(cli: Cli, receiver: Receiver) -> tuple[str, str, str]:
    """Deliveries only read by the tests that share it (replay makes its own)."""
    return deliver_two_of_three(cli, receiver)


def test_list_all_and_by_state(cli: Cli, delivered: tuple[str, str, str]) -> None:
    topic, name, _ = delivered
    records = cli.json("deliveries", "list", "--name", name, "--source-resource-id", f"/topics/{topic}")
    assert sorted(r["eventId"] for r in records) == ["ev-1", "ev-2"]  # ev-other did not match
    for record in records:
        assert record["state"] == "delivered" and record["eventType"] == MATCHED
        assert record["deliveryAttempts"] == 1 and record["lastHttpStatusCode"] == 200
        assert record["finishedTime"] and record["nextAttemptTime"] is None
    listing = ("deliveries", "list", "-n", name, "--source-resource-id", topic)
    by_state = cli.json(*listing, "--state", "DELIVERED")  # any case, as the API
    assert sorted(r["eventId"] for r in by_state) == ["ev-1", "ev-2"]
    assert cli.json(*listing, "--state", "pending") == []
    assert cli.json(*listing, "--state", "deadLettered") == []


def test_table_has_the_columns(cli: Cli, delivered: tuple[str, str, str]) -> None:
    topic, name, _ = delivered
    result = cli.run("deliveries", "list", "-n", name, "--source-resource-id", topic, "-o", "table")
    table = plain(result.stdout)
    header = ("id eventId eventType state attempts lastOutcome lastStatus lastError lastAttempt "
              "nextAttempt reason")
    assert header in " ".join(table.replace("┃", " ").split())
    assert "ev-1" in table and "ev-2" in table and "delivered" in table


def test_bad_state_is_a_usage_error_naming_the_option(cli: Cli, delivered: tuple[str, str, str]) -> None:
    topic, name, _ = delivered
    result = cli.run("deliveries", "list", "-n", name, "--source-resource-id", topic, "--state", "done",
                     expect=2)
    message = plain(result.stderr)
    assert "'--state'" in message
    assert "'done' is not one of pending, delivered, deadLettered, dropped" in message


def test_replay_redelivers_the_retained_events(cli: Cli, receiver: Receiver) -> None:
    topic, name, path = deliver_two_of_three(cli, receiver)
    start = (datetime.now(UTC) - timedelta(minutes=10)).replace(microsecond=0, tzinfo=None)
    answer = cli.json("deliveries", "replay", "-n", name, "--source-resource-id", topic,
                      "--from", start.isoformat())  # no offset: UTC; no --to: until now
    assert instant(answer["from"]) == start.replace(tzinfo=UTC)
    assert instant(answer["to"]) > datetime.now(UTC) - timedelta(minutes=1)
    assert answer["examinedEvents"] == 3 and answer["replayedEvents"] == 2
    receiver.wait_for(lambda _: len(receiver.events(path)) >= 4, path=path)
    assert Counter(e["id"] for e in receiver.events(path)) == {"ev-1": 2, "ev-2": 2}
    assert len(wait_for_deliveries(cli, topic, name, "delivered", 4)) == 4

    empty = cli.json("deliveries", "replay", "-n", name, "--source-resource-id", topic,
                     "--from", "2000-01-01", "--to", "2000-01-02T00:00:00+01:00")
    assert instant(empty["from"]) == datetime(2000, 1, 1, tzinfo=UTC)
    assert instant(empty["to"]) == datetime(2000, 1, 1, 23, tzinfo=UTC)
    assert empty["replayedEvents"] == 0


def test_replay_errors(cli: Cli, delivered: tuple[str, str, str]) -> None:
    topic, name, _ = delivered
    replay = ("deliveries", "replay", "-n", name, "--source-resource-id", topic)
    backwards = cli.run(*replay, "--from", "2026-01-02T00:00:00Z", "--to", "2026-01-01T00:00:00Z", expect=1)
    assert backwards.stderr.strip() == "error: InvalidRequest: to: must not be before from"

    unparsable = cli.run(*replay, "--from", "yesterday", expect=2)  # refused before any request
    message = plain(unparsable.stderr)
    assert "'--from'" in message and "'yesterday' is not an ISO 8601 date-time" in message
    bad_end = cli.run(*replay, "--from", "2026-01-01", "--to", "2026-13-01", expect=2)
    assert "'--to'" in plain(bad_end.stderr)
    # The server refuses the same text, naming the field, for clients that do not check first.
    with Client(cli.server.url, cli.server.admin_token) as client, pytest.raises(ApiError) as info:
        client.subscriptions.replay(topic, name, "yesterday")
    assert info.value.status == 400 and "from: 'yesterday' is not an ISO 8601 date-time" in info.value.message

    missing = cli.run("deliveries", "list", "-n", "nosuchsub", "--source-resource-id", topic, expect=1)
    assert missing.stderr.startswith("error: NotFound: ")


def test_show_every_attempt_and_dead_letter_now(cli: Cli, receiver: Receiver) -> None:
    """A delivery refused again and again (500): ``show`` lists each attempt; ``dead-letter``
    asks first, then ends it (dropped here: no dead-letter destination)."""
    topic, name = unique("t"), unique("s")
    path = f"/hooks/{name}"
    receiver.configure(path, default=Reply(500, body="busy"))
    cli.run("topic", "create", "--name", topic)
    cli.run(*ES, "create", "--name", name, "--source-resource-id", topic,
            "--endpoint", receiver.endpoint(path))
    one = dumps({"eventType": MATCHED, "subject": "o/1"}).decode()
    cli.run("events", "publish", "--topic", topic, "--data", one)
    deadline = time.monotonic() + 15
    while True:
        [row] = cli.json("deliveries", "list", "-n", name, "--source-resource-id", topic) or [{}]
        if row.get("deliveryAttempts", 0) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    shown = cli.json("deliveries", "show", "-n", name, "--source-resource-id", topic, "--id", str(row["id"]))
    assert [a["httpStatusCode"] for a in shown["attemptHistory"][:2]] == [500, 500]
    table = cli.run("deliveries", "show", "-n", name, "--source-resource-id", topic, "--id", str(row["id"]),
                    "-o", "table").stdout
    assert "attempt" in table and "500" in table

    declined = cli.run("deliveries", "dead-letter", "-n", name, "--source-resource-id", topic,
                       "--id", str(row["id"]), input="n\n", expect=1)
    assert "nothing changed" in declined.stderr
    ended = cli.json("deliveries", "dead-letter", "-n", name, "--source-resource-id", topic,
                     "--id", str(row["id"]), "--yes")
    assert (ended["state"], ended["reason"]) == ("dropped", "DeadLetteredByOperator")
    again = cli.run("deliveries", "dead-letter", "-n", name, "--source-resource-id", topic,
                    "--id", str(row["id"]), "--yes", expect=1)
    assert "DeliveryNotPending" in again.stderr
