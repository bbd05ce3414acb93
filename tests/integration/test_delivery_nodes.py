"""Several nodes on one PostgreSQL database share the delivery work (SPEC §10): each pending
delivery is attempted by one node at a time, and a node that dies leaves nothing stuck — its
leased work is taken over by another node once the lease runs out.
"""

from __future__ import annotations

import base64
import os
from collections import Counter
from collections.abc import Iterator

import pytest
from tests.support.delivery import event, make_topic, notifications, publish, subscribe, wait_final, webhook
from tests.support.receiver import Receiver, Reply
from tests.support.server import ServerProcess
from tests.support.services import fresh_pg_database


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two nodes on one fresh database (the takeover test, last in this file, kills them)."""
    tmp_path = tmp_path_factory.mktemp("nodes")
    key = base64.b64encode(os.urandom(32)).decode()  # nodes of one database share the secret key
    with fresh_pg_database("mlgrid_nodes") as url:
        first = ServerProcess(data_dir=tmp_path / "a", database_url=url,
                              env={"MLGRID_SECRET_KEY": key, "MLGRID_NODE_ID": "node-a"})
        second = ServerProcess(data_dir=tmp_path / "b", database_url=url,
                               env={"MLGRID_SECRET_KEY": key, "MLGRID_NODE_ID": "node-b"})
        first.start()
        try:
            second.start()
            try:
                yield first, second
            finally:
                second.stop()
        finally:
            first.stop()


def test_two_nodes_share_deliveries_without_attempting_one_twice(
    two_nodes: tuple[ServerProcess, ServerProcess],
) -> None:
    first, second = two_nodes
    token = first.admin_token
    with Receiver() as receiver, first.client() as via_first, second.client(token) as via_second:
        topic, _ = make_topic(via_first)
        # A receiver slow enough that one node cannot take everything at once.
        receiver.configure("/shared", default=Reply(200, delay=0.3))
        sub = subscribe(via_first, topic, webhook(receiver.endpoint("/shared")))
        ids = [f"shared-{i}" for i in range(600)]
        publish(via_first, topic, [event(i) for i in ids])
        rows = wait_final(via_second, topic, sub, len(ids), timeout=90)
        assert all(r["state"] == "delivered" for r in rows)
        seen = Counter(e["id"] for e in receiver.events("/shared"))
        assert set(seen) == set(ids)
        assert max(seen.values()) == 1, [i for i, n in seen.items() if n > 1]
        retried = [r for r in rows if r["deliveryAttempts"] != 1]
        assert not retried, retried[:3]
        # Both nodes delivered some of them.
        for client in (via_first, via_second):
            metrics = client.get("/metrics").text
            delivered = [line for line in metrics.splitlines()
                         if line.startswith("mlgrid_delivery_success_events_total") and topic in line]
            assert delivered and float(delivered[0].rsplit(" ", 1)[1]) > 0


def test_a_dead_nodes_work_is_taken_over_when_its_lease_runs_out(
    two_nodes: tuple[ServerProcess, ServerProcess],
) -> None:
    first, second = two_nodes
    token = first.admin_token
    with Receiver() as slow, Receiver() as fast, first.client() as via_first, \
            second.client(token) as via_second:
        topic, _ = make_topic(via_first)
        slow.configure("/hook", default=Reply(200, delay=5.0))
        sub = subscribe(via_first, topic, webhook(slow.endpoint("/hook")))
        ids = [f"orphan-{i}" for i in range(40)]
        second.kill()  # only the first node may claim, so it holds everything
        publish(via_first, topic, [event(i) for i in ids])
        notifications(slow, "/hook", 10)
        first.kill()  # dies holding leases on in-flight and queued deliveries
        # The subscription moves to a healthy endpoint; a fresh node takes over.
        second.start()
        with second.client(token) as revived:
            response = revived.patch(
                f"/topics/{topic}/eventSubscriptions/{sub}",
                json={"properties": {"destination": webhook(fast.endpoint("/hook"))}},
            )
            assert response.status_code == 200, response.text
            rows = wait_final(revived, topic, sub, len(ids), timeout=90)
        assert all(r["state"] == "delivered" for r in rows)
        delivered = {e["id"] for e in slow.events("/hook")} | {e["id"] for e in fast.events("/hook")}
        assert delivered == set(ids)
        del via_second
