"""Crash safety of delivery (SPEC §11.3, §11.4): ``kill -9`` the server while deliveries are
pending (never attempted), in flight (the receiver is slow) and waiting for a retry (the
receiver failed them); after a restart every (event, subscription) pair ends in exactly one
final state and the receiver has seen every event at least once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.delivery import (
    deliveries,
    event,
    make_topic,
    notifications,
    publish,
    subscribe,
    wait_final,
    wait_until,
    webhook,
)
from tests.support.receiver import Receiver, Reply
from tests.support.server import ServerProcess
from tests.support.services import fresh_pg_database

EVENTS = 150
FAILING = 8


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield ""
        return
    with fresh_pg_database("mlgrid_crash") as url:
        yield url


def test_kill_9_with_pending_in_flight_and_retrying_deliveries(database: str, tmp_path: Path) -> None:
    # A stable node id lets the restarted node take its own claims back at once (PostgreSQL);
    # retries 5 s apart keep the failed deliveries waiting when the kill comes.
    server = ServerProcess(
        data_dir=tmp_path / "data", database_url=database,
        extra_args=["--retry-schedule", "5,5,5"], env={"MLGRID_NODE_ID": "crash-node"},
    )
    # Two receivers: each endpoint (host and port) has its own concurrency cap.
    with Receiver() as slow_receiver, Receiver() as flaky_receiver:
        server.start()
        try:
            with server.client() as client:
                topic, _ = make_topic(client)
                slow_receiver.configure("/slow", default=Reply(200, delay=4.0))
                # Fewer failures than the circuit breaker's threshold (10), so none is held back.
                flaky_receiver.enqueue("/flaky", *[Reply(500)] * FAILING)
                slow = subscribe(client, topic, webhook(slow_receiver.endpoint("/slow")))
                flaky = subscribe(client, topic, webhook(flaky_receiver.endpoint("/flaky")))
                ids = [f"crash-{i}" for i in range(EVENTS)]
                publish(client, topic, [event(i) for i in ids])

                # In flight on /slow (at most 64 at a time, the rest never attempted yet);
                # FAILING deliveries to /flaky failed once and wait for their retry.
                notifications(slow_receiver, "/slow", 10)
                pending_slow = deliveries(client, topic, slow, "pending")
                assert any(d["deliveryAttempts"] == 0 for d in pending_slow)

                def retry_waiting() -> bool:
                    rows = deliveries(client, topic, flaky, "pending")
                    return len(rows) == FAILING and all(d["deliveryAttempts"] == 1 for d in rows)

                wait_until(retry_waiting, what="failed deliveries waiting for their retry")
            server.kill()

            slow_receiver.configure("/slow", default=Reply(200))
            server.start()
            with server.client() as client:
                for sub in (slow, flaky):
                    rows = wait_final(client, topic, sub, EVENTS, timeout=60)
                    assert len(rows) == EVENTS  # one delivery per (event, subscription)
                    assert sorted(r["eventId"] for r in rows) == sorted(ids)
                    assert all(r["state"] == "delivered" for r in rows), [
                        r for r in rows if r["state"] != "delivered"]
                for receiver, path in ((slow_receiver, "/slow"), (flaky_receiver, "/flaky")):
                    wait_until(lambda r=receiver, p=path: set(ids) <= {e["id"] for e in r.events(p)},
                               what=f"every event at {path}")
                flaky_requests = flaky_receiver.notifications("/flaky")
                counts = [int(r.header("aeg-delivery-count") or 0) for r in flaky_requests]
                assert max(counts) >= 1
        finally:
            server.stop()


def test_an_attempt_cut_short_by_a_crash_is_counted_in_the_redelivery(database: str, tmp_path: Path) -> None:
    # The attempt is counted in the store before its request goes out: the event sent again
    # after the restart says one attempt came before it.
    server = ServerProcess(data_dir=tmp_path / "data", database_url=database,
                           env={"MLGRID_NODE_ID": "count-node"})
    with Receiver() as receiver:
        server.start()
        try:
            with server.client() as client:
                topic, _ = make_topic(client)
                receiver.configure("/hang", default=Reply(200, delay=20.0))
                sub = subscribe(client, topic, webhook(receiver.endpoint("/hang")))
                publish(client, topic, [event("counted-1")])
                [first] = notifications(receiver, "/hang", 1)
                assert first.header("aeg-delivery-count") == "0"
                [row] = deliveries(client, topic, sub, "pending")
                # deliveryAttempts counts finished attempts; the one in flight is counted apart
                # (attempts_started), which is what the redelivery's header reads below.
                assert row["deliveryAttempts"] == 0
            server.kill()

            receiver.configure("/hang", default=Reply(200))
            server.start()
            with server.client() as client:
                [done] = wait_final(client, topic, sub, 1, timeout=60)
                assert done["state"] == "delivered" and done["deliveryAttempts"] == 2
            again = notifications(receiver, "/hang", 2)
            assert again[1].header("aeg-delivery-count") == "1"
        finally:
            server.stop()
